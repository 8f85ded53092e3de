"""nginx is in `http.trusted_proxies`: the client address asapd records is
the one nginx saw, and a client cannot choose its own by sending the header."""

from requests.adapters import HTTPAdapter

from conftest import session

# Any loopback address is this machine; a client bound to this one is told
# apart from nginx (127.0.0.1) in what asapd records.
CLIENT_IP = "127.0.0.2"


class FromAddress(HTTPAdapter):
    """Connects from a chosen local address."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def test_the_client_address_is_the_one_nginx_forwards(fleet):
    caller = fleet.established["xff"]
    s = session(caller.auth, fleet.cert)
    s.mount("https://", FromAddress(CLIENT_IP))

    plain = fleet.token(fleet.lb, caller, s)
    forged = fleet.token(fleet.lb, caller, s, headers={"X-Forwarded-For": "203.0.113.7"})
    assert plain.status_code == 200, plain.text
    assert forged.status_code == 200, forged.text

    r = fleet.admin().get(
        fleet.a.base + "/v1/admin/audit", timeout=30,
        params={"action": "token.issued", "target": f"caller:{caller.name}"})
    assert r.status_code == 200, r.text
    seen = {e["detail"]["jti"]: e["source_ip"] for e in r.json()["events"]}
    assert seen == {plain.json()["jti"]: CLIENT_IP, forged.json()["jti"]: CLIENT_IP}, (
        "asapd must record the address nginx saw (its X-Forwarded-For), "
        "never one the client wrote into the header")
