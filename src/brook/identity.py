"""Who owns a conversation.

Without sign-in the owner is an anonymous id kept in Flask's signed, HttpOnly, SameSite
session cookie. With App Service Authentication on (App Service sets WEBSITE_AUTH_ENABLED),
the owner is the signed-in principal from the headers App Service's front end sets and
strips from incoming requests; anywhere else those headers could be forged, so they are
ignored.
"""

from __future__ import annotations

import secrets
from datetime import date

from flask import current_app, g, request, session

from .errors import APIError

PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
IDP_HEADER = "X-MS-CLIENT-PRINCIPAL-IDP"


def current_owner() -> str:
    if "owner" in g:
        owner: str = g.owner
        return owner
    if current_app.config["BROOK_SETTINGS"].auth_appservice:
        principal = request.headers.get(PRINCIPAL_HEADER)
        if not principal:
            raise APIError(401, "unauthenticated", "Sign in to use Brook.")
        owner = f"{request.headers.get(IDP_HEADER, 'aad')}:{principal}"
    else:
        if "owner" not in session:
            session["owner"] = "anon:" + secrets.token_urlsafe(18)
            session["day"] = date.today().toordinal()  # signed again next day (assets.py)
            session.permanent = True
        owner = session["owner"]
    g.owner = owner
    return owner
