"""Tokens from asapd, checked by the verifiers real services run.

For every algorithm asapd offers, a token from POST /v1/tokens and one from
POST /oauth2/token must verify with atlassian-jwt-auth's JWTAuthVerifier +
HTTPSPublicKeyRetriever (HTTPS against `serve --dev`, issuer allow-listed
the way its framework integrations do with ASAP_VALID_ISSUERS) and with
PyJWT's PyJWKClient against the JWKS. The same verifiers must reject a token
for another audience and a token whose key has been revoked.
"""

import jwt
import pytest
import requests
from atlassian_jwt_auth.exceptions import PublicKeyRetrieverException
from atlassian_jwt_auth.key import HTTPSPublicKeyRetriever
from atlassian_jwt_auth.verifier import JWTAuthVerifier

from conftest import AUDIENCE, OTHER_AUDIENCE, create_caller

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
ENDPOINTS = ["v1", "oauth2"]


def get_token(asapd, caller, endpoint, audience=AUDIENCE):
    if endpoint == "v1":
        r = requests.post(
            asapd.base + "/v1/tokens", json={"audience": audience, "lifetime": 120},
            auth=caller.auth, verify=asapd.cert, timeout=60,
        )
        assert r.status_code == 200, f"/v1/tokens: {r.status_code} {r.text}"
        return r.json()["token"]
    # What a stock OAuth2 client sends: a form, credentials in Basic.
    r = requests.post(
        asapd.base + "/oauth2/token",
        data={"grant_type": "client_credentials", "audience": audience},
        auth=caller.auth, verify=asapd.cert, timeout=60,
    )
    assert r.status_code == 200, f"/oauth2/token: {r.status_code} {r.text}"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    return body["access_token"]


def fresh_verifier(asapd):
    """A verifier that has not seen any key yet. HTTPSPublicKeyRetriever
    shares one HTTP cache (honouring Cache-Control) across all instances,
    so start a new one: a verifier that fetched a key keeps using it for
    max-age, which is what DESIGN's Cache-Control asks for."""
    HTTPSPublicKeyRetriever._class_session = None
    return JWTAuthVerifier(HTTPSPublicKeyRetriever(asapd.base + "/v1/keys/"))


def asap_verify(asapd, verifier, token, audience, valid_issuers):
    claims = verifier.verify_jwt(token, audience, verify=asapd.cert)
    # What atlassian_jwt_auth's frameworks do with ASAP_VALID_ISSUERS.
    if claims["iss"] not in valid_issuers:
        raise ValueError(f"issuer {claims['iss']} is not allowed")
    return claims


def jwks_verify(asapd, token, audience, issuer):
    client = jwt.PyJWKClient(asapd.base + "/.well-known/jwks.json", ssl_context=asapd.ssl_context())
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token, key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer,
        options={"require": ["iss", "sub", "aud", "jti", "iat", "exp"]},
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_atlassian_verifier_accepts(asapd, caller_for, alg, endpoint):
    caller = caller_for(alg)
    token = get_token(asapd, caller, endpoint)
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": caller.kid, "typ": "JWT"}

    claims = asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE, {caller.name})
    assert claims["iss"] == claims["sub"] == caller.name
    assert claims["aud"] == AUDIENCE
    assert len(claims["jti"]) >= 22


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_pyjwt_jwks_client_accepts(asapd, caller_for, alg, endpoint):
    caller = caller_for(alg)
    token = get_token(asapd, caller, endpoint)
    claims = jwks_verify(asapd, token, AUDIENCE, caller.name)
    assert claims["iss"] == caller.name


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_an_issuer_outside_the_allow_list_is_rejected(asapd, caller_for, alg, endpoint):
    token = get_token(asapd, caller_for(alg), endpoint)
    with pytest.raises(ValueError, match="not allowed"):
        asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE, {"someone-else"})


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_token_for_another_audience_is_rejected(asapd, caller_for, alg, endpoint):
    caller = caller_for(alg)
    token = get_token(asapd, caller, endpoint, audience=OTHER_AUDIENCE)
    with pytest.raises(jwt.InvalidAudienceError):
        asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE, {caller.name})
    with pytest.raises(jwt.InvalidAudienceError):
        jwks_verify(asapd, token, AUDIENCE, caller.name)
    # The audience it was issued for accepts it.
    asap_verify(asapd, fresh_verifier(asapd), token, OTHER_AUDIENCE, {caller.name})


@pytest.mark.parametrize("alg", ["ES256", "PS256"])
def test_a_token_whose_key_was_revoked_is_rejected(asapd, caller_for, alg):
    caller_for(alg)  # the group exists
    caller = create_caller(asapd, f"revoked-{alg.lower()}", alg)
    tokens = [get_token(asapd, caller, endpoint) for endpoint in ENDPOINTS]
    for token in tokens:
        asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE, {caller.name})

    r = asapd.admin.post(asapd.base + f"/v1/admin/keys/{caller.kid}/revoke", timeout=120)
    assert r.status_code == 200, f"revoke: {r.status_code} {r.text}"

    for token in tokens:
        with pytest.raises(PublicKeyRetrieverException) as exc:
            asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE, {caller.name})
        assert exc.value.original_exception.response.status_code == 404
        with pytest.raises(jwt.PyJWKClientError):
            jwks_verify(asapd, token, AUDIENCE, caller.name)

    # Revoking the active key activated a replacement; new tokens verify.
    fresh = get_token(asapd, caller, "v1")
    assert jwt.get_unverified_header(fresh)["kid"] != caller.kid
    asap_verify(asapd, fresh_verifier(asapd), fresh, AUDIENCE, {caller.name})
