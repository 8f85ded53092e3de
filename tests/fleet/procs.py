"""The processes of the fleet topology: one PostgreSQL, asapd replicas and
nginx in front of them, all on loopback, each with its own files under one
work directory that run.sh cleans up.

Every process started here writes its pid to WORK/pids/, so run.sh can end
what a crashed pytest left behind (by pid, never by name).
"""

import base64
import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
PG_SCRIPT = REPO / "scripts" / "pg-test-server.sh"

# A replica notices only through change notifications within this time: the
# periodic refresh would take an hour, so it cannot explain any propagation
# the tests measure.
REFRESH_INTERVAL_SECS = 3600

# asapd reads ASAPD_* from the environment and warns about names it does not
# know; the harness's own variables never reach it.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ASAPD_")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout, what, interval=0.05):
    """Polls check() until it returns something truthy; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 -- reported if it never succeeds
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout} s (last error: {last!r})")


def record_pid(work: Path, name: str, pid: int):
    (work / "pids").mkdir(exist_ok=True)
    (work / "pids" / f"{name}.pid").write_text(f"{pid}\n")


def forget_pid(work: Path, name: str):
    """The process is reaped: its pid may be reused, run.sh must not touch it."""
    (work / "pids" / f"{name}.pid").unlink(missing_ok=True)


class Postgres:
    """A throwaway server through scripts/pg-test-server.sh; restartable on
    the same directory and port."""

    def __init__(self, work: Path):
        self.dir = work / "pg"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _script(self, *args):
        r = subprocess.run([str(PG_SCRIPT), *args], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"pg-test-server.sh {' '.join(args)} failed:\n{r.stdout}{r.stderr}")

    def start(self):
        self._script("start", str(self.dir), str(self.port))

    def stop(self):
        self._script("stop", str(self.dir))

    def accepts(self):
        """True once the server accepts TCP connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


class Replica:
    """One `asapd serve` on the shared database, plain HTTP on loopback."""

    def __init__(self, name, work: Path, bin_path, database_url, master_key):
        self.name = name
        self.bin = bin_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / f"asapd-{name}.log"
        self.work = work
        self.env = {
            **BASE_ENV,
            "ASAPD_DATABASE_URL": database_url,
            "ASAPD_MASTER_KEY": master_key,
            "ASAPD_LISTEN": f"127.0.0.1:{self.port}",
            "ASAPD_KEYS__REFRESH_INTERVAL_SECS": str(REFRESH_INTERVAL_SECS),
            # nginx connects from 127.0.0.1; its X-Forwarded-For is believed.
            "ASAPD_HTTP__TRUSTED_PROXIES": "[127.0.0.1/32]",
            "ASAPD_DATABASE_MAX_CONNECTIONS": "8",
        }
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([self.bin, "serve"], stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env)
        finally:
            log.close()
        record_pid(self.work, f"asapd-{self.name}", self.proc.pid)
        wait_until(self._healthy, 60, f"replica {self.name} healthy at {self.base}")
        unknown = [line for line in self.log().splitlines() if "unknown environment variable" in line]
        assert not unknown, f"replica {self.name} ignored settings: {unknown}"

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"replica {self.name} exited with {self.proc.returncode}:\n{self.log()}")
        return requests.get(self.base + "/readyz", timeout=2).status_code == 200

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: no drain, no goodbye; returns once the process is reaped,
        so its listening socket is gone."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        forget_pid(self.work, f"asapd-{self.name}")

    def stop(self):
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        forget_pid(self.work, f"asapd-{self.name}")

    def log(self):
        return self.log_path.read_text(errors="replace")


def self_signed_cert(directory: Path):
    """A P-256 certificate for 127.0.0.1/localhost that is its own trust
    anchor; returns (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asapd fleet test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;

    upstream asapd {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://asapd;
            proxy_set_header Host $host;
            # Replaces whatever the client sent: asapd trusts this header
            # from 127.0.0.1 only, so a client cannot choose its own address.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            # A dead replica refuses the connection: try the other. A POST
            # already sent is not retried (nginx's default), so a token is
            # never issued twice for one request.
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx as a foreground process with its own prefix, TLS on a
    free loopback port, the replicas as its upstream."""

    def __init__(self, work: Path, replicas):
        self.dir = work / "nginx"
        self.dir.mkdir()
        (self.dir / "tmp").mkdir()
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.cert, key = self_signed_cert(self.dir)
        # max_fails=0: a replica the tests killed and restarted is back in
        # the rotation at once, so round robin keeps alternating A and B
        # (a refused connection still moves the request to the other one).
        servers = "\n".join(f"        server 127.0.0.1:{r.port} max_fails=0;" for r in replicas)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(dir=self.dir, servers=servers, port=self.port,
                                               cert=self.cert, key=key))
        self.work = work
        self.proc = None

    def start(self):
        # Unprivileged even when the harness runs as root (as CI does).
        user = {}
        if os.geteuid() == 0:
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, 65534, 65534)
            user = {"user": 65534, "group": 65534, "extra_groups": []}
        with open(self.dir / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen(
                [os.environ.get("FLEET_NGINX", "nginx"), "-p", str(self.dir), "-c", str(self.conf),
                 "-e", str(self.dir / "error.log")],
                stdout=subprocess.DEVNULL, stderr=stderr, env=BASE_ENV, **user,
            )
        record_pid(self.work, "nginx", self.proc.pid)
        wait_until(self._healthy, 30, f"nginx healthy at {self.base}")

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.errors()}")
        r = requests.get(self.base + "/healthz", verify=str(self.cert), timeout=2)
        return r.status_code == 200

    def errors(self):
        text = ""
        for name in ("stderr.log", "error.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        forget_pid(self.work, "nginx")


def master_key():
    return base64.b64encode(os.urandom(32)).decode()
