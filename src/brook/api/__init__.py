"""The JSON API blueprint: conversations, messages and their streams, the OpenAPI document."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, request

from ..errors import APIError

bp = Blueprint("api", __name__, url_prefix="/api")

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@bp.before_request
def refuse_cross_site() -> None:
    """CSRF: a state-changing request must come from Brook's own pages.

    Browsers say where a request comes from (`Sec-Fetch-Site`, or at least `Origin`), and a
    cross-site page cannot hide it. With request bodies required to be JSON, a request with
    none required to carry no Content-Type (a cross-site form cannot do either: it always
    sends a form's), and a SameSite cookie, a forged request has no way in.
    """
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None:
        allowed = site in ("same-origin", "none")
    elif origin is not None:
        allowed = urlsplit(origin).netloc == request.host
    else:
        allowed = True  # not a browser: curl, scripts, tests
    if not allowed:
        raise APIError(403, "cross_site_request",
                       "Requests that change data must come from Brook's own pages.")

from . import conversations, me, messages, openapi, search, transfer  # noqa: E402, F401  (routes register on bp)
