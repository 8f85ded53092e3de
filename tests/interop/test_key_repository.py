"""asapd's key repository and JWKS, read by the clients real verifiers use.

Uses the asapd of conftest.py (`serve --dev`, HTTPS) and its one caller
per signing algorithm, and fetches each caller's public key with Atlassian's
HTTPSPublicKeyRetriever (what JWTAuthVerifier uses) and PyJWT's PyJWKClient.
"""

import http.client
import re

import jwt
import pytest
from atlassian_jwt_auth.exceptions import (
    ASAPAuthenticationException,
    PublicKeyRetrieverException,
)
from atlassian_jwt_auth.key import HTTPSPublicKeyRetriever
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# Algorithm -> the key asapd must publish for it (README, "HTTP API": algorithms).
EXPECTED_KEY = {
    "RS256": (rsa.RSAPublicKey, 2048),
    "RS384": (rsa.RSAPublicKey, 3072),
    "RS512": (rsa.RSAPublicKey, 4096),
    "PS256": (rsa.RSAPublicKey, 2048),
    "PS384": (rsa.RSAPublicKey, 3072),
    "PS512": (rsa.RSAPublicKey, 4096),
    "ES256": (ec.EllipticCurvePublicKey, "secp256r1"),
    "ES384": (ec.EllipticCurvePublicKey, "secp384r1"),
}


def check_key_type(key, alg):
    cls, size = EXPECTED_KEY[alg]
    assert isinstance(key, cls), f"{alg}: got a {type(key).__name__}"
    if cls is rsa.RSAPublicKey:
        assert key.key_size == size, f"{alg}: RSA {key.key_size}, want {size}"
    else:
        assert key.curve.name == size, f"{alg}: curve {key.curve.name}, want {size}"


@pytest.mark.parametrize("alg", EXPECTED_KEY)
def test_atlassian_retriever_gets_the_key(asapd, kid_for, alg):
    kid = kid_for(alg)
    pem = HTTPSPublicKeyRetriever(base_url=asapd.base + "/v1/keys/").retrieve(
        kid, verify=asapd.cert  # its session ignores REQUESTS_CA_BUNDLE (trust_env=False)
    )

    direct = asapd.get(f"/v1/keys/{kid}", headers={"Accept": "application/x-pem-file"})
    assert direct.status_code == 200
    assert pem == direct.text
    assert pem.startswith("-----BEGIN PUBLIC KEY-----"), "want an SPKI PEM"
    # Without a max-age every verification refetches the key (docs/ARCHITECTURE.md, "What verifiers expect").
    cache = direct.headers.get("Cache-Control", "")
    assert "public" in cache and re.search(r"max-age=[1-9]", cache), f"Cache-Control: {cache!r}"

    check_key_type(load_pem_public_key(pem.encode()), alg)


@pytest.mark.parametrize("alg", EXPECTED_KEY)
def test_pyjwt_jwks_client_finds_the_key(asapd, kid_for, alg):
    kid = kid_for(alg)
    pem_key = load_pem_public_key(asapd.get(f"/v1/keys/{kid}").content)

    client = jwt.PyJWKClient(asapd.base + "/.well-known/jwks.json", ssl_context=asapd.ssl_context())
    signing_key = client.get_signing_key(kid)
    assert signing_key.key.public_numbers() == pem_key.public_numbers()
    assert signing_key.algorithm_name == alg

    # What generic JWKS consumers need on each key (docs/ARCHITECTURE.md, "What verifiers expect").
    jwk = next(k for k in client.fetch_data()["keys"] if k.get("kid") == kid)
    assert (jwk.get("alg"), jwk.get("use")) == (alg, "sig"), jwk


@pytest.mark.parametrize("kid", ["svc-a/nope", "svc-rs256/nope"])
def test_unknown_kid_is_404(asapd, kid_for, kid):
    kid_for("RS256")  # so svc-rs256 exists and only its key name is unknown
    retriever = HTTPSPublicKeyRetriever(base_url=asapd.base + "/v1/keys/")
    with pytest.raises(PublicKeyRetrieverException) as exc:
        retriever.retrieve(kid, verify=asapd.cert)
    # The library loses the status (a 404 Response is falsy); the original has it.
    assert exc.value.original_exception.response.status_code == 404
    assert asapd.get(f"/v1/keys/{kid}").status_code == 404


def test_path_traversal_kid_is_refused(asapd, kid_for):
    kid_for("RS256")
    kid = "svc-a/../x"
    with pytest.raises(ASAPAuthenticationException):
        HTTPSPublicKeyRetriever(base_url=asapd.base + "/v1/keys/").retrieve(kid, verify=asapd.cert)

    # The client refuses before sending; asapd must refuse it too. http.client
    # sends the path as is (requests would collapse the "..").
    port = int(asapd.base.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=asapd.ssl_context(), timeout=30)
    try:
        conn.request("GET", f"/v1/keys/{kid}", headers={"Accept": "application/x-pem-file"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status in (400, 404), f"{resp.status} {body[:200]!r}"
