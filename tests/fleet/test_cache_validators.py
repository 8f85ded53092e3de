"""Cache validators across the fleet: A, B and the balancer give one ETag
for the same keys, so a CDN or a verifier's HTTP cache that revalidates
through the balancer gets 304 whichever replica answers."""

import pytest

from conftest import session
from procs import wait_until

# The propagation bound (docs/ARCHITECTURE.md, "The path of a change through the fleet") with room to poll.
AGREEMENT_DEADLINE = 2.0

PATHS = ["/.well-known/jwks.json", "/v1/keys/{kid}"]


@pytest.mark.parametrize("path", PATHS)
def test_every_replica_gives_the_same_etag_and_304_through_nginx(fleet, path):
    path = path.format(kid=fleet.established["xff"].kid)
    plain, through_lb = session(), session(verify=fleet.cert)

    def agreed():
        # A change still propagating may make them differ for a moment
        # (under the 1 s bound); the same keys must give the same tag.
        tags = {}
        for replica in fleet.replicas():
            r = plain.get(replica.base + path, timeout=10)
            assert r.status_code == 200, f"{replica.name}: {r.status_code} {r.text}"
            assert r.headers.get("ETag"), f"{replica.name} gave no ETag for {path}"
            tags[replica.name] = (r.headers["ETag"], r.headers.get("Cache-Control"))
        return tags["a"] if tags["a"] == tags["b"] else None

    etag, cache_control = wait_until(agreed, AGREEMENT_DEADLINE, f"A and B agreeing on {path}")

    # Round robin: two revalidations through nginx reach both replicas.
    for _ in fleet.replicas():
        r = through_lb.get(fleet.lb + path, headers={"If-None-Match": etag}, timeout=10)
        assert r.status_code == 304, f"If-None-Match through nginx: {r.status_code} {r.text}"
        assert r.headers.get("ETag") == etag
        assert r.headers.get("Cache-Control") == cache_control
        assert not r.content
