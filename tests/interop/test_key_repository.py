"""asapd's key repository and JWKS, read by the clients real verifiers use.

Starts the asapd binary ($ASAPD_BIN) with `serve --dev` (HTTPS, self-signed
certificate in the data dir), registers one caller per signing algorithm and
fetches each caller's public key with Atlassian's HTTPSPublicKeyRetriever
(what JWTAuthVerifier uses) and PyJWT's PyJWKClient.
"""

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from atlassian_jwt_auth.exceptions import (
    ASAPAuthenticationException,
    PublicKeyRetrieverException,
)
from atlassian_jwt_auth.key import HTTPSPublicKeyRetriever
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

ASAPD_BIN = os.environ.get("ASAPD_BIN", "target/debug/asapd")

# Algorithm -> the key asapd must publish for it (DESIGN §5).
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

# Generating RSA 4096 keys can be slow in a debug build.
KEYGEN_TIMEOUT = 300

# A proxy from the environment must never see loopback traffic.
for var in ("no_proxy", "NO_PROXY"):
    os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))


@dataclass
class Asapd:
    base: str  # https://127.0.0.1:PORT
    cert: str  # the dev certificate, our only trust anchor
    admin: requests.Session

    def get(self, path, **kw):
        return requests.get(self.base + path, verify=self.cert, timeout=30, **kw)

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.cert)


# asapd reads ASAPD_* from the environment (and refuses names it does not
# know, like ASAPD_BIN or ASAPD_TEST_POSTGRES_URL): configure it by flags only.
ASAPD_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ASAPD_")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def asapd(tmp_path_factory):
    data = tmp_path_factory.mktemp("asapd-data")
    init = subprocess.run(
        [ASAPD_BIN, "init", "--dev", "--data-dir", str(data), "--json"],
        capture_output=True, text=True, timeout=120, env=ASAPD_ENV,
    )
    assert init.returncode == 0, f"asapd init failed:\n{init.stderr}"
    try:
        creds = json.loads(init.stdout)
    except ValueError:
        pytest.fail(f"asapd init --json did not print JSON on stdout:\n{init.stdout!r}")
    assert creds["client_id"] == "admin"

    port = free_port()
    log_path = data / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [ASAPD_BIN, "serve", "--dev", "--data-dir", str(data),
             "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env=ASAPD_ENV,
        )
    try:
        base = f"https://127.0.0.1:{port}"
        cert = data / "dev-cert.pem"
        wait_healthy(server, base, cert, log_path)
        admin = requests.Session()
        admin.auth = (creds["client_id"], creds["client_secret"])
        admin.verify = str(cert)
        admin.trust_env = False  # else REQUESTS_CA_BUNDLE overrides .verify
        yield Asapd(base, str(cert), admin)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_healthy(server, base, cert: Path, log_path: Path, timeout=30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"asapd serve exited with {server.returncode}:\n{log_path.read_text()}")
        if cert.exists():
            try:
                r = requests.get(base + "/healthz", verify=str(cert), timeout=2)
                if r.status_code == 200:
                    return
                last = f"status {r.status_code}"
            except requests.RequestException as e:
                last = repr(e)
        time.sleep(0.2)
    pytest.fail(f"asapd not healthy at {base}/healthz within {timeout}s ({last}):\n"
                f"{log_path.read_text()}")


@pytest.fixture(scope="module")
def kid_for(asapd):
    """kid_for(ALG) -> the kid of caller svc-<alg>'s first key, created once."""
    r = asapd.admin.post(
        asapd.base + "/v1/admin/groups",
        json={"name": "g1", "audiences": ["svc-b"], "max_lifetime": 600},
        timeout=30,
    )
    assert r.status_code == 201, f"create group: {r.status_code} {r.text}"
    kids = {}

    def kid_for(alg):
        if alg not in kids:
            name = f"svc-{alg.lower()}"
            r = asapd.admin.post(
                asapd.base + "/v1/admin/callers",
                json={"name": name, "groups": ["g1"], "algorithm": alg},
                timeout=KEYGEN_TIMEOUT,
            )
            assert r.status_code == 201, f"create caller {name}: {r.status_code} {r.text}"
            kid = r.json()["kid"]
            assert re.fullmatch(rf"{name}/[\w.\-+]+", kid), f"kid {kid!r} is not {name}/<key-name>"
            kids[alg] = kid
        return kids[alg]

    return kid_for


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
    # Without a max-age every verification refetches the key (DESIGN §1).
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

    # What generic JWKS consumers need on each key (DESIGN §1).
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
