"""An answer's event stream, and Stop."""

from __future__ import annotations

import uuid

from flask import Response, current_app, request
from sqlalchemy import bindparam, select

from ..chat.service import BadOffset, ChatService, Gone, NotLast
from ..database import autocommit
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner
from ..models import Conversation, Message
from . import bp
from .conversations import admit, starting_an_answer, turn_json
from .requests import json_body, message_content
from .serialize import message_json


def owned_message(message_id: uuid.UUID, role: str) -> Message:
    """The current owner's message with this id and role, or a 404."""
    message = get_session().scalar(
        select(Message)
        .join(Conversation)
        .where(Message.id == message_id, Message.role == role,
               Conversation.owner == current_owner())
    )
    if message is None:
        noun = "answer" if role == "assistant" else "message of yours"
        raise APIError(404, "not_found", f"There is no such {noun}.")
    return message


def owned_answer(message_id: uuid.UUID) -> Message:
    return owned_message(message_id, "assistant")


# Built once: every stream, and every reconnect, checks its reader owns the answer.
_OWNS_ANSWER = (select(Message.id).join(Conversation)
                .where(Message.id == bindparam("b_id"), Message.role == "assistant",
                       Conversation.owner == bindparam("b_owner")))


def _resume_offset() -> int | None:
    # The browser's automatic reconnect sends Last-Event-ID on the original URL, so the
    # header, being newer, wins over ?after=.
    raw = request.headers.get("Last-Event-ID") or request.args.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise APIError(400, "invalid_after",
                       "Last-Event-ID and after must be an event id (a whole number).")
    return int(raw)


@bp.get("/messages/<uuid:message_id>/stream")
def stream(message_id: uuid.UUID) -> Response:
    after = _resume_offset()
    session = autocommit(get_session())  # it only reads
    owned = session.scalar(_OWNS_ANSWER, {"b_id": message_id, "b_owner": current_owner()})
    session.close()  # a long stream must not hold a pooled connection
    if owned is None:
        raise APIError(404, "not_found", "There is no such answer.")
    chat: ChatService = current_app.extensions["brook.chat"]
    try:
        events = chat.events(message_id, after)
    except BadOffset:
        raise APIError(400, "invalid_after",
                       "Last-Event-ID or after is past the end of the answer.") from None
    except Gone:
        raise APIError(404, "not_found", "There is no such answer.") from None
    return Response(events, mimetype="text/event-stream", headers={
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",
    })


@bp.post("/messages/<uuid:message_id>/stop")
def stop(message_id: uuid.UUID) -> dict[str, object]:
    json_body({})
    message = owned_answer(message_id)
    chat: ChatService = current_app.extensions["brook.chat"]
    chat.stop(message.id)
    session = get_session()
    session.refresh(message)
    return message_json(message)


@bp.post("/messages/<uuid:message_id>/regenerate")
def regenerate(message_id: uuid.UUID) -> tuple[dict[str, object], int]:
    """Answer the last question again, replacing the conversation's last answer."""
    json_body({})
    chat = admit()
    answer = owned_answer(message_id)
    try:
        with starting_an_answer():
            fresh = chat.regenerate(get_session(), answer.conversation, answer)
    except NotLast:
        raise APIError(409, "not_last_answer",
                       "Only the last answer of a conversation can be regenerated.") from None
    body = message_json(fresh)
    return {"assistant_message": body, "stream_url": body["stream_url"]}, 202


@bp.patch("/messages/<uuid:message_id>")
def edit(message_id: uuid.UUID) -> tuple[dict[str, object], int]:
    """Change one of the user's messages; later turns are replaced by a new answer."""
    body = json_body({"content": str})
    content = message_content(body, current_app.config["BROOK_SETTINGS"].max_message_chars)
    chat = admit()
    user = owned_message(message_id, "user")
    with starting_an_answer():
        user, answer = chat.edit(get_session(), user.conversation, user, content)
    return turn_json(user, answer), 202
