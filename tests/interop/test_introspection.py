"""Introspection (RFC 7662) and revocation (RFC 7009) through a client
nobody here wrote: authlib's OAuth2Session, whose `introspect_token` and
`revoke_token` send the form and the client authentication the RFCs
describe (client_secret_basic, its default, and client_secret_post).

The resource server svc-b introspects the tokens svc-<alg> gets for it;
svc-<alg> revokes its own token; afterwards svc-b sees it inactive.
"""

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from conftest import AUDIENCE, OTHER_AUDIENCE, create_caller


@pytest.fixture(scope="module")
def resource_server(asapd, caller_for):
    """Caller svc-b: the audience the tokens are for. No groups: it only
    introspects."""
    caller_for("ES256")  # creates the group the callers share
    return create_caller(asapd, AUDIENCE, "ES256", groups=())


def session(asapd, caller, auth_method="client_secret_basic"):
    client = OAuth2Session(
        caller.name, caller.secret,
        token_endpoint_auth_method=auth_method,
        revocation_endpoint_auth_method=auth_method,
    )
    client.verify = asapd.cert
    client.trust_env = False  # else REQUESTS_CA_BUNDLE overrides .verify
    return client


def token_for(asapd, caller, audience=AUDIENCE):
    r = requests.post(
        asapd.base + "/v1/tokens", json={"audience": audience, "lifetime": 120},
        auth=caller.auth, verify=asapd.cert, timeout=60,
    )
    assert r.status_code == 200, f"/v1/tokens: {r.status_code} {r.text}"
    return r.json()


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256"])
def test_authlib_introspects_and_revokes(asapd, caller_for, resource_server, alg, auth_method):
    issuer = caller_for(alg)
    issued = token_for(asapd, issuer)
    rs = session(asapd, resource_server, auth_method)
    url = asapd.base + "/oauth2/introspect"

    r = rs.introspect_token(url, token=issued["token"], token_type_hint="access_token")
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["active"] is True
    assert body["iss"] == body["client_id"] == issuer.name
    assert body["aud"] == AUDIENCE
    assert body["jti"] == issued["jti"]
    assert body["kid"] == issued["kid"]
    assert body["token_type"] == "Bearer"
    assert body["exp"] - body["iat"] == 120

    # Only the token's own caller revokes it: the resource server cannot.
    r = rs.revoke_token(asapd.base + "/oauth2/revoke", token=issued["token"])
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client", r.text
    assert rs.introspect_token(url, token=issued["token"]).json()["active"] is True

    own = session(asapd, issuer, auth_method)
    r = own.revoke_token(asapd.base + "/oauth2/revoke", token=issued["token"],
                         token_type_hint="access_token")
    assert r.status_code == 200, r.text
    assert rs.introspect_token(url, token=issued["token"]).json() == {"active": False}


def test_a_token_for_another_audience_is_inactive_to_the_resource_server(
        asapd, caller_for, resource_server):
    issued = token_for(asapd, caller_for("ES256"), audience=OTHER_AUDIENCE)
    r = session(asapd, resource_server).introspect_token(
        asapd.base + "/oauth2/introspect", token=issued["token"])
    assert r.status_code == 200
    assert r.json() == {"active": False}


def test_wrong_client_credentials_are_invalid_client(asapd, resource_server):
    stranger = OAuth2Session(resource_server.name, "not-the-secret")
    stranger.verify = asapd.cert
    stranger.trust_env = False
    r = stranger.introspect_token(asapd.base + "/oauth2/introspect", token="x")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
