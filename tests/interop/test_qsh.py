"""Connect request binding: asapd's `qsh` against npm `atlassian-jwt` 2.0.3.

Receivers recompute the query string hash from the request they got, so
only the exact algorithm counts. For every (method, url) of
qsh/vectors.json (repeated parameters, spaces and `+`, unicode, empty
values, a trailing slash, the `jwt` parameter, percent-encoded reserved
characters, fragments, no query and `?` alone, ...), the canonical request
and the hash that npm's `createQueryStringHash(fromMethodAndUrl(method,
url))` computes must equal `asapd qsh`'s and the `qsh` claim of a token
issued with that `request`. run.sh installs the npm package with `npm ci`.
"""

import json
import os
import subprocess
from pathlib import Path

import jwt
import pytest
import requests

from conftest import ASAPD_BIN, ASAPD_ENV, AUDIENCE

HERE = Path(__file__).parent / "qsh"
VECTORS = json.loads((HERE / "vectors.json").read_text())


@pytest.fixture(scope="module")
def npm_reference():
    modules = os.environ.get("QSH_NODE_MODULES")
    if not modules:
        pytest.fail("QSH_NODE_MODULES is not set: run the interop tests through tests/interop/run.sh")
    out = subprocess.run(
        ["node", str(HERE / "npm_qsh.js"), str(HERE / "vectors.json")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "NODE_PATH": modules},
    )
    assert out.returncode == 0, f"npm_qsh.js failed:\n{out.stderr}"
    reference = json.loads(out.stdout)
    assert len(reference) == len(VECTORS) >= 20
    return {(v["method"], v["url"]): v for v in reference}


def asapd_qsh(method, url, *extra):
    out = subprocess.run(
        [ASAPD_BIN, "qsh", "--method", method, "--url", url, *extra],
        capture_output=True, text=True, timeout=30, env=ASAPD_ENV,
    )
    assert out.returncode == 0, f"asapd qsh {method} {url!r}: {out.stderr}"
    return out.stdout.strip()


@pytest.mark.parametrize("method,url", VECTORS, ids=[f"{m} {u}" for m, u in VECTORS])
def test_asapd_qsh_matches_npm_atlassian_jwt(npm_reference, method, url):
    expected = npm_reference[(method, url)]
    assert asapd_qsh(method, url, "--canonical") == expected["canonical"]
    assert asapd_qsh(method, url) == expected["qsh"]


def test_tokens_bound_to_a_request_carry_npm_s_qsh(asapd, caller_for, npm_reference):
    """The claim itself, through POST /v1/tokens, for every vector."""
    caller = caller_for("ES256")
    for method, url in VECTORS:
        r = requests.post(
            asapd.base + "/v1/tokens",
            json={"audience": AUDIENCE, "request": {"method": method, "url": url}},
            auth=caller.auth, verify=asapd.cert, timeout=60,
        )
        assert r.status_code == 200, f"{method} {url!r}: {r.status_code} {r.text}"
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["qsh"] == npm_reference[(method, url)]["qsh"], f"{method} {url!r}"
