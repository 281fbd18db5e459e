"""The page's static files under a content-versioned URL, cached by browsers for a year.

`create_app` serves `src/brook/static` at `/static/<version>/`, where the version is a hash of
every file there, so `url_for("static", ...)` and the modules' relative imports (and the
highlighting worker's `new URL(..., import.meta.url)`) all carry it. A new front end gets a
new URL, so browsers may keep a file for a year without asking again (`immutable`). Only the
current version is served: any other is a 404. The page itself carries no caching headers
(no max-age, no Last-Modified), so browsers fetch it each time and it names the current
version.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin

STATIC_FOLDER = Path(__file__).parent / "static"
YEAR = 365 * 24 * 60 * 60


def static_version(folder: Path = STATIC_FOLDER) -> str:
    """The first 12 hex digits of a sha256 over the relative path, length and bytes of every
    file under `folder`: it changes whenever a file is added, removed, renamed or edited."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:12]


def init_app(app: Flask) -> None:
    """Cache static files for a year, except in development (`app.debug`: `brook serve --dev`,
    `flask --debug run`)."""
    # In development the version is still computed once at start, but JS and CSS edits must
    # show on reload without a restart: a year's cache would keep serving the old bytes
    # under the unchanged URL. So there Flask's default stays: `no-cache`, revalidated by
    # ETag on every load.
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = None if app.debug else YEAR
    app.session_interface = _SessionInterface()
    app.after_request(_immutable)


def _immutable(response: Response) -> Response:
    """`immutable` on cached static files: a browser's reload does not revalidate them."""
    if request.endpoint == "static" and response.cache_control.max_age:
        response.cache_control.immutable = True
    return response


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, less the cookie on static files, re-signed once a day.

    Flask re-signs a permanent session's cookie on every response (a new value each second)
    and adds `Vary: Cookie`. On a static file that would hand the owner's cookie to any
    shared cache that keeps the `public` response, and make the browser revalidate every
    cached file once the cookie has changed (the Vary no longer matches). Elsewhere, signing
    the cookie anew on every API call costs as much as some of the calls themselves: a
    session unchanged since today's first response keeps its cookie, whose year of life
    starts again each day the owner comes back.

    The cookie is marked Secure whenever the request came over HTTPS, directly or through
    TRUSTED_PROXIES that say so in X-Forwarded-Proto (or always, with SESSION_COOKIE_SECURE).
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        if request.endpoint == "static":
            return False
        if session.modified:
            return True
        if not session.permanent:
            return False
        today = date.today().toordinal()
        if session.get("day") != today:
            session["day"] = today
            return True
        return False
