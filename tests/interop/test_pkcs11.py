"""The same verifiers on tokens signed inside a PKCS#11 token: asapd with
`keys.backend = "pkcs11"` on a fresh SoftHSM2 token (README, "Keys in an
HSM (PKCS#11)"), every algorithm, checked by atlassian-jwt-auth over HTTPS
(the key repository), PyJWT's JWKS client and joserfc (the JOSE library
that replaces authlib.jose) with the JWKS.

Needs SoftHSM2 (Debian softhsm2; scripts/prereqs.sh installs it): without
it these tests fail, they never pass having checked nothing.
"""

import os
import shutil
import subprocess

import jwt
import pytest
import requests
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from conftest import AUDIENCE, GROUP, callers_of, serve_dev
from test_tokens import ALGORITHMS, asap_verify, fresh_verifier, get_token, jwks_verify

LABEL = "asapd-interop"
PIN = "0123456"
MODULE = os.environ.get("ASAPD_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")


@pytest.fixture(scope="session")
def asapd_pkcs11(tmp_path_factory):
    assert shutil.which("softhsm2-util") and os.path.exists(MODULE), (
        "SoftHSM2 is needed (Debian softhsm2; scripts/prereqs.sh installs it)")
    hsm = tmp_path_factory.mktemp("softhsm")
    (hsm / "tokens").mkdir()
    conf = hsm / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {hsm / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL,
                    "--so-pin", "87654321", "--pin", PIN],
                   check=True, capture_output=True, env={**os.environ, **env})
    env.update({
        "ASAPD_KEYS__BACKEND": "pkcs11",
        "ASAPD_PKCS11__MODULE": MODULE,
        "ASAPD_PKCS11__TOKEN_LABEL": LABEL,
        "ASAPD_PKCS11__PIN": PIN,
    })
    yield from serve_dev(tmp_path_factory, env)


@pytest.fixture(scope="session")
def hsm_caller_for(asapd_pkcs11):
    r = asapd_pkcs11.admin.post(
        asapd_pkcs11.base + "/v1/admin/groups",
        json={"name": GROUP, "audiences": [AUDIENCE], "max_lifetime": 600}, timeout=30,
    )
    assert r.status_code == 201, f"create group: {r.status_code} {r.text}"
    return callers_of(asapd_pkcs11, "hsm")


def jose_verify(asapd, token):
    jwks = requests.get(asapd.base + "/.well-known/jwks.json", verify=asapd.cert, timeout=30).json()
    decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=ALGORITHMS)
    jose_jwt.JWTClaimsRegistry(
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_tokens_signed_in_the_token_verify_everywhere(asapd_pkcs11, hsm_caller_for, alg):
    caller = hsm_caller_for(alg)
    token = get_token(asapd_pkcs11, caller, "v1")
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": caller.kid, "typ": "JWT"}

    claims = asap_verify(asapd_pkcs11, fresh_verifier(asapd_pkcs11), token, AUDIENCE)
    assert claims["iss"] == claims["sub"] == caller.name
    assert jwks_verify(asapd_pkcs11, token, AUDIENCE, caller.name)["aud"] == AUDIENCE
    assert jose_verify(asapd_pkcs11, token)["iss"] == caller.name
