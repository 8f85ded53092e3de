"""`make soak`: the fleet topology of tests/fleet (PostgreSQL, replicas A and
B on it, nginx over TLS in front) under steady mixed traffic for DURATION,
then the verdicts, written to benches/RESULTS.md:

- no 5xx answer (nor a request that got no answer at all);
- no token received without its `token.issued` audit record;
- each replica's RSS flat after the warm-up (the least-squares slope);
- p50 and p99 of the last minute close to those of the first.

Traffic, through nginx as clients send it, paced at SOAK_RATE requests/s
(open loop: a slow answer does not slow the offered load): tokens,
introspection of recent tokens, their revocation by their caller, key
fetches by kid with and without If-None-Match; and, from one admin thread,
a slower stream of admin writes, revocations by jti and key rotations.

Run through benches/soak.sh, which builds the release binary and sets
ASAPD_BIN, FLEET_WORK and the venv this runs in.
"""

import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fleet"))

from procs import Nginx, Postgres, Replica, master_key  # noqa: E402

PGBIN = Path("/usr/lib/postgresql/15/bin")
NO_RATE_LIMIT = {"per_second": 1_000_000, "burst": 1_000_000}
GROUP, AUDIENCE = "soak", "svc-soak"
CALLERS = [f"soak-{i}" for i in range(6)]
TOKEN_LIFETIME = 60  # short: revoked jtis expire and are pruned during the run
LOAD_THREADS = 4
# (operation, weight) of the load threads' mix.
MIX = [("token", 40), ("introspect", 20), ("key", 15), ("key_inm", 15), ("revoke", 10)]
ADMIN_EVERY_S = 1.0  # one admin operation a second; every 10th a rotation
RSS_EVERY_S = 2.0


def parse_duration(text):
    """'10m', '3m', '90s', '1h' or plain seconds."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def session(auth=None, verify=True):
    s = requests.Session()
    s.auth, s.verify = auth, verify
    s.trust_env = False  # no proxy from the environment; verify as given
    return s


class Record:
    """What every thread appends to: (t, op, status, latency ms); status 0
    is a request that got no answer."""

    def __init__(self, t0):
        self.t0 = t0
        self.lock = threading.Lock()
        self.rows = []
        self.received = set()  # (caller, jti) of every token received
        self.recent = collections.deque(maxlen=200)  # (caller, token, kid, jti)
        self.etags = {}  # kid -> ETag
        self.errors = collections.Counter()

    def add(self, op, status, started):
        now = time.monotonic()
        with self.lock:
            self.rows.append((started - self.t0, op, status, (now - started) * 1000))

    def pick_recent(self):
        with self.lock:
            return random.choice(self.recent) if self.recent else None


class Soak:
    def __init__(self, work: Path, bin_path, duration, rate):
        self.work, self.bin, self.duration, self.rate = work, bin_path, duration, rate
        self.pg = Postgres(work)
        self.stop = threading.Event()
        self.rss = {"a": [], "b": []}  # (t, KiB)
        self.admin_auth = self.secrets = None

    # --- the topology ------------------------------------------------------

    def start(self):
        self.pg.start()
        subprocess.run([str(PGBIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg.port),
                        "-U", "postgres", "asapd_soak"], check=True, timeout=60)
        url = self.pg.url.rsplit("/", 1)[0] + "/asapd_soak"
        key = master_key()
        self.a = Replica("a", self.work, self.bin, url, key)
        self.b = Replica("b", self.work, self.bin, url, key)
        for r in (self.a, self.b):
            # The production default: the periodic refresh runs too.
            r.env["ASAPD_KEYS__REFRESH_INTERVAL_SECS"] = "10"
            r.env["ASAPD_LOG"] = "warn"
        init = subprocess.run([self.bin, "init", "--json"], capture_output=True, text=True,
                              timeout=120, env=self.a.env, check=True)
        creds = json.loads(init.stdout)
        self.admin_auth = (creds["client_id"], creds["client_secret"])
        self.a.start()
        self.b.start()
        self.nginx = Nginx(self.work, [self.a, self.b])
        self.nginx.start()
        self.lb, self.cert = self.nginx.base, str(self.nginx.cert)
        self.populate()

    def stop_all(self):
        for part in (getattr(self, "nginx", None), getattr(self, "a", None),
                     getattr(self, "b", None)):
            if part is not None:
                part.stop()
        self.pg.stop()

    def admin(self):
        return session(self.admin_auth, self.cert)

    def populate(self):
        s = self.admin()
        r = s.post(self.lb + "/v1/admin/groups", timeout=60,
                   json={"name": GROUP, "audiences": [AUDIENCE], "max_lifetime": 600})
        assert r.status_code == 201, r.text
        self.secrets = {}
        for name in [AUDIENCE, *CALLERS]:
            body = {"name": name, "groups": [GROUP], "rate_limit": NO_RATE_LIMIT}
            r = s.post(self.lb + "/v1/admin/callers", json=body, timeout=60)
            assert r.status_code == 201, r.text
            self.secrets[name] = r.json()["client_secret"]

    # --- traffic -------------------------------------------------------------

    def paced(self, per_second, step):
        """Calls step() per_second times a second until stopped; a backlog
        of more than a second is dropped rather than sent in a burst."""
        interval = 1.0 / per_second
        next_at = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            elif now - next_at > 1.0:
                self.record.errors["load generator behind: dropped a second"] += 1
                next_at = now
            step()
            next_at += interval

    def send(self, s, op, method, path, **kw):
        started = time.monotonic()
        try:
            r = s.request(method, self.lb + path, timeout=30, **kw)
        except requests.RequestException as e:
            self.record.add(op, 0, started)
            self.record.errors[f"{op}: {type(e).__name__}"] += 1
            return None
        self.record.add(op, r.status_code, started)
        return r

    def load_step(self, sessions, ops, weights):
        op = random.choices(ops, weights)[0]
        rec = self.record
        if op == "token":
            caller = random.choice(CALLERS)
            r = self.send(sessions[caller], op, "POST", "/v1/tokens",
                          json={"audience": AUDIENCE, "lifetime": TOKEN_LIFETIME})
            if r is not None and r.status_code == 200:
                b = r.json()
                with rec.lock:
                    rec.received.add((caller, b["jti"]))
                    rec.recent.append((caller, b["token"], b["kid"], b["jti"]))
            return
        recent = rec.pick_recent()
        if recent is None:
            return
        caller, token, kid, _ = recent
        if op == "introspect":
            self.send(sessions[AUDIENCE], op, "POST", "/oauth2/introspect", data={"token": token})
        elif op == "revoke":
            self.send(sessions[caller], op, "POST", "/oauth2/revoke", data={"token": token})
        else:
            headers = {}
            if op == "key_inm" and kid in rec.etags:
                headers["If-None-Match"] = rec.etags[kid]
            r = self.send(sessions[None], op, "GET", f"/v1/keys/{kid}", headers=headers)
            if r is not None and r.status_code == 200 and "ETag" in r.headers:
                rec.etags[kid] = r.headers["ETag"]

    def load_thread(self):
        sessions = {name: session((name, secret), self.cert)
                    for name, secret in self.secrets.items()}
        sessions[None] = session(None, self.cert)
        ops, weights = zip(*MIX)
        self.paced(self.rate / LOAD_THREADS, lambda: self.load_step(sessions, ops, weights))

    def admin_step(self, s, n):
        caller = random.choice(CALLERS)
        if n % 10 == 0:
            self.send(s, "rotate", "POST", f"/v1/admin/callers/{caller}/keys/rotate")
        elif n % 3 == 0:
            recent = self.record.pick_recent()
            if recent:
                self.send(s, "admin_revoke", "POST", "/v1/admin/tokens/revoke",
                          json={"jti": recent[3]})
        elif n % 3 == 1:
            lifetime = random.choice([600, 900])
            self.send(s, "admin_write", "PATCH", f"/v1/admin/groups/{GROUP}",
                      json={"max_lifetime": lifetime})
        else:
            self.send(s, "admin_write", "PATCH", f"/v1/admin/callers/{caller}",
                      json={"rate_limit": NO_RATE_LIMIT})

    def admin_thread(self):
        s, counter = self.admin(), iter(range(10**9))
        self.paced(1 / ADMIN_EVERY_S, lambda: self.admin_step(s, next(counter)))

    def rss_thread(self):
        while not self.stop.wait(RSS_EVERY_S):
            t = time.monotonic() - self.record.t0
            for name, r in (("a", self.a), ("b", self.b)):
                self.rss[name].append((t, vm_rss_kib(r.proc.pid)))

    def run(self):
        self.record = Record(time.monotonic())
        threads = [threading.Thread(target=self.load_thread) for _ in range(LOAD_THREADS)]
        threads += [threading.Thread(target=self.admin_thread),
                    threading.Thread(target=self.rss_thread)]
        for t in threads:
            t.start()
        self.stop.wait(self.duration)
        self.stop.set()
        for t in threads:
            t.join()
        alive = self.a.alive() and self.b.alive()
        return alive, self.unaudited()

    def unaudited(self):
        """Tokens received whose token.issued record is missing."""
        s, audited = self.admin(), set()
        for caller in CALLERS:
            cursor = None
            while True:
                params = {"action": "token.issued", "target": f"caller:{caller}", "limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                r = s.get(self.a.base + "/v1/admin/audit", params=params, timeout=120)
                r.raise_for_status()
                page = r.json()
                audited.update((caller, e["detail"]["jti"]) for e in page["events"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        return len(self.record.received - audited)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def main():
    import soak_report

    duration = parse_duration(os.environ.get("DURATION", "10m"))
    rate = float(os.environ.get("SOAK_RATE", "100"))
    work = Path(os.environ["FLEET_WORK"])
    soak = Soak(work, os.environ["ASAPD_BIN"], duration, rate)
    load_before = os.getloadavg()
    try:
        soak.start()
        print(f"soak: {duration:.0f} s at {rate:.0f} req/s through {soak.lb}", flush=True)
        alive, unaudited = soak.run()
    finally:
        soak.stop_all()
    report = soak_report.Report(soak, duration, rate, unaudited, alive,
                                (load_before, os.getloadavg()))
    text = report.markdown()
    print(text)
    soak_report.write_section(REPO / "benches" / "RESULTS.md", text)
    Path(os.environ.get("SOAK_JSON", REPO / "target" / "soak.json")).write_text(
        json.dumps(report.as_json(), indent=2))
    return 0 if report.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
