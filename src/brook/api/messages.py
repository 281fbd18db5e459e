"""Answers and messages: the event stream, Stop, Regenerate, and editing a message."""

from __future__ import annotations

import uuid

from flask import Response, current_app, request
from sqlalchemy import Engine, bindparam, select

from ..chat.service import BadOffset, ChatService, Gone, NotLast
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner
from ..models import Conversation, Message
from . import bp, schemas, serialize
from .conversations import (
    BAD_TEXT,
    BUSY,
    ON_TURN,
    REFUSED,
    admit,
    message_body,
    starting_an_answer,
)
from .openapi import links_to, operation
from .requests import WHOLE_NUMBER, json_body, whole_numbers
from .serialize import respond
from .usage import LIMITED, owner_quota

NO_ANSWER = "`not_found`: no such answer of yours."
STREAM = """\
Events: `start` (id 0), `progress` (the local model's download and load, before any \
text), `reasoning` (the next piece of the model's reasoning, before the answer's text), \
`message` (the next piece of the answer), `error` (always followed by `end`), `end` (the \
final status and usage). Every event's `id` is the number of characters delivered so far, \
reasoning first, then the answer (the message's `reasoning`, then its `content`). \
`Last-Event-ID` (or `?after=N`) \
resumes after that event with no lost or repeated text; without either the stream starts \
with `start`. A finished answer replays and ends. An answer `interrupted` when the process \
writing it died keeps every word that reached the database or Redis; a reader who had read \
further gets only the `end`, whose lower id says where the answer now ends. Comments \
(`: keep-alive`) keep idle streams open.\
"""
LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "required": False,
                 "description": "Resume after this event id (EventSource sends it when it "
                                "reconnects); empty means from the start.",
                 "schema": {"type": "string", "pattern": "^[0-9]{0,18}$"}}
BAD_OFFSET = "Last-Event-ID and after must be an event id (a whole number)."
ON_ANSWER = links_to("/assistant_message/id", "message_id", "streamAnswer", "stopAnswer",
                     "regenerateAnswer")


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
    after = whole_numbers(schemas.StreamQuery, "invalid_after", BAD_OFFSET).after
    header = request.headers.get("Last-Event-ID")
    if not header:
        return after
    if not WHOLE_NUMBER.fullmatch(header):
        raise APIError(400, "invalid_after", BAD_OFFSET)
    return int(header)


@bp.get("/messages/<uuid:message_id>/stream")
@operation(id="streamAnswer", summary="The answer as server-sent events", description=STREAM,
           ok=(200, "An event stream", None), media="text/event-stream",
           query=schemas.StreamQuery, headers=(LAST_EVENT_ID,),
           errors={400: "`invalid_after`: Last-Event-ID or after is not one whole number, or "
                        "is past the end of the answer.", 404: NO_ANSWER})
def stream(message_id: uuid.UUID) -> Response:
    after = _resume_offset()
    # One read on a connection of its own (no ORM session): a long stream must not hold a
    # pooled connection, and a reconnecting reader checks this every time.
    engine: Engine = current_app.extensions["brook.engine"]
    with engine.connect() as connection:
        owned = connection.execution_options(isolation_level="AUTOCOMMIT").scalar(
            _OWNS_ANSWER, {"b_id": message_id, "b_owner": current_owner()})
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
@operation(id="stopAnswer", summary="Stop an answer; the text so far is kept with status "
           "`stopped` (a finished answer is returned unchanged)",
           ok=(200, "The answer", schemas.Message), body=schemas.NoBody, body_required=False,
           errors={404: NO_ANSWER})
def stop(message_id: uuid.UUID) -> Response:
    json_body(schemas.NoBody, required=False)
    message = owned_answer(message_id)
    chat: ChatService = current_app.extensions["brook.chat"]
    chat.stop(message.id)
    session = get_session()
    session.refresh(message)
    return respond(serialize.message(message))


@bp.post("/messages/<uuid:message_id>/regenerate")
@operation(id="regenerateAnswer", summary="Replace the conversation's last answer with a new "
           "one (also the Retry of a failed, stopped or interrupted answer)",
           ok=(202, "The new answer is streaming", schemas.Regenerated), body=schemas.NoBody,
           body_required=False, links=ON_ANSWER,
           errors={404: NO_ANSWER, 409: BUSY + " `not_last_answer`: only the last answer of "
                   "a conversation can be regenerated.", 429: LIMITED, 503: REFUSED})
def regenerate(message_id: uuid.UUID) -> Response:
    """Answer the last question again, replacing the conversation's last answer."""
    json_body(schemas.NoBody, required=False)
    chat = admit()
    answer = owned_answer(message_id)
    try:
        with starting_an_answer():
            fresh = chat.regenerate(get_session(), answer.conversation, answer,
                                    owner_quota(chat))
    except NotLast:
        raise APIError(409, "not_last_answer",
                       "Only the last answer of a conversation can be regenerated.") from None
    body = serialize.message(fresh)
    assert body.stream_url is not None
    return respond(schemas.Regenerated(assistant_message=body, stream_url=body.stream_url), 202)


@bp.patch("/messages/<uuid:message_id>")
@operation(id="editMessage", summary="Edit one of your messages and answer it anew; every "
           "later turn is deleted",
           ok=(202, "Stored; the new answer is streaming", schemas.Turn),
           body=schemas.MessageBody, links=ON_TURN,
           errors={404: "`not_found`: no such message of yours.", 409: BUSY,
                   422: BAD_TEXT, 429: LIMITED, 503: REFUSED})
def edit(message_id: uuid.UUID) -> Response:
    """Change one of the user's messages; later turns are replaced by a new answer."""
    body = message_body()
    chat = admit()
    user = owned_message(message_id, "user")
    with starting_an_answer():
        user, answer = chat.edit(get_session(), user.conversation, user, body.content,
                                 owner_quota(chat))
    return respond(serialize.turn(user, answer), 202)
