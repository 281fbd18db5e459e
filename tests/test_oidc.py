"""OpenID Connect sign-in (AUTH_MODE=oidc) against a real OpenID provider.

The provider is oidc-provider-mock: a standards-compliant OpenID provider built on
Authlib's server side (discovery, JWKS, RS256-signed ID tokens carrying the request's
nonce, the authorization code grant), served over real HTTP on a free port of localhost.
Its authorization page is a form that signs in whichever subject is posted to it. Brook
runs in werkzeug's threaded server; httpx plays the browser, one redirect at a time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from brook.models import Conversation

from .conftest import AppFactory, LiveServer
from .test_a11y import axe_violations, serve_axe

with warnings.catch_warnings():  # the provider imports authlib.jose, which Authlib deprecates
    warnings.simplefilter("ignore")
    from oidc_provider_mock import User
    from oidc_provider_mock import app as provider_app

# The provider (in this process) uses Authlib APIs that Authlib now deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::authlib.deprecate.AuthlibDeprecationWarning"),
]

ANN = User(sub="ann-1", claims={"email": "Ann@Example.com", "email_verified": True,
                                 "name": "Ann Example"})
EVE = User(sub="eve-1", claims={"email": "eve@elsewhere.test", "email_verified": True})
UNVERIFIED = User(sub="mallory-1", claims={"email": "mallory@example.com",
                                           "email_verified": False})


@dataclass
class Provider:
    url: str
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    app = provider_app(require_nonce=True, user_claims=[ANN, EVE, UNVERIFIED])
    recorded: list[dict[str, list[str]]] = []

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        """Keep each token request's form (to check Brook's PKCE verifier)."""
        if environ.get("PATH_INFO") == "/oauth2/token":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            recorded.append(parse_qs(body.decode()))
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    server = make_server("localhost", 0, recording, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Provider(f"http://localhost:{server.server_port}", recorded)
    finally:
        server.shutdown()
        server.server_close()


OidcSite = Callable[..., LiveServer]


@pytest.fixture
def oidc_site(make_app: AppFactory, serve: Callable[[Flask], LiveServer],
              provider: Provider) -> OidcSite:
    def start(**overrides: str) -> LiveServer:
        env = {"AUTH_MODE": "oidc", "OIDC_ISSUER": provider.url, "OIDC_CLIENT_ID": "brook",
               "OIDC_CLIENT_SECRET": "brook-secret", "ADMIN_EMAILS": "ann@example.com"}
        return serve(make_app(**{**env, **overrides}))
    return start


def begin(client: httpx.Client, next_path: str = "/") -> str:
    """GET /auth/login: the provider's authorization URL Brook sends the browser to."""
    response = client.get("/auth/login", params={"next": next_path})
    assert response.status_code == 302, response.text
    return response.headers["location"]


def authorize(authorization_url: str, user: User, **replace: str) -> str:
    """Sign in at the provider as `user`: the callback URL it sends the browser back to.
    `replace` changes parameters of the authorization request first (a tampering browser)."""
    parts = urlsplit(authorization_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | replace
    url = urlunsplit(parts._replace(query=urlencode(query)))
    response = httpx.post(url, data={"sub": user.sub})
    assert response.status_code == 302, response.text
    location: str = response.headers["location"]
    return location


def callback(client: httpx.Client, callback_url: str, **replace: str) -> httpx.Response:
    parts = urlsplit(callback_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | replace
    return client.get(parts.path, params=query)


def sign_in(client: httpx.Client, user: User = ANN, next_path: str = "/") -> httpx.Response:
    return callback(client, authorize(begin(client, next_path), user))


def me(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/api/me")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_sign_in_and_out(oidc_site: OidcSite, provider: Provider) -> None:
    site = oidc_site()
    with site.client() as client:
        assert me(client) == {"mode": "oidc", "signed_in": False, "email": None, "name": None,
                              "admin": False}
        assert client.get("/api/conversations").status_code == 401
        page = client.get("/")
        assert page.status_code == 200
        assert 'id="sign-in"' in page.text
        assert 'id="composer"' not in page.text

        authorization_url = begin(client, "/#c=later")
        assert authorization_url.startswith(provider.url + "/oauth2/authorize?")
        asked = parse_qs(urlsplit(authorization_url).query)
        assert asked["redirect_uri"] == [site.url + "/auth/callback"]
        assert asked["code_challenge_method"] == ["S256"]
        assert asked["scope"] == ["openid email profile"]
        assert asked["state"][0]
        assert asked["nonce"][0]

        response = callback(client, authorize(authorization_url, ANN))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/#c=later"
        # PKCE: the token request carried the verifier of the challenge sent.
        verifier = provider.token_requests[-1]["code_verifier"][0]
        digest = hashlib.sha256(verifier.encode()).digest()
        assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == \
            asked["code_challenge"][0]
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Secure" not in cookie

        assert me(client) == {"mode": "oidc", "signed_in": True, "email": "ann@example.com",
                              "name": "Ann Example", "admin": True}
        created = client.post("/api/conversations", json={"title": "Mine"})
        assert created.status_code == 201
        page = client.get("/")
        assert 'id="composer"' in page.text
        assert 'id="sign-out"' in page.text
        assert "ann@example.com" in page.text

        # Sign-out refuses another site's form, then signs out from Brook's page.
        refused = client.post("/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403
        assert me(client)["signed_in"] is True
        out = client.post("/auth/logout", headers={"Sec-Fetch-Site": "same-origin"})
        assert out.status_code == 303
        assert out.headers["location"] == "/"
        assert me(client)["signed_in"] is False
        assert client.get("/api/conversations").status_code == 401

        # Signing in again finds the same owner, and so the same conversations.
        assert sign_in(client).status_code == 303
        titles = [c["title"] for c in client.get("/api/conversations").json()["conversations"]]
        assert titles == ["Mine"]


def test_next_is_only_a_local_path(oidc_site: OidcSite) -> None:
    site = oidc_site()
    for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test", "javascript:x"):
        with site.client() as client:
            response = sign_in(client, next_path=target)
            assert response.headers["location"] == "/", target


def test_allow_lists_refuse_others(oidc_site: OidcSite) -> None:
    site = oidc_site(AUTH_ALLOWED_DOMAINS="example.com", AUTH_ALLOWED_EMAILS="eve@other.test")
    with site.client() as client:
        refused = sign_in(client, EVE)
        assert refused.status_code == 403
        assert "may not use Brook" in refused.text
        assert me(client)["signed_in"] is False
        # An address the provider says is not verified is no address at all.
        assert sign_in(client, UNVERIFIED).status_code == 403
        assert me(client)["signed_in"] is False
        assert sign_in(client, ANN).status_code == 303
        assert me(client)["email"] == "ann@example.com"


def test_tampered_state_is_refused(oidc_site: OidcSite) -> None:
    site = oidc_site()
    with site.client() as client, site.client() as other:
        returned = authorize(begin(client), ANN)
        assert callback(client, returned, state="forged").status_code == 400
        assert me(client)["signed_in"] is False
        # A valid code and state, but of another browser's sign-in.
        assert callback(other, authorize(begin(other), ANN)).status_code == 303
        theirs = authorize(begin(other), ANN)
        begin(client)
        assert callback(client, theirs).status_code == 400
        assert me(client)["signed_in"] is False


def test_wrong_nonce_is_refused(oidc_site: OidcSite) -> None:
    site = oidc_site()
    with site.client() as client:
        # The provider signs an ID token for another nonce than the one Brook sent.
        returned = authorize(begin(client), ANN, nonce="not-the-one-brook-sent")
        response = callback(client, returned)
        assert response.status_code == 400
        assert "could not be checked" in response.text
        assert me(client)["signed_in"] is False


def test_anonymous_conversations_move_to_the_signed_in_owner(
        oidc_site: OidcSite, make_app: AppFactory) -> None:
    site = oidc_site()
    app = site.app
    sessions = app.extensions["brook.sessions"]
    with sessions() as db:
        db.add_all([Conversation(owner="anon:before", title="Asked before signing in"),
                    Conversation(owner="anon:someone-else", title="Not mine")])
        db.commit()
    # The cookie an anonymous browser carries (as before AUTH_MODE=oidc was set).
    cookie = app.session_interface.get_signing_serializer(app).dumps(  # type: ignore[attr-defined]
        {"owner": "anon:before"})
    with site.client() as client:
        client.cookies.set("brook_session", cookie, domain="127.0.0.1")
        assert sign_in(client).status_code == 303
        titles = [c["title"] for c in client.get("/api/conversations").json()["conversations"]]
        assert titles == ["Asked before signing in"]
    with sessions() as db:
        owners = {c.title: c.owner for c in db.query(Conversation)}
    assert owners["Not mine"] == "anon:someone-else"
    assert owners["Asked before signing in"].startswith("oidc:localhost:")


def test_cookie_is_secure_behind_https(oidc_site: OidcSite) -> None:
    site = oidc_site(TRUSTED_PROXIES="1")
    with site.client() as client:
        response = client.get("/auth/login", headers={"X-Forwarded-Proto": "https"})
        cookie = response.headers["set-cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "redirect_uri=https" in response.headers["location"]


def test_me_in_the_other_modes(make_app: AppFactory, serve: Callable[[Flask], LiveServer]
                               ) -> None:
    anonymous = serve(make_app(ADMIN_EMAILS="ann@example.com"))
    with anonymous.client() as client:
        assert me(client) == {"mode": "anonymous", "signed_in": False, "email": None,
                              "name": None, "admin": False}
        assert client.get("/auth/login").status_code == 404  # no sign-in routes
    appservice = serve(make_app(WEBSITE_AUTH_ENABLED="true", ADMIN_EMAILS="ann@example.com"))
    with appservice.client() as client:
        assert me(client)["signed_in"] is False
        headers = {"X-MS-CLIENT-PRINCIPAL-ID": "p1", "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
                   "X-MS-CLIENT-PRINCIPAL-NAME": "Ann@example.com"}
        assert me(client.__class__(base_url=appservice.url, headers=headers)) == {
            "mode": "appservice", "signed_in": True, "email": "ann@example.com",
            "name": None, "admin": True}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_sign_in_button_in_the_browser(page: Page, oidc_site: OidcSite,
                                       scheme: Any) -> None:
    site = oidc_site()
    page.emulate_media(color_scheme=scheme)
    serve_axe(page, site)
    page.goto(site.url + "/")
    button = page.get_by_role("link", name="Sign in")
    expect(button).to_be_visible()
    expect(page.locator("#composer")).to_have_count(0)
    assert axe_violations(page, site) == []
    button.click()
    # The provider's own sign-in form, then back to Brook's chat page, signed in.
    page.fill("input[name=sub]", ANN.sub)
    page.locator("button[type=submit], input[type=submit]").first.click()
    expect(page.locator("#composer")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert axe_violations(page, site) == []
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
