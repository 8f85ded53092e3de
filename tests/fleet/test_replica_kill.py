"""A replica killed with SIGKILL under load does not stop the service, and
no token a client received goes unaudited."""

import threading
import time

from conftest import session

CLIENTS = 4
BEFORE_KILL = 20  # tokens received before the kill
AFTER_KILL = 40  # requests sent after the kill, all of which must succeed
LOAD_DEADLINE = 30  # s; a safety stop, not a timing assertion


def test_sigkill_of_a_replica_under_load(fleet):
    caller = fleet.established["kill"]

    # (sent, returned, status, jti) per request, monotonic seconds.
    results, lock, stop = [], threading.Lock(), threading.Event()

    def client():
        s = session(caller.auth, fleet.cert)
        while not stop.is_set():
            sent = time.monotonic()
            try:
                r = fleet.token(fleet.lb, caller, s)
                status, jti = r.status_code, r.status_code == 200 and r.json()["jti"]
            except Exception as e:  # noqa: BLE001 -- a failed request is a result
                status, jti = repr(e), None
            with lock:
                results.append((sent, time.monotonic(), status, jti))

    def count(pred):
        with lock:
            return sum(1 for r in results if pred(r))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + LOAD_DEADLINE
        while count(lambda r: r[2] == 200) < BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        kill_sent = time.monotonic()
        fleet.b.kill()
        killed = time.monotonic()
        while count(lambda r: r[0] > killed) < AFTER_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)

    before = [r for r in results if r[0] < kill_sent and r[2] == 200]
    after = [r for r in results if r[0] > killed]
    assert len(before) >= BEFORE_KILL, f"only {len(before)} tokens before the kill"
    assert len(after) >= AFTER_KILL, f"only {len(after)} requests after the kill"
    # Only a request in flight while B died may fail (nginx does not resend
    # a POST it already passed on); any other failure is the service down.
    failed = [r for r in results if r[2] != 200 and not (r[0] < killed and r[1] >= kill_sent)]
    assert not failed, f"{len(failed)} requests failed outside the kill: {failed[:3]}"

    received = {r[3] for r in results if r[2] == 200}
    audited = fleet.issued_jtis(fleet.a.base, caller.name)
    missing = received - audited
    assert not missing, f"{len(missing)} of {len(received)} tokens received are not audited"
