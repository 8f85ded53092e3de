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

from procs import Nginx, Postgres, Replica, master_key, wait_until

ASAPD_BIN = os.environ.get("ASAPD_BIN", "target/debug/asapd")
PGBIN = Path("/usr/lib/postgresql/15/bin")

GROUP = "fleet"
AUDIENCE = "svc-fleet"

# Loopback traffic never goes through a proxy from the environment.
for var in ("no_proxy", "NO_PROXY"):
    os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))

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

    def start(self):
        self.pg.start()
        subprocess.run([str(PGBIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg.port),
                        "-U", "postgres", "asapd_fleet"], check=True, timeout=60)
        self.database_url = self.pg.url.rsplit("/", 1)[0] + "/asapd_fleet"
        key = master_key()
        self.a = Replica("a", self.work, ASAPD_BIN, self.database_url, key)
        self.b = Replica("b", self.work, ASAPD_BIN, self.database_url, key)
        # The admin exists before either replica serves.
        init = subprocess.run([ASAPD_BIN, "init", "--json"], capture_output=True, text=True,
                              timeout=120, env=self.a.env)
        assert init.returncode == 0, f"asapd init failed:\n{init.stderr}"
        creds = json.loads(init.stdout)
        self.admin_auth = (creds["client_id"], creds["client_secret"])
        self.a.start()
        self.b.start()
        self.nginx = Nginx(self.work, [self.a, self.b])
        self.nginx.start()
        self.lb = self.nginx.base
        self.cert = str(self.nginx.cert)

    def stop(self):
        for part in (self.nginx, self.a, self.b):
            if part is not None:
                part.stop()
        self.pg.stop()

    def replicas(self):
        return [self.a, self.b]

    def admin(self, base):
        """An admin session for a replica's or the balancer's base URL."""
        return session(self.admin_auth, self.cert)

    # --- admin calls, made where the test says ---------------------------

    def create_caller(self, via, name, rate_limit=None, algorithm="ES256"):
        body = {"name": name, "groups": [GROUP], "algorithm": algorithm}
        if rate_limit is not None:
            body["rate_limit"] = rate_limit
        r = self.admin(via).post(via + "/v1/admin/callers", json=body, timeout=60)
        assert r.status_code == 201, f"create caller {name} on {via}: {r.status_code} {r.text}"
        b = r.json()
        return Caller(name, b["client_secret"], b["kid"])

    def rotate(self, via, name):
        """Rotates through `via`; returns the new active kid."""
        r = self.admin(via).post(f"{via}/v1/admin/callers/{name}/keys/rotate", timeout=60)
        assert r.status_code == 200, f"rotate {name}: {r.status_code} {r.text}"
        return r.json()["kid"]

    def revoke(self, via, kid):
        """Revokes through `via`; returns the replacement's kid, if any."""
        r = self.admin(via).post(f"{via}/v1/admin/keys/{kid}/revoke", timeout=60)
        assert r.status_code == 200, f"revoke {kid}: {r.status_code} {r.text}"
        replacement = r.json().get("replacement")
        return replacement and replacement["kid"]

    def set_enabled(self, via, name, enabled):
        r = self.admin(via).patch(f"{via}/v1/admin/callers/{name}", json={"enabled": enabled},
                                  timeout=60)
        assert r.status_code == 200, f"patch {name}: {r.status_code} {r.text}"

    def issued_jtis(self, via, caller):
        """Every jti in `token.issued` records for caller, all pages."""
        s, jtis, cursor = self.admin(via), set(), None
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
        r = session(f.admin_auth).post(
            f.a.base + "/v1/admin/groups", timeout=30,
            json={"name": GROUP, "audiences": [AUDIENCE], "max_lifetime": 600})
        assert r.status_code == 201, f"create group: {r.status_code} {r.text}"
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
