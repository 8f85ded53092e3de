"""Shared fixtures: one asapd (`serve --dev`, HTTPS with its self-signed
certificate) for the whole session, and one caller per signing algorithm.

asapd is started from the binary at $ASAPD_BIN and configured by flags only.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ASAPD_BIN = os.environ.get("ASAPD_BIN", "target/debug/asapd")

# The group every per-algorithm caller is in, and what it grants.
GROUP = "g1"
AUDIENCE = "svc-b"
OTHER_AUDIENCE = "svc-other"

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


# asapd reads ASAPD_* from the environment (and warns about names it does
# not know, like ASAPD_BIN or ASAPD_TEST_POSTGRES_URL): keep the test
# harness's own ASAPD_* variables away from it and configure it by flags only.
ASAPD_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ASAPD_")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def asapd(tmp_path_factory):
    yield from serve_dev(tmp_path_factory, {})


def serve_dev(tmp_path_factory, extra_env):
    """`asapd init --dev` then `serve --dev` on a fresh data dir, with
    `extra_env` added to its environment (a key backend's settings); yields
    an Asapd and stops the server afterwards."""
    env = {**ASAPD_ENV, **extra_env}
    data = tmp_path_factory.mktemp("asapd-data")
    init = subprocess.run(
        [ASAPD_BIN, "init", "--dev", "--data-dir", str(data), "--json"],
        capture_output=True, text=True, timeout=120, env=env,
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
            stdout=log, stderr=subprocess.STDOUT,
            # The URL clients reach it at: the server metadata and the
            # `aud` of client assertions (test_client_assertions.py).
            env={**env, "ASAPD_HTTP__PUBLIC_URL": f"https://127.0.0.1:{port}"},
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


@dataclass
class Caller:
    name: str
    secret: str
    kid: str  # its first key

    @property
    def auth(self):
        return (self.name, self.secret)


def create_caller(asapd, name, alg, groups=(GROUP,)):
    r = asapd.admin.post(
        asapd.base + "/v1/admin/callers",
        json={"name": name, "groups": list(groups), "algorithm": alg},
        timeout=KEYGEN_TIMEOUT,
    )
    assert r.status_code == 201, f"create caller {name}: {r.status_code} {r.text}"
    body = r.json()
    kid = body["kid"]
    assert re.fullmatch(rf"{name}/[\w.\-+]+", kid), f"kid {kid!r} is not {name}/<key-name>"
    return Caller(name, body["client_secret"], kid)


@pytest.fixture(scope="session")
def caller_for(asapd):
    """caller_for(ALG) -> caller svc-<alg> in group g1, created once."""
    r = asapd.admin.post(
        asapd.base + "/v1/admin/groups",
        json={"name": GROUP, "audiences": [AUDIENCE, OTHER_AUDIENCE], "max_lifetime": 600},
        timeout=30,
    )
    assert r.status_code == 201, f"create group: {r.status_code} {r.text}"
    return callers_of(asapd, "svc")


def callers_of(asapd, prefix):
    """caller_for(ALG) -> caller <prefix>-<alg> in group g1, created once."""
    callers = {}

    def caller_for(alg):
        if alg not in callers:
            callers[alg] = create_caller(asapd, f"{prefix}-{alg.lower()}", alg)
        return callers[alg]

    return caller_for


@pytest.fixture(scope="session")
def kid_for(caller_for):
    """kid_for(ALG) -> the kid of caller svc-<alg>'s first key."""
    return lambda alg: caller_for(alg).kid
