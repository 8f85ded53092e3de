"""Tokens issued continuously through the balancer keep verifying, with the
verifier real services run, across a manual rotation made on replica A.

The verifier fetches keys through the same balancer. If B did not know A's
new key, a token A signed with it would send the verifier to B half of the
time, get 404, and a valid token would be refused.
"""

import time

from conftest import AUDIENCE, fresh_verifier, session

# Tokens with the new kid the stream must verify before it stops; enough
# for the verifier to have fetched the new key through both upstreams.
AFTER_ROTATION = 20
BEFORE_ROTATION = 10
STREAM_DEADLINE = 30  # s; a safety stop, not a timing assertion
ROTATIONS = 20


def test_tokens_verify_across_a_rotation_made_on_one_replica(fleet):
    caller = fleet.established["rotation"]

    # One long-lived verifier, like a service's: it keeps what it fetched.
    v = fresh_verifier(fleet)
    client = session(caller.auth, fleet.cert)
    issued, refused, failed = [], [], []
    new_kid = None
    deadline = time.monotonic() + STREAM_DEADLINE
    while time.monotonic() < deadline:
        r = fleet.token(fleet.lb, caller, client)
        if r.status_code != 200:
            failed.append((r.status_code, r.text))
            continue
        body = r.json()
        issued.append(body["kid"])
        try:
            v.verify_jwt(body["token"], AUDIENCE, verify=fleet.cert)
        except Exception as e:  # noqa: BLE001 -- any refusal is the failure
            refused.append((body["kid"], repr(e)))
        if new_kid is None and len(issued) >= BEFORE_ROTATION:
            new_kid = fleet.rotate(fleet.a.base, caller.name)
        if new_kid is not None and issued.count(new_kid) >= AFTER_ROTATION:
            break

    assert not failed, f"the balancer refused {len(failed)} token requests: {failed[:3]}"
    assert not refused, f"valid tokens refused by the verifier: {refused[:3]}"
    assert new_kid is not None and issued.count(new_kid) >= AFTER_ROTATION, (
        f"only {issued.count(new_kid)} tokens with the new kid {new_kid} in {STREAM_DEADLINE} s")
    assert issued[0] == caller.kid, "the stream started before the rotation"


def test_b_publishes_a_key_as_soon_as_a_signs_with_it(fleet):
    """The race the stream above can only hit by chance, made on purpose:
    the first token A signs with its new key, and at once a verifier's
    fetch of that key lands on B. A notification takes milliseconds to
    arrive; the fetch must not be refused in the meantime."""
    caller = fleet.established["rotation-race"]
    on_a, plain = session(caller.auth), session()
    refused = []
    for _ in range(ROTATIONS):
        new_kid = fleet.rotate(fleet.a.base, caller.name)
        r = fleet.token(fleet.a.base, caller, on_a)
        assert r.status_code == 200 and r.json()["kid"] == new_kid, r.text
        pem = plain.get(f"{fleet.b.base}/v1/keys/{new_kid}", timeout=10)
        if pem.status_code != 200:
            refused.append((new_kid, pem.status_code))
    assert not refused, (
        f"B did not publish the key A had just signed with, {len(refused)} of {ROTATIONS} "
        f"times: {refused[:3]}")
