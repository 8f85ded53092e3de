"""Callers without a secret (RFC 7523 private_key_jwt), through clients
nobody here wrote: authlib's OAuth2Session with its PrivateKeyJWT client
authentication, and atlassian-jwt-auth's ASAP signer making the assertion.
authlib also reads asapd's RFC 8414 server metadata and finds the token
endpoint there.

Each caller registers the public half of a key it generated itself
(`POST /v1/admin/callers/{name}/client-keys`); its private key never
reaches asapd. The server runs with `http.public_url` set to its own
address (conftest.py), so the token endpoint URL is a valid `aud`.
"""

import datetime

import atlassian_jwt_auth
import jwt
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from conftest import AUDIENCE, create_caller

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def pems(private_key):
    private = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode()
    return private, public


def key_bound_caller(asapd, caller_for, name, private_key):
    """Caller `name` in the shared group, with the public half of
    `private_key` registered; returns (private PEM, client key id)."""
    caller_for("ES256")  # creates the group the callers share
    create_caller(asapd, name, "ES256")
    private, public = pems(private_key)
    r = asapd.admin.post(
        f"{asapd.base}/v1/admin/callers/{name}/client-keys",
        json={"public_key": public}, timeout=30,
    )
    assert r.status_code == 201, f"register client key: {r.status_code} {r.text}"
    return private, r.json()["id"]


class ShortPrivateKeyJWT(PrivateKeyJWT):
    """authlib's PrivateKeyJWT, its assertions valid for 5 minutes instead
    of authlib's hour: asapd takes at most `tokens.client_assertion_max_secs`
    (300 by default). authlib has no parameter for it, so `sign` passes
    `expires_in` to authlib's own signing function."""

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(
            auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint,
            alg=self.alg, header=self.headers, expires_in=300,
        )


def metadata(asapd):
    r = asapd.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200, r.text
    return r.json()


def verify_token(asapd, token):
    """Checks an issued token as a verifier would, with the JWKS."""
    client = jwt.PyJWKClient(asapd.base + "/.well-known/jwks.json",
                             ssl_context=asapd.ssl_context())
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE)


def test_authlib_discovers_the_endpoints_from_the_server_metadata(asapd):
    meta = AuthorizationServerMetadata(metadata(asapd))
    # Every member asapd publishes passes authlib's RFC 8414 checks. Not
    # `validate()` as a whole: it wants response_types_supported non-empty,
    # and asapd has no authorization endpoint, so it honestly lists none.
    for member in ("issuer", "token_endpoint", "jwks_uri", "grant_types_supported",
                   "token_endpoint_auth_methods_supported",
                   "token_endpoint_auth_signing_alg_values_supported",
                   "introspection_endpoint", "revocation_endpoint",
                   "authorization_endpoint"):
        getattr(meta, f"validate_{member}")()
    assert meta["issuer"] == asapd.base
    assert meta["token_endpoint"] == asapd.base + "/oauth2/token"
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    assert "client_credentials" in meta["grant_types_supported"]


def authlib_session(asapd, name, key, auth):
    session = OAuth2Session(name, key, token_endpoint_auth_method="private_key_jwt")
    session.register_client_auth_method(auth)
    session.verify = asapd.cert
    session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides .verify
    return session


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_authlib_private_key_jwt_gets_a_token(asapd, caller_for, alg):
    if alg.startswith("ES"):
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = f"svc-pkjwt-{alg.lower()}"
    private, _ = key_bound_caller(asapd, caller_for, name, key)
    # authlib reads a PEM string as RSA; other keys go in as joserfc keys.
    jwk = (ECKey if alg.startswith("ES") else RSAKey).import_key(private)
    # The endpoint as discovered, not as typed here.
    token_endpoint = metadata(asapd)["token_endpoint"]
    session = authlib_session(asapd, name, jwk, ShortPrivateKeyJWT(token_endpoint, alg=alg))
    token = session.fetch_token(token_endpoint, grant_type="client_credentials",
                                audience=AUDIENCE)
    assert token["token_type"] == "Bearer"
    claims = verify_token(asapd, token["access_token"])
    assert claims["iss"] == name

    # authlib signs a fresh assertion (a new jti) for every request.
    again = session.fetch_token(token_endpoint, grant_type="client_credentials",
                                audience=AUDIENCE)
    assert again["access_token"] != token["access_token"]

    # authlib's own PrivateKeyJWT signs for an hour: refused by default, and
    # accepted by an asapd with tokens.client_assertion_max_secs = 3600.
    plain = authlib_session(asapd, name, jwk, PrivateKeyJWT(token_endpoint, alg=alg))
    with pytest.raises(OAuthError) as refused:
        plain.fetch_token(token_endpoint, grant_type="client_credentials", audience=AUDIENCE)
    assert refused.value.error == "invalid_client"
    assert "300 s ahead" in refused.value.description


def test_an_atlassian_jwt_auth_signer_makes_an_assertion_asapd_accepts(asapd, caller_for):
    key = ec.generate_private_key(ec.SECP256R1())
    name = "svc-asap-signer"
    private, key_id = key_bound_caller(asapd, caller_for, name, key)
    # Any ASAP signer: the client key's id as kid; its default lifetime
    # (a minute) is within asapd's 5 minutes.
    signer = atlassian_jwt_auth.create_signer(name, key_id, private, algorithm="ES256")
    token_endpoint = metadata(asapd)["token_endpoint"]
    assertion = signer.generate_jwt(token_endpoint).decode()
    form = {"grant_type": "client_credentials", "audience": AUDIENCE,
            "client_assertion_type": JWT_BEARER, "client_assertion": assertion}
    r = requests.post(token_endpoint, data=form, verify=asapd.cert, timeout=30)
    assert r.status_code == 200, r.text
    assert verify_token(asapd, r.json()["access_token"])["iss"] == name

    # The same assertion again is a replay.
    r = requests.post(token_endpoint, data=form, verify=asapd.cert, timeout=30)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"

    # Longer than tokens.client_assertion_max_secs (300 s by default).
    long_lived = atlassian_jwt_auth.create_signer(
        name, key_id, private, algorithm="ES256", lifetime=datetime.timedelta(minutes=30))
    form["client_assertion"] = long_lived.generate_jwt(token_endpoint).decode()
    r = requests.post(token_endpoint, data=form, verify=asapd.cert, timeout=30)
    assert r.status_code == 401, r.text
