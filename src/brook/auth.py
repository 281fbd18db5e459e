"""OpenID Connect sign-in (AUTH_MODE=oidc): /auth/login, /auth/callback, /auth/logout.

Authlib's Flask client does the protocol: it reads the provider's metadata from
`<OIDC_ISSUER>/.well-known/openid-configuration`, sends a random `state` and `nonce` and a
PKCE challenge (S256), keeps them in the signed session cookie, and on the way back checks
the state, exchanges the code with its verifier, and verifies the ID token (signature
against the provider's JWKS, issuer, audience, expiry and nonce).

A signed-in user's owner id is `oidc:<issuer host and path>:<sub>`: stable for as long as
the provider keeps the subject. The conversations the browser made anonymously move to it.
These are browser routes (redirects and pages), not the JSON API: see /api/me for who is
signed in.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from . import database
from .config import Settings
from .db import get_session
from .identity import USER_KEY, anonymous_owner

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, url_prefix="/auth")
NEXT_KEY = "auth_next"
MAX_OWNER = 200  # conversations.owner's length


def init_app(app: Flask, settings: Settings) -> None:
    """Register the provider with Authlib and the sign-in routes (AUTH_MODE=oidc only)."""
    oauth = OAuth(app)
    client_kwargs: dict[str, Any] = {"scope": settings.oidc_scopes,
                                     "code_challenge_method": "S256"}
    if not settings.oidc_client_secret:  # a public client: PKCE instead of a secret
        client_kwargs["token_endpoint_auth_method"] = "none"  # noqa: S105
    oauth.register(
        "oidc",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=(settings.oidc_issuer or "").rstrip("/")
        + "/.well-known/openid-configuration",
        client_kwargs=client_kwargs,
    )
    app.extensions["brook.oauth"] = oauth
    app.register_blueprint(bp)


def _client() -> Any:
    return current_app.extensions["brook.oauth"].oidc


def _settings() -> Settings:
    settings: Settings = current_app.config["BROOK_SETTINGS"]
    return settings


def local_path(target: str | None) -> str:
    """`target` if it is a path on this site (`/...`, not `//host` or a URL), else `/`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def page(title: str, message: str, status: int, *, sign_in: bool = False) -> Response:
    """A plain page that says what happened (refused, failed, signed out)."""
    html = render_template("signin.html", app_name="Brook", title=title, message=message,
                           sign_in=sign_in, next_path="/")
    return Response(html, status=status, mimetype="text/html")


@bp.get("/login")
def login() -> BaseResponse:
    session[NEXT_KEY] = local_path(request.args.get("next"))
    response: BaseResponse = _client().authorize_redirect(url_for("auth.callback", _external=True))
    return response


@bp.get("/callback")
def callback() -> BaseResponse:
    if "error" in request.args:
        return page("Sign-in failed", "The identity provider did not sign you in "
                    f"({request.args.get('error', '')[:100]}).", 400, sign_in=True)
    client = _client()
    try:
        token = client.authorize_access_token()
    except OAuthError as exc:  # a state that is not this browser's, a refused code
        log.warning("sign-in refused: %s", exc.error)
        return page("Sign-in failed", "The sign-in could not be checked. Please try again.",
                    400, sign_in=True)
    except Exception as exc:  # the ID token failed verification (nonce, signature, expiry)
        log.warning("sign-in refused: the ID token is not valid (%s)", type(exc).__name__)
        return page("Sign-in failed", "The sign-in could not be checked. Please try again.",
                    400, sign_in=True)
    claims: dict[str, Any] = dict(token.get("userinfo") or {})
    if "email" not in claims and client.server_metadata.get("userinfo_endpoint"):
        try:
            claims = {**dict(client.userinfo(token=token)), **claims}
        except Exception:
            log.warning("sign-in: the provider's userinfo could not be read", exc_info=True)
    email = _verified_email(claims)
    settings = _settings()
    if not allowed(email, settings):
        log.info("sign-in refused: %s is not on the allow-lists", email or "no e-mail")
        return page("Not allowed", "This account may not use Brook. Ask the person who runs "
                    "it to add your e-mail address.", 403)
    owner = owner_id(str(claims["iss"]), str(claims["sub"]))
    previous = anonymous_owner()
    if previous is not None and previous.startswith("anon:"):
        moved = database.move_owner(get_session(), previous, owner)
        if moved:
            log.info("sign-in: %d anonymous conversations moved to the signed-in owner", moved)
    target = local_path(session.get(NEXT_KEY))
    session.clear()
    session[USER_KEY] = {"owner": owner, "email": email,
                         "name": claims.get("name") or claims.get("preferred_username")}
    session.permanent = True
    return redirect(target, 303)


@bp.post("/logout")
def logout() -> BaseResponse:
    if not _same_site():
        return page("Not signed out", "Sign out from Brook's own page.", 403)
    session.clear()
    return redirect(url_for("web.index"), 303)


def _same_site() -> bool:
    """CSRF: as the API's check (api/__init__.py), for this form's POST."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None:
        return site in ("same-origin", "none")
    if origin is not None:
        return urlsplit(origin).netloc == request.host
    return True


def _verified_email(claims: dict[str, Any]) -> str | None:
    """The `email` claim, lower-case, unless the provider says it is not verified."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    if claims.get("email_verified") in (False, "false"):
        return None
    return email.strip().lower()


def allowed(email: str | None, settings: Settings) -> bool:
    """With AUTH_ALLOWED_EMAILS or AUTH_ALLOWED_DOMAINS set, only those may sign in."""
    if not settings.auth_allowed_emails and not settings.auth_allowed_domains:
        return True
    if email is None:
        return False
    return (email in settings.auth_allowed_emails
            or email.rpartition("@")[2] in settings.auth_allowed_domains)


def owner_id(issuer: str, subject: str) -> str:
    """`oidc:<issuer host and path>:<sub>`, or its hash where that would not fit."""
    parts = urlsplit(issuer)
    where = (parts.netloc + parts.path).rstrip("/")
    owner = f"oidc:{where}:{subject}"
    if len(owner) <= MAX_OWNER:
        return owner
    return "oidc:" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()
