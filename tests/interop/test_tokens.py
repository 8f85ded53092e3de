"""Tokens from asapd, checked by the verifiers real services run.

For every algorithm asapd offers, a token from POST /v1/tokens and one from
POST /oauth2/token must verify with atlassian-jwt-auth (JWTAuthVerifier +
HTTPSPublicKeyRetriever over HTTPS against `serve --dev`, and the same behind
the library's own ASAPMiddleware with an ASAP_VALID_ISSUERS allow-list) and
with PyJWT's PyJWKClient against the JWKS. The same verifiers must reject a
token for another audience, a token from an issuer outside the allow-list
and a token whose key has been revoked, for every algorithm and endpoint.
"""

import jwt
import pytest
import requests
from atlassian_jwt_auth.exceptions import PublicKeyRetrieverException
from atlassian_jwt_auth.frameworks.wsgi import ASAPMiddleware
from atlassian_jwt_auth.key import HTTPSPublicKeyRetriever
from atlassian_jwt_auth.verifier import JWTAuthVerifier

from conftest import AUDIENCE, OTHER_AUDIENCE, create_caller

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
ENDPOINTS = ["v1", "oauth2"]


def get_token(asapd, caller, endpoint, audience=AUDIENCE):
    if endpoint == "v1":
        r = requests.post(
            asapd.base + "/v1/tokens", json={"audience": audience, "lifetime": 120},
            auth=caller.auth, verify=asapd.cert, timeout=60,
        )
        assert r.status_code == 200, f"/v1/tokens: {r.status_code} {r.text}"
        return r.json()["token"]
    # What a stock OAuth2 client sends: a form, credentials in Basic.
    r = requests.post(
        asapd.base + "/oauth2/token",
        data={"grant_type": "client_credentials", "audience": audience},
        auth=caller.auth, verify=asapd.cert, timeout=60,
    )
    assert r.status_code == 200, f"/oauth2/token: {r.status_code} {r.text}"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    return body["access_token"]


def fresh_verifier(asapd):
    """A verifier that has not seen any key yet. HTTPSPublicKeyRetriever
    shares one HTTP cache (honouring Cache-Control) across all instances,
    so start a new one: a verifier that fetched a key keeps using it for
    max-age, which is the Cache-Control verifiers need (docs/ARCHITECTURE.md,
    "What verifiers expect")."""
    HTTPSPublicKeyRetriever._class_session = None
    return JWTAuthVerifier(HTTPSPublicKeyRetriever(asapd.base + "/v1/keys/"))


def asap_verify(asapd, verifier, token, audience):
    """JWTAuthVerifier.verify_jwt: signature, kid owned by iss, sub == iss,
    aud, exp/iat, lifetime ≤ 1 h. It has no issuer allow-list parameter; that
    is asap_service's job."""
    return verifier.verify_jwt(token, audience, verify=asapd.cert)


@pytest.fixture(scope="session")
def asap_service(asapd):
    """asap_service(VALID_ISSUERS, audience=AUDIENCE) -> call(token) ->
    (HTTP status, claims or None): a WSGI app behind atlassian-jwt-auth's
    ASAPMiddleware, i.e. what a service using the library's framework
    integration runs.

    The issuer allow-list is the library's own: ASAP_VALID_ISSUERS, checked by
    frameworks.common.asap (its _verify_issuers; InvalidIssuerError -> 403)
    for every integration. JWTAuthVerifier itself has no issuer parameter,
    and the WSGI middleware is the framework-agnostic public way to get that
    check without Flask or Django installed.

    Like a real service it keeps fetched keys for their max-age: the library
    caches one verifier per settings, and every HTTPSPublicKeyRetriever
    shares one HTTP cache. So only never-revoked keys go through it.
    """

    class DevCertRetriever(HTTPSPublicKeyRetriever):
        # The middleware calls verify_jwt without requests kwargs, and the
        # retriever's session ignores REQUESTS_CA_BUNDLE (trust_env=False):
        # trust the dev certificate here.
        def retrieve(self, key_identifier, **requests_kwargs):
            requests_kwargs.setdefault("verify", asapd.cert)
            return super().retrieve(key_identifier, **requests_kwargs)

    def service(valid_issuers, audience=AUDIENCE):
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        middleware = ASAPMiddleware(app, {
            "ASAP_KEY_RETRIEVER_CLASS": DevCertRetriever,
            "ASAP_PUBLICKEY_REPOSITORY": asapd.base + "/v1/keys/",
            "ASAP_VALID_AUDIENCE": audience,
            "ASAP_VALID_ISSUERS": list(valid_issuers),
        })

        def call(token):
            environ = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
            status = []
            middleware(environ, lambda s, headers, exc_info=None: status.append(s))
            assert len(status) == 1, status
            return int(status[0].split()[0]), environ.get("ATL_ASAP_CLAIMS")

        return call

    return service


def jwks_verify(asapd, token, audience, issuer):
    client = jwt.PyJWKClient(asapd.base + "/.well-known/jwks.json", ssl_context=asapd.ssl_context())
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token, key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer,
        options={"require": ["iss", "sub", "aud", "jti", "iat", "exp"]},
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_atlassian_verifier_accepts(asapd, caller_for, asap_service, alg, endpoint):
    caller = caller_for(alg)
    token = get_token(asapd, caller, endpoint)
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": caller.kid, "typ": "JWT"}

    claims = asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE)
    assert claims["iss"] == claims["sub"] == caller.name
    assert claims["aud"] == AUDIENCE
    assert len(claims["jti"]) >= 22

    # A service with the library's middleware, this caller allow-listed.
    status, claims = asap_service({caller.name})(token)
    assert status == 200 and claims["iss"] == caller.name


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_pyjwt_jwks_client_accepts(asapd, caller_for, alg, endpoint):
    caller = caller_for(alg)
    token = get_token(asapd, caller, endpoint)
    claims = jwks_verify(asapd, token, AUDIENCE, caller.name)
    assert claims["iss"] == caller.name


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_an_issuer_outside_the_allow_list_is_rejected(asapd, caller_for, asap_service, alg, endpoint):
    caller = caller_for(alg)
    token = get_token(asapd, caller, endpoint)
    # ASAP_VALID_ISSUERS without this caller: 403 Forbidden (InvalidIssuerError).
    assert asap_service({"someone-else"})(token) == (403, None)
    # The same token, the same service, the caller allow-listed: accepted.
    status, claims = asap_service({"someone-else", caller.name})(token)
    assert status == 200 and claims["iss"] == caller.name
    # PyJWT's issuer check agrees.
    with pytest.raises(jwt.InvalidIssuerError):
        jwks_verify(asapd, token, AUDIENCE, "someone-else")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_token_for_another_audience_is_rejected(asapd, caller_for, asap_service, alg, endpoint):
    caller = caller_for(alg)
    token = get_token(asapd, caller, endpoint, audience=OTHER_AUDIENCE)
    with pytest.raises(jwt.InvalidAudienceError):
        asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE)
    with pytest.raises(jwt.InvalidAudienceError):
        jwks_verify(asapd, token, AUDIENCE, caller.name)
    assert asap_service({caller.name})(token) == (401, None)
    # The audience it was issued for accepts it.
    asap_verify(asapd, fresh_verifier(asapd), token, OTHER_AUDIENCE)
    assert asap_service({caller.name}, audience=OTHER_AUDIENCE)(token)[0] == 200


@pytest.fixture(scope="module")
def revoked(asapd, caller_for):
    """revoked(ALG) -> (caller, {endpoint: token}, revoke response): a caller
    of its own (the shared svc-<alg> keys stay untouched), one token per
    endpoint that verified, then its key revoked. Made once per algorithm
    and shared by both endpoints' tests."""
    done = {}

    def revoked(alg):
        if alg not in done:
            caller_for(alg)  # the group exists
            caller = create_caller(asapd, f"revoked-{alg.lower()}", alg)
            tokens = {endpoint: get_token(asapd, caller, endpoint) for endpoint in ENDPOINTS}
            for token in tokens.values():
                asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE)
            r = asapd.admin.post(asapd.base + f"/v1/admin/keys/{caller.kid}/revoke", timeout=120)
            assert r.status_code == 200, f"revoke {caller.kid}: {r.status_code} {r.text}"
            done[alg] = (caller, tokens, r.json())
        return done[alg]

    return revoked


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_token_whose_key_was_revoked_is_rejected(asapd, revoked, alg, endpoint):
    caller, tokens, body = revoked(alg)
    assert body["revoked"]["kid"] == caller.kid and body["revoked"]["published"] is False

    token = tokens[endpoint]
    with pytest.raises(PublicKeyRetrieverException) as exc:
        asap_verify(asapd, fresh_verifier(asapd), token, AUDIENCE)
    assert exc.value.original_exception.response.status_code == 404
    with pytest.raises(jwt.PyJWKClientError):
        jwks_verify(asapd, token, AUDIENCE, caller.name)
    # (Behind ASAPMiddleware, once its cached copy of the key has expired,
    # this 404 is re-raised as PublicKeyRetrieverException instead of
    # becoming a 401: the library takes the status from
    # `e.response.status_code if e.response`, a 404 Response is falsy, so
    # status_code is None, and the middleware only maps 403/404. A library
    # bug in 22.0.1, not asapd's to fix; checked by hand, not tested here.)

    # Revoking the active key activated a replacement; new tokens from this
    # endpoint are signed with it and verify.
    assert body["replacement"] and body["replacement"]["kid"] != caller.kid
    fresh = get_token(asapd, caller, endpoint)
    assert jwt.get_unverified_header(fresh)["kid"] == body["replacement"]["kid"]
    asap_verify(asapd, fresh_verifier(asapd), fresh, AUDIENCE)
    jwks_verify(asapd, fresh, AUDIENCE, caller.name)
