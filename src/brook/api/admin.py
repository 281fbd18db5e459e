"""The admins' view of usage: every owner's answers and tokens per day (ADMIN_EMAILS only).

(Its routes register on the blueprint when api/usage.py imports it.)
"""

from __future__ import annotations

from flask import Response, current_app

from ..chat.service import ChatService
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner, is_admin
from . import bp, schemas
from .openapi import operation
from .requests import whole_numbers
from .serialize import respond


def require_admin() -> None:
    current_owner()  # 401 where sign-in is on and nobody is signed in
    if not is_admin():
        raise APIError(403, "forbidden", "Only the admins (ADMIN_EMAILS) may see this.")


@bp.get("/admin/usage")
@operation(id="getUsageByOwner", summary="Every owner's usage per day (admins only)",
           ok=(200, "Usage per owner and day (UTC)", schemas.UsageByOwner),
           query=schemas.UsageQuery,
           errors={400: "`invalid_days`: days is not one whole number from 1 to 90.",
                   401: "`unauthenticated`: sign-in is on and you are not signed in.",
                   403: "`forbidden`: you are not one of ADMIN_EMAILS."})
def usage_by_owner() -> Response:
    require_admin()
    query = whole_numbers(schemas.UsageQuery, "invalid_days",
                          "days must be a whole number from 1 to 90.")
    chat: ChatService = current_app.extensions["brook.chat"]
    rows = chat.usage_by_owner(get_session(), query.days)
    return respond(schemas.UsageByOwner(days=[schemas.OwnerDay.model_validate(r) for r in rows]))
