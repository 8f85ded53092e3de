"""A caller's rate limit holds for the fleet, not per replica: requests
alternating between A and B within a second get no more than the bound the
README documents."""

import math
import time

import pytest

from conftest import LIMITED, session

RATE_LIMIT = LIMITED  # {"per_second": 1, "burst": 6}
REPLICAS = 2
REQUESTS = 12  # two whole quotas: what per-replica limits would let through

# The fleet-wide bound, README "Several replicas" ("One rate limit per
# caller for the fleet"): the burst, plus at most one leased slice per
# replica, a slice being a tenth of the rate (at least 1, at most the burst).
SLICE = min(RATE_LIMIT["burst"], max(1, RATE_LIMIT["per_second"] // 10))
FLEET_BOUND = RATE_LIMIT["burst"] + REPLICAS * SLICE  # 8


@pytest.mark.parametrize("route", ["direct", "nginx"])
def test_the_rate_limit_holds_for_the_fleet(fleet, route):
    # A caller of its own per route, its bucket untouched so far.
    caller = fleet.established[f"limited-{route}"]
    if route == "nginx":
        # Round robin: consecutive requests alternate between A and B.
        targets = [(fleet.lb, session(caller.auth, fleet.cert))]
    else:
        targets = [(r.base, session(caller.auth)) for r in (fleet.a, fleet.b)]

    statuses = []
    start = time.monotonic()
    for i in range(REQUESTS):
        base, s = targets[i % len(targets)]
        statuses.append(fleet.token(base, caller, s).status_code)
    elapsed = time.monotonic() - start

    assert set(statuses) <= {200, 429}, f"unexpected statuses: {statuses}"
    admitted = statuses.count(200)
    # The bucket refills at per_second while the requests run; under a
    # second (the usual case) that adds nothing.
    refill = math.floor(elapsed * RATE_LIMIT["per_second"])
    assert admitted <= FLEET_BOUND + refill, (
        f"{admitted} of {REQUESTS} admitted in {elapsed:.2f} s ({route}); the fleet-wide bound "
        f"is {FLEET_BOUND} + {refill} refilled: {statuses}")
    assert admitted >= RATE_LIMIT["burst"], (
        f"only {admitted} admitted: the whole burst must be usable across the fleet: {statuses}")
