"""Usage and limits: an owner's use of their limits today, and the 429 of a request over one.

(Its routes register on the blueprint when api/conversations.py imports it; so do those of
api/admin.py, imported here.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Response, current_app

from ..chat.service import ChatService, LimitExceeded, Quota
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner, is_admin, signed_in
from . import admin as admin  # its routes register on bp
from . import bp, schemas
from .openapi import operation
from .serialize import respond

LIMITED = ("`limit_exceeded`: over one of your limits (`limit` says which, `resets_at` "
           "when it lets you go on); nothing was stored.")


def owner_quota(chat: ChatService) -> Quota | None:
    """The current owner's limits: signed-in owners' or anonymous ones' (an admin's: none)."""
    return chat.quota(signed_in=signed_in(), admin=is_admin())


@contextmanager
def within_limits() -> Iterator[None]:
    """A request over a limit: `429` with `Retry-After`, which limit, and when it resets."""
    try:
        yield
    except LimitExceeded as exc:
        raise APIError(429, "limit_exceeded", exc.message, retry_after=exc.retry_after,
                       limit=exc.limit, limit_value=exc.value,
                       resets_at=None if exc.resets_at is None
                       else exc.resets_at.isoformat()) from None


@bp.get("/usage")
@operation(id="getUsage", summary="Your usage today against your limits",
           ok=(200, "Today's usage (UTC)", schemas.UsageNow))
def usage() -> Response:
    chat: ChatService = current_app.extensions["brook.chat"]
    now = chat.usage(get_session(), current_owner(), owner_quota(chat))
    return respond(schemas.UsageNow.model_validate(now))
