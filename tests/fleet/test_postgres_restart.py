"""After PostgreSQL restarts, B's change listener reconnects and reloads:
a caller created through A right after the restart gets tokens from B far
sooner than the periodic refresh (an hour here) could explain."""

import time

from conftest import NO_RATE_LIMIT, Caller, SETUP_DEADLINE, session, unique
from procs import wait_until

# Reconnecting uses backoff; this leaves it room and is still 360 times
# shorter than keys.refresh_interval_secs.
RECONNECT_DEADLINE = SETUP_DEADLINE


def metric(replica, name):
    """One unlabelled sample from the replica's /metrics, or None."""
    text = session().get(replica.base + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_replicas_reconnect_after_a_postgres_restart(fleet):
    reconnects = metric(fleet.b, "asapd_change_listener_reconnects_total")
    assert reconnects is not None, "B's /metrics has no asapd_change_listener_reconnects_total"
    fleet.pg.stop()
    fleet.pg.start()  # waits until it accepts connections
    name = unique("after-restart")

    def create():
        # A's pool may still hold connections of the old server: the first
        # attempts can get 503, which is what a client would retry on.
        r = fleet.admin().post(
            fleet.a.base + "/v1/admin/callers", timeout=30,
            json={"name": name, "groups": ["fleet"], "rate_limit": NO_RATE_LIMIT})
        assert r.status_code in (201, 503), f"create after restart: {r.status_code} {r.text}"
        return r.json() if r.status_code == 201 else None

    created = wait_until(create, RECONNECT_DEADLINE, "A creating a caller after the restart")
    t0 = time.monotonic()
    caller = Caller(name, created["client_secret"], created["kid"])
    on_b = session(caller.auth)

    def b_issues():
        r = fleet.token(fleet.b.base, caller, on_b)
        return r.status_code == 200 and r.json()["kid"] == created["kid"]

    wait_until(b_issues, RECONNECT_DEADLINE,
               "B issuing for a caller created on A after a PostgreSQL restart")
    print(f"B issued for the new caller {time.monotonic() - t0:.3f} s after A created it")
    assert metric(fleet.b, "asapd_change_listener_reconnects_total") > reconnects, (
        "B's listener must count the lost connection")
    assert metric(fleet.b, "asapd_change_listener_connected") == 1, "B's listener is not connected"
