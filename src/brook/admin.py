"""The admins' page of usage (GET /admin/usage): every owner's answers and tokens per day.

A read-only HTML view of what GET /api/admin/usage returns, rendered on the server (no
script), for the signed-in users named in ADMIN_EMAILS.
"""

from __future__ import annotations

import re
from datetime import date

from flask import Blueprint, Response, current_app, render_template, request, url_for

from .chat.service import ChatService
from .config import Settings
from .db import get_session
from .identity import is_admin, signed_in
from .models import utcnow

bp = Blueprint("admin", __name__, url_prefix="/admin")
DAYS = re.compile(r"[1-9][0-9]?")
CHOICES = (1, 7, 30, 90)


def _page(title: str, message: str, status: int, *, sign_in: bool = False) -> Response:
    html = render_template("signin.html", app_name="Brook", title=title, message=message,
                           sign_in=sign_in, next_path=request.full_path.rstrip("?"))
    return Response(html, status=status, mimetype="text/html")


@bp.get("/usage")
def usage() -> Response:
    settings: Settings = current_app.config["BROOK_SETTINGS"]
    if not signed_in():
        if settings.auth_mode == "oidc":
            return _page("Sign in", "Sign in to see usage.", 401, sign_in=True)
        return _page("Not signed in", "Only the admins may see usage, once signed in "
                     "(App Service Authentication or AUTH_MODE=oidc).", 401)
    if not is_admin():
        return _page("Not allowed", "Only the admins (ADMIN_EMAILS) may see usage.", 403)
    given = request.args.getlist("days") or ["7"]
    if len(given) > 1 or not DAYS.fullmatch(given[0]) or int(given[0]) > 90:
        return _page("Not understood", "days must be one whole number from 1 to 90.", 400)
    days = int(given[0])
    chat: ChatService = current_app.extensions["brook.chat"]
    by_day: dict[date, list[dict[str, object]]] = {}
    for row in chat.usage_by_owner(get_session(), days):
        by_day.setdefault(row["day"], []).append(row)  # type: ignore[arg-type]
    html = render_template(
        "admin_usage.html", app_name="Brook", days=days, by_day=by_day,
        choices=sorted({*CHOICES, days}), today=utcnow().date(),
        budget=settings.budget_tokens_per_day or None, back=url_for("web.index"))
    return Response(html, mimetype="text/html")
