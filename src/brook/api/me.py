"""GET /api/me: who is signed in, and how Brook signs people in."""

from __future__ import annotations

from typing import Literal

from flask import Response, current_app
from pydantic import Field

from ..config import Settings
from ..identity import is_admin, signed_in, signed_in_email, signed_in_user
from . import bp
from .openapi import operation
from .schemas import Model
from .serialize import respond


class Me(Model):
    mode: Literal["anonymous", "appservice", "oidc"] = Field(
        description="AUTH_MODE: `anonymous` (no sign-in), `appservice` (App Service "
                    "Authentication) or `oidc` (OpenID Connect, at /auth/login).")
    signed_in: bool
    email: str | None = Field(description="The signed-in user's e-mail address, if known.")
    name: str | None = Field(description="The signed-in user's name, if known.")
    admin: bool = Field(description="Whether the e-mail address is one of ADMIN_EMAILS.")


@bp.get("/me")
@operation(id="getMe", summary="Who is signed in",
           description="Never 401: without a signed-in user `signed_in` is false. Signing "
                       "in and out are browser routes, not API operations: GET /auth/login "
                       "(`?next=` a local path) and POST /auth/logout, in `oidc` mode.",
           ok=(200, "The signed-in user, if any", Me), uses_database=False)
def me() -> Response:
    settings: Settings = current_app.config["BROOK_SETTINGS"]
    user = signed_in_user() if settings.auth_mode == "oidc" else None
    name = user.get("name") if user else None
    return respond(Me(mode=settings.auth_mode, signed_in=signed_in(), email=signed_in_email(),
                      name=name if isinstance(name, str) else None, admin=is_admin()))
