"""The production topology as processes, for the whole session: PostgreSQL,
two asapd replicas A and B on it (same master key), nginx in front of them
over TLS. Tests talk to the balancer as clients do, and to A or B directly
when they need to say where a change was made or where it must show.

Tests that break something (kill a replica, restart PostgreSQL) put it back
before they return, so the order of the tests does not matter.
"""

import itertools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from atlassian_jwt_auth.key import HTTPSPublicKeyRetriever
from atlassian_jwt_auth.verifier import JWTAuthVerifier

from procs import REFRESH_INTERVAL_SECS, Nginx, Postgres, Replica, master_key, wait_until

ASAPD_BIN = os.environ.get("ASAPD_BIN", "target/debug/asapd")
PGBIN = Path("/usr/lib/postgresql/15/bin")

GROUP = "fleet"
AUDIENCE = "svc-fleet"

# For callers that tests drive hard: asapd's default (100/s) would turn a
# tight polling loop into 429s.
NO_RATE_LIMIT = {"per_second": 1_000_000, "burst": 1_000_000}

# The fleet-wide limit test_rate_limit.py checks.
LIMITED = {"per_second": 1, "burst": 6}

# Callers that exist before replica B starts, as in a fleet that has been
# running: a test about rotation, revocation, a kill or the rate limit must
# not depend on how fast B learns of a new caller (test_propagation.py
# measures that). name -> rate_limit.
ESTABLISHED = {
    "xff": None,
    "rotation": NO_RATE_LIMIT,
    "rotation-race": NO_RATE_LIMIT,
    "revocation": NO_RATE_LIMIT,
    "kill": NO_RATE_LIMIT,
    "limited-direct": LIMITED,
    "limited-nginx": LIMITED,
    "p-rotation": NO_RATE_LIMIT,
    "p-revocation": NO_RATE_LIMIT,
    "p-disabling": NO_RATE_LIMIT,
}

# Callers created before B starts, besides ESTABLISHED, so the fleet holds
# a few hundred published keys, as a real one does: what a replica does on
# each change (reload, re-sign-in) costs more the more keys there are, and
# an empty fleet would hide that.
BACKGROUND_CALLERS = int(os.environ.get("FLEET_BACKGROUND_CALLERS", "300"))

# How long setup waits for a replica to learn of a change made on the other.
# Far below keys.refresh_interval_secs: only a change notification fits.
SETUP_DEADLINE = 10

# Loopback traffic never goes through a proxy from the environment.
for var in ("no_proxy", "NO_PROXY"):
    os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))

assert SETUP_DEADLINE < REFRESH_INTERVAL_SECS

_names = itertools.count(1)


def unique(prefix):
    """A caller name no other test uses."""
    return f"{prefix}-{next(_names)}"


def session(auth=None, verify=True):
    s = requests.Session()
    s.auth = auth
    s.verify = verify
    s.trust_env = False  # else REQUESTS_CA_BUNDLE overrides .verify
    return s


def fresh_verifier(fleet):
    """atlassian-jwt-auth's verifier, fetching keys through the balancer,
    having seen no key yet: the library shares one HTTP cache (honouring
    Cache-Control) across all its retrievers, so drop it."""
    HTTPSPublicKeyRetriever._class_session = None
    return JWTAuthVerifier(HTTPSPublicKeyRetriever(fleet.lb + "/v1/keys/"))


@dataclass
class Caller:
    name: str
    secret: str
    kid: str  # its first, active key

    @property
    def auth(self):
        return (self.name, self.secret)


class Fleet:
    def __init__(self, work: Path):
        self.work = work
        self.pg = Postgres(work)
        self.database_url = None
        self.admin_auth = None
        self.a = self.b = self.nginx = None
        self.established = {}

    def start(self):
        self.pg.start()
        subprocess.run([str(PGBIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg.port),
                        "-U", "postgres", "asapd_fleet"], check=True, timeout=60)
        self.database_url = self.pg.url.rsplit("/", 1)[0] + "/asapd_fleet"
        key = master_key()
        self.a = Replica("a", self.work, ASAPD_BIN, self.database_url, key)
        self.b = Replica("b", self.work, ASAPD_BIN, self.database_url, key)
        self.nginx = Nginx(self.work, [self.a, self.b])
        self.lb = self.nginx.base
        self.cert = str(self.nginx.cert)
        # The admin exists before either replica serves.
        init = subprocess.run([ASAPD_BIN, "init", "--json"], capture_output=True, text=True,
                              timeout=120, env=self.a.env)
        assert init.returncode == 0, f"asapd init failed:\n{init.stderr}"
        creds = json.loads(init.stdout)
        self.admin_auth = (creds["client_id"], creds["client_secret"])
        self.a.start()
        r = session(self.admin_auth).post(
            self.a.base + "/v1/admin/groups", timeout=30,
            json={"name": GROUP, "audiences": [AUDIENCE], "max_lifetime": 600})
        assert r.status_code == 201, f"create group: {r.status_code} {r.text}"
        self.established = {name: self.create_caller(self.a.base, name, rate_limit=limit)
                            for name, limit in ESTABLISHED.items()}
        admin = self.admin()
        for i in range(BACKGROUND_CALLERS):
            r = admin.post(self.a.base + "/v1/admin/callers", timeout=60,
                           json={"name": f"background-{i}", "groups": [GROUP]})
            assert r.status_code == 201, f"create background-{i}: {r.status_code} {r.text}"
        self.b.start()
        self.nginx.start()

    def stop(self):
        for part in (self.nginx, self.a, self.b):
            if part is not None:
                part.stop()
        self.pg.stop()

    def replicas(self):
        return [self.a, self.b]

    def admin(self):
        """An admin session, for a replica or the balancer."""
        return session(self.admin_auth, self.cert)

    # --- admin calls, made where the test says ---------------------------

    def create_caller(self, via, name, rate_limit=None, algorithm="ES256"):
        body = {"name": name, "groups": [GROUP], "algorithm": algorithm}
        if rate_limit is not None:
            body["rate_limit"] = rate_limit
        r = self.admin().post(via + "/v1/admin/callers", json=body, timeout=60)
        assert r.status_code == 201, f"create caller {name} on {via}: {r.status_code} {r.text}"
        b = r.json()
        return Caller(name, b["client_secret"], b["kid"])

    def wait_published_on(self, replica, kid):
        """Setup: waits until replica serves kid's PEM, i.e. knows the key
        (and so its caller), without spending the caller's rate limit."""
        s = session()
        wait_until(lambda: s.get(f"{replica.base}/v1/keys/{kid}", timeout=10).status_code == 200,
                   SETUP_DEADLINE, f"replica {replica.name} publishing {kid} (change notification)")

    def rotate(self, via, name):
        """Rotates through `via`; returns the new active kid."""
        r = self.admin().post(f"{via}/v1/admin/callers/{name}/keys/rotate", timeout=60)
        assert r.status_code == 200, f"rotate {name}: {r.status_code} {r.text}"
        return r.json()["kid"]

    def revoke(self, via, kid):
        """Revokes through `via`; returns the replacement's kid, if any."""
        r = self.admin().post(f"{via}/v1/admin/keys/{kid}/revoke", timeout=60)
        assert r.status_code == 200, f"revoke {kid}: {r.status_code} {r.text}"
        replacement = r.json().get("replacement")
        return replacement and replacement["kid"]

    def set_enabled(self, via, name, enabled):
        r = self.admin().patch(f"{via}/v1/admin/callers/{name}", json={"enabled": enabled},
                                  timeout=60)
        assert r.status_code == 200, f"patch {name}: {r.status_code} {r.text}"

    def issued_jtis(self, via, caller):
        """Every jti in `token.issued` records for caller, all pages."""
        s, jtis, cursor = self.admin(), set(), None
        while True:
            params = {"action": "token.issued", "target": f"caller:{caller}", "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            r = s.get(via + "/v1/admin/audit", params=params, timeout=60)
            assert r.status_code == 200, f"audit query: {r.status_code} {r.text}"
            page = r.json()
            jtis.update(e["detail"]["jti"] for e in page["events"])
            cursor = page.get("next_cursor")
            if not cursor:
                return jtis

    # --- what a caller does -----------------------------------------------

    def token(self, base, caller, s=None, **kw):
        """POST /v1/tokens at base; returns the response."""
        s = s or session(caller.auth, self.cert)
        return s.post(base + "/v1/tokens", json={"audience": AUDIENCE, "lifetime": 300},
                      auth=caller.auth, timeout=30, **kw)


@pytest.fixture(scope="session")
def fleet():
    work = Path(os.environ.get("FLEET_WORK") or pytest.fail("run through tests/fleet/run.sh"))
    f = Fleet(work)
    try:
        f.start()
        yield f
    finally:
        f.stop()


@pytest.fixture(autouse=True)
def whole_fleet(fleet):
    """Every test starts with both replicas and PostgreSQL up."""
    assert fleet.a.alive() and fleet.b.alive(), "a replica is down at the start of a test"
    yield fleet
    for r in fleet.replicas():
        if not r.alive():
            r.start()
    wait_until(fleet.pg.accepts, 30, "PostgreSQL accepting")


def pytest_sessionfinish(session):
    import figures

    path = os.environ.get("FLEET_FIGURES")
    if path and figures.RESULTS:
        figures.write(path, {
            "replicas": 2,
            "database": "PostgreSQL 15 (loopback, fsync off)",
            "asapd": os.path.realpath(ASAPD_BIN),
            "keys.refresh_interval_secs": REFRESH_INTERVAL_SECS,
            "callers_before_the_trials": len(ESTABLISHED) + BACKGROUND_CALLERS,
        })


def pytest_terminal_summary(terminalreporter):
    import figures

    if figures.RESULTS:
        terminalreporter.section("propagation A -> B (target/fleet-propagation.json)")
        terminalreporter.write_line(figures.table())
