"""The static mirror as a fallback key repository, with the library real
verifiers use: atlassian-jwt-auth's HTTPSMultiRepositoryPublicKeyRetriever
with asapd first and the nginx-served `asapd mirror` directory second keeps
verifying tokens after asapd is stopped, and still refuses a token whose key
was revoked before the stop.

nginx runs deploy/nginx-key-mirror.conf itself (its paths and port
replaced), over TLS on loopback, as an unprivileged process; the TLS and
process helpers are the fleet test's (tests/fleet/procs.py).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from atlassian_jwt_auth.exceptions import PublicKeyRetrieverException
from atlassian_jwt_auth.key import HTTPSMultiRepositoryPublicKeyRetriever, HTTPSPublicKeyRetriever
from atlassian_jwt_auth.verifier import JWTAuthVerifier

from conftest import ASAPD_BIN, ASAPD_ENV, AUDIENCE, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fleet"))
from procs import self_signed_cert, wait_until  # noqa: E402

NGINX_HTTP = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
{server}
}}
"""


def deploy_server_block(port, cert, key, root):
    text = (REPO / "deploy" / "nginx-key-mirror.conf").read_text()
    for old, new in [
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("/etc/asapd/tls/cert.pem", str(cert)),
        ("/etc/asapd/tls/key.pem", str(key)),
        ("root /var/lib/asapd/mirror;", f"root {root};"),
    ]:
        assert old in text, f"deploy/nginx-key-mirror.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def work():
    # Not under pytest's 0700 tmp: nginx runs as nobody and reads the mirror.
    path = Path(tempfile.mkdtemp(prefix="asapd-mirror-interop-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Server:
    def __init__(self, args, log_path, **kw):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_asapd(work):
    """An asapd of this test's own (the session one must keep running)."""
    data = work / "asapd"
    init = subprocess.run([ASAPD_BIN, "init", "--dev", "--data-dir", str(data), "--json"],
                          capture_output=True, text=True, timeout=120, env=ASAPD_ENV)
    assert init.returncode == 0, init.stderr
    creds = requests.models.complexjson.loads(init.stdout)
    port = free_port()
    server = Server([ASAPD_BIN, "serve", "--dev", "--data-dir", str(data),
                     "--listen", f"127.0.0.1:{port}"], data / "serve.log", env=ASAPD_ENV)
    base = f"https://127.0.0.1:{port}"
    wait_healthy(server.proc, base, data / "dev-cert.pem", data / "serve.log")
    admin = requests.Session()
    admin.auth = (creds["client_id"], creds["client_secret"])
    admin.verify = str(data / "dev-cert.pem")
    admin.trust_env = False
    return server, base, data, admin


def start_nginx(work, root):
    home = work / "nginx"
    (home / "tmp").mkdir(parents=True)
    cert, key = self_signed_cert(home)
    port = free_port()
    conf = home / "nginx.conf"
    conf.write_text(NGINX_HTTP.format(dir=home, server=deploy_server_block(port, cert, key, root)))
    user = {}
    if os.geteuid() == 0:
        for path in [home, *home.rglob("*")]:
            os.chown(path, 65534, 65534)
        user = {"user": 65534, "group": 65534, "extra_groups": []}
    server = Server([os.environ.get("FLEET_NGINX", "nginx"), "-p", str(home), "-c", str(conf),
                     "-e", str(home / "error.log")], home / "stderr.log", env=ASAPD_ENV, **user)
    base = f"https://127.0.0.1:{port}"

    def up():
        if server.proc.poll() is not None:
            raise RuntimeError((home / "stderr.log").read_text() + (home / "error.log").read_text())
        return requests.get(base + "/.well-known/jwks.json", verify=str(cert), timeout=2).ok

    wait_until(up, 30, f"nginx at {base}")
    return server, base, cert, home


def fresh_verifier(repositories):
    # The retrievers share one HTTP cache: start with an empty one, so a key
    # fetched while asapd was up cannot explain a success after the stop.
    HTTPSPublicKeyRetriever._class_session = None
    return JWTAuthVerifier(HTTPSMultiRepositoryPublicKeyRetriever(repositories))


def test_the_mirror_keeps_verifiers_going_when_asapd_is_down(work):
    asapd, asapd_base, data, admin = start_asapd(work)
    nginx = None
    try:
        r = admin.post(asapd_base + "/v1/admin/groups",
                       json={"name": "g", "audiences": [AUDIENCE], "max_lifetime": 600})
        assert r.status_code == 201, r.text
        r = admin.post(asapd_base + "/v1/admin/callers",
                       json={"name": "svc-m", "groups": ["g"], "algorithm": "ES256"})
        assert r.status_code == 201, r.text
        caller = (r.json()["client_id"], r.json()["client_secret"])
        old_kid = r.json()["kid"]

        def token():
            r = requests.post(asapd_base + "/v1/tokens", json={"audience": AUDIENCE},
                              auth=caller, verify=admin.verify, timeout=30)
            assert r.status_code == 200, r.text
            return r.json()["token"]

        revoked_token = token()
        r = admin.post(asapd_base + "/v1/admin/callers/svc-m/keys/rotate", json={})
        assert r.ok, r.text
        good_token = token()
        r = admin.post(asapd_base + f"/v1/admin/keys/{old_kid}/revoke", json={})
        assert r.ok, r.text

        mirror = work / "mirror"
        out = subprocess.run([ASAPD_BIN, "mirror", "--to", str(mirror), "--data-dir", str(data)],
                             capture_output=True, text=True, timeout=60, env=ASAPD_ENV)
        assert out.returncode == 0, out.stderr
        for path in [mirror, *mirror.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        nginx, nginx_base, nginx_cert, nginx_home = start_nginx(work, mirror)

        # Both TLS anchors in one bundle: verify_jwt takes one `verify`.
        bundle = work / "ca-bundle.pem"
        bundle.write_text(Path(admin.verify).read_text() + nginx_cert.read_text())
        repositories = [asapd_base + "/v1/keys/", nginx_base + "/"]

        # What nginx serves is what asapd serves.
        jwks = requests.get(asapd_base + "/.well-known/jwks.json", verify=admin.verify)
        served = requests.get(nginx_base + "/.well-known/jwks.json", verify=str(nginx_cert))
        assert served.headers["content-type"] == "application/json"
        assert served.headers["cache-control"].startswith("public, max-age=")
        assert served.content == jwks.content
        [new_kid] = [k["kid"] for k in jwks.json()["keys"] if k["kid"].startswith("svc-m/")]
        pem = requests.get(nginx_base + "/" + new_kid, verify=str(nginx_cert))
        assert pem.status_code == 200
        assert pem.headers["content-type"] == "application/x-pem-file"
        assert pem.text.startswith("-----BEGIN PUBLIC KEY-----")
        assert requests.get(nginx_base + "/" + old_kid, verify=str(nginx_cert)).status_code == 404

        claims = fresh_verifier(repositories).verify_jwt(good_token, AUDIENCE, verify=str(bundle))
        assert claims["iss"] == "svc-m"

        asapd.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(asapd_base + "/healthz", verify=admin.verify, timeout=5)

        fetched_before = (nginx_home / "access.log").read_text().count(new_kid)
        claims = fresh_verifier(repositories).verify_jwt(good_token, AUDIENCE, verify=str(bundle))
        assert claims["iss"] == "svc-m"
        # nginx logs a request after answering it: wait for the line.
        wait_until(lambda: (nginx_home / "access.log").read_text().count(new_kid)
                   > fetched_before, 5, "the key fetched from the mirror")

        with pytest.raises(PublicKeyRetrieverException):
            fresh_verifier(repositories).verify_jwt(revoked_token, AUDIENCE, verify=str(bundle))
    finally:
        asapd.stop()
        if nginx is not None:
            nginx.stop()
