"""Who owns a conversation, and who is signed in.

AUTH_MODE (config.py) chooses how a request's owner is found:

- `anonymous`: an anonymous id kept in Flask's signed, HttpOnly, SameSite session cookie.
- `appservice`: App Service Authentication's signed-in principal, from the headers App
  Service's front end sets and strips from incoming requests. Anywhere else those headers
  could be forged, so this mode needs WEBSITE_AUTH_ENABLED (set by App Service).
- `oidc`: the user who signed in with OpenID Connect (auth.py), kept in the session cookie.

In `appservice` and `oidc` modes a request without a signed-in user is refused 401
`unauthenticated`.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from flask import current_app, g, request, session

from .config import Settings
from .errors import APIError

PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
IDP_HEADER = "X-MS-CLIENT-PRINCIPAL-IDP"
NAME_HEADER = "X-MS-CLIENT-PRINCIPAL-NAME"
USER_KEY = "user"  # the session's signed-in user (oidc): {"owner", "email", "name"}


def _settings() -> Settings:
    settings: Settings = current_app.config["BROOK_SETTINGS"]
    return settings


def current_owner() -> str:
    if "owner" in g:
        owner: str = g.owner
        return owner
    mode = _settings().auth_mode
    if mode == "appservice":
        principal = request.headers.get(PRINCIPAL_HEADER)
        if not principal:
            raise APIError(401, "unauthenticated", "Sign in to use Brook.")
        owner = f"{request.headers.get(IDP_HEADER, 'aad')}:{principal}"
    elif mode == "oidc":
        user = signed_in_user()
        if user is None:
            raise APIError(401, "unauthenticated", "Sign in to use Brook.")
        owner = user["owner"]
    else:
        owner = anonymous_owner(create=True) or ""
    g.owner = owner
    return owner


def anonymous_owner(*, create: bool = False) -> str | None:
    """This browser's anonymous owner id (made now when `create`), kept in its session."""
    if "owner" not in session:
        if not create:
            return None
        session["owner"] = "anon:" + secrets.token_urlsafe(18)
        session["day"] = date.today().toordinal()  # signed again next day (assets.py)
        session.permanent = True
    owner: str = session["owner"]
    return owner


def signed_in_user() -> dict[str, Any] | None:
    """The user signed in with OpenID Connect in this session, if any."""
    user = session.get(USER_KEY)
    return user if isinstance(user, dict) and user.get("owner") else None


def signed_in() -> bool:
    """Whether someone signed in (App Service Authentication or OpenID Connect): never in
    `anonymous` mode."""
    mode = _settings().auth_mode
    if mode == "appservice":
        return bool(request.headers.get(PRINCIPAL_HEADER))
    if mode == "oidc":
        return signed_in_user() is not None
    return False


def signed_in_email() -> str | None:
    """The signed-in user's e-mail address, lower-case, if known."""
    mode = _settings().auth_mode
    email: object = None
    if mode == "appservice" and request.headers.get(PRINCIPAL_HEADER):
        email = request.headers.get(NAME_HEADER)
    elif mode == "oidc" and (user := signed_in_user()) is not None:
        email = user.get("email")
    if isinstance(email, str) and "@" in email:
        return email.strip().lower()
    return None


def is_admin() -> bool:
    """Whether the signed-in user's e-mail address is one of ADMIN_EMAILS."""
    email = signed_in_email()
    return email is not None and email in _settings().admin_emails

