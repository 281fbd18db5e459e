"""OpenID Connect sign-in (AUTH_MODE=oidc) against a real OpenID provider.

The provider is oidc-provider-mock, a standards-compliant OpenID provider built on Authlib's
server side, in a process of its own (tests/oidcprovider.py) on a free port of localhost,
started once for this module. Its authorization page is a form that signs in whichever
subject is posted to it. Brook runs in werkzeug's threaded server; httpx plays the browser,
one redirect at a time.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from brook.models import Conversation, Usage

from .conftest import AppFactory, LiveServer, new_conversation, send, wait_for_answer, wait_until
from .oidcprovider import OidcProvider, User
from .test_a11y import axe_violations, serve_axe

ANN = User(sub="ann-1", claims={"email": "Ann@Example.com", "email_verified": True,
                                 "name": "Ann Example"})
EVE = User(sub="eve-1", claims={"email": "eve@elsewhere.test", "email_verified": True})
UNVERIFIED = User(sub="mallory-1", claims={"email": "mallory@example.com",
                                           "email_verified": False})


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with OidcProvider(log, [ANN, EVE, UNVERIFIED], require_nonce=True) as provider:
        yield provider


OidcSite = Callable[..., LiveServer]


@pytest.fixture
def oidc_site(make_app: AppFactory, serve: Callable[[Flask], LiveServer],
              provider: OidcProvider, request: pytest.FixtureRequest) -> OidcSite:
    assert request.node.get_closest_marker("slow"), (
        "this test uses the OpenID provider's process: mark it @pytest.mark.slow")

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


@pytest.mark.slow  # the OpenID provider's process
def test_sign_in_and_out(oidc_site: OidcSite, provider: OidcProvider) -> None:
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
        verifier = provider.token_requests()[-1]["code_verifier"][0]
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


@pytest.mark.slow  # the OpenID provider's process
def test_next_is_only_a_local_path(oidc_site: OidcSite) -> None:
    site = oidc_site()
    for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test", "javascript:x"):
        with site.client() as client:
            response = sign_in(client, next_path=target)
            assert response.headers["location"] == "/", target


@pytest.mark.slow  # the OpenID provider's process
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


@pytest.mark.slow  # the OpenID provider's process
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


@pytest.mark.slow  # the OpenID provider's process
def test_wrong_nonce_is_refused(oidc_site: OidcSite) -> None:
    site = oidc_site()
    with site.client() as client:
        # The provider signs an ID token for another nonce than the one Brook sent.
        returned = authorize(begin(client), ANN, nonce="not-the-one-brook-sent")
        response = callback(client, returned)
        assert response.status_code == 400
        assert "could not be checked" in response.text
        assert me(client)["signed_in"] is False


# The limits on, so that GET /api/usage shows what is used against them.
LIMITS = {"LIMIT_ANSWERS_PER_MINUTE": "50", "LIMIT_TOKENS_PER_DAY": "100000",
          "LIMIT_CONVERSATIONS_PER_DAY": "20", "LIMIT_STORED_CONVERSATIONS": "50",
          "BUDGET_TOKENS_PER_DAY": "0"}


def answer(client: httpx.Client, conversation_id: str, content: str = "hi") -> None:
    """Ask, and wait for the answer to end and its tokens to be counted."""
    before = client.get("/api/usage").json()["tokens_today"]
    sent = send(client, conversation_id, content)
    wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    wait_until(lambda: client.get("/api/usage").json()["tokens_today"] > before,
               "the answer's tokens counted")


def owner_of(site: LiveServer, conversation_id: str) -> str:
    with site.app.extensions["brook.sessions"]() as db:
        owner: str = db.get_one(Conversation, uuid.UUID(conversation_id)).owner
    return owner


def this_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.mark.slow  # the OpenID provider's process
def test_signing_in_keeps_the_anonymous_conversations_and_usage(
        oidc_site: OidcSite, make_app: AppFactory, serve: Callable[[Flask], LiveServer],
        database_url: str) -> None:
    """A Brook used anonymously (no AUTH_MODE) that then turns sign-in on: a browser's
    conversations and today's usage go with it to the owner it signs in as, added to what
    that owner used today elsewhere; another anonymous browser keeps its own."""
    anonymous = serve(make_app(database_url, **LIMITS))  # the same database and secret key
    site = oidc_site(DATABASE_URL=database_url, ADMIN_EMAILS="", **LIMITS)  # Ann: no admin
    first_minute = this_minute()
    with anonymous.client() as visitor, anonymous.client() as stranger, \
            site.client() as elsewhere:
        asked = new_conversation(visitor)
        assert visitor.patch(f"/api/conversations/{asked}",
                             json={"title": "Asked before signing in"}).status_code == 200
        answer(visitor, asked)
        answer(visitor, asked, "and again")
        not_mine = new_conversation(stranger)
        answer(stranger, not_mine)
        anon = owner_of(anonymous, asked)
        assert anon.startswith("anon:")
        visitors = visitor.get("/api/usage").json()
        strangers = stranger.get("/api/usage").json()
        assert visitors["answers_today"] == 2
        assert visitors["limits"]["conversations_per_day"]["used"] == 1

        # Ann signed in elsewhere earlier today, and used Brook there too.
        assert sign_in(elsewhere).status_code == 303
        answer(elsewhere, new_conversation(elsewhere))
        anns = elsewhere.get("/api/usage").json()
        assert anns["answers_today"] == 1

        # The visitor's browser, with the cookie of its anonymous owner, signs in as Ann.
        with site.client() as client:
            client.cookies.set("brook_session", visitor.cookies["brook_session"],
                               domain="127.0.0.1")
            assert sign_in(client).status_code == 303
            assert me(client)["email"] == "ann@example.com"
            usage = client.get("/api/usage").json()
            titles = {c["title"] for c in client.get("/api/conversations").json()
                      ["conversations"]}
        last_minute = this_minute()

        tokens = visitors["tokens_today"] + anns["tokens_today"]
        assert usage["tokens_today"] == tokens
        assert usage["answers_today"] == 3
        limits = usage["limits"]
        assert limits["tokens_per_day"]["used"] == tokens
        assert limits["tokens_per_day"]["remaining"] == 100000 - tokens
        assert limits["conversations_per_day"]["used"] == 2
        assert limits["stored_conversations"]["used"] == 2
        if first_minute == last_minute:  # else the minute's count is another minute's
            assert limits["answers_per_minute"]["used"] == 3
        assert "Asked before signing in" in titles
        # The other anonymous browser keeps its conversation and its usage.
        assert stranger.get("/api/usage").json()["tokens_today"] == strangers["tokens_today"]
        assert owner_of(anonymous, not_mine) != owner_of(site, asked)
    assert owner_of(site, asked).startswith("oidc:localhost:")
    with site.app.extensions["brook.sessions"]() as db:
        assert db.scalars(select(Usage).where(Usage.owner == anon)).all() == []


@pytest.mark.slow  # the OpenID provider's process
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


@pytest.mark.slow  # the OpenID provider's process
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
