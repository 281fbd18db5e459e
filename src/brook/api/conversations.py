"""Conversations: list, create, get with messages, rename, delete; and sending a message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Response, current_app, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..chat.service import Busy, ChatService, Draining, NotFound, Overloaded
from ..database import autocommit
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner
from ..models import Conversation, Message, utcnow
from . import bp
from .requests import json_body, message_content, title_from
from .serialize import conversation_json, message_json


@contextmanager
def starting_an_answer() -> Iterator[None]:
    """Turn the chat service's refusals to start an answer into their HTTP errors."""
    try:
        yield
    except Busy:
        raise APIError(409, "answer_in_progress",
                       "An answer is still being written in this conversation: wait for it "
                       "or stop it first.") from None
    except Draining:
        raise APIError(503, "shutting_down",
                       "Brook is restarting. Please send your message again in a moment.",
                       retry_after=2) from None
    except Overloaded as exc:
        raise APIError(503, "overloaded",
                       "Brook is answering as many questions as it can right now. Your "
                       "message was not sent; it will be sent again in a moment.",
                       retry_after=exc.retry_after) from None


def admit() -> ChatService:
    """The chat service, if it takes a new answer now: checked before anything is read or
    stored, so a refusal costs the worker next to nothing."""
    chat: ChatService = current_app.extensions["brook.chat"]
    with starting_an_answer():
        chat.admit()
    return chat


def turn_json(user: Message, answer: Message) -> dict[str, object]:
    assistant = message_json(answer)
    return {"user_message": message_json(user), "assistant_message": assistant,
            "stream_url": assistant["stream_url"]}


def owned_conversation(conversation_id: uuid.UUID, *, with_messages: bool = False
                       ) -> Conversation:
    query = select(Conversation).where(Conversation.id == conversation_id,
                                       Conversation.owner == current_owner())
    if with_messages:
        query = query.options(selectinload(Conversation.messages))
    conversation = get_session().scalar(query)
    if conversation is None:
        raise APIError(404, "not_found", "There is no such conversation.")
    return conversation


@bp.get("/conversations")
def list_conversations() -> dict[str, object]:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise APIError(400, "invalid_limit", "limit must be a whole number from 1 to 500.")
    rows = get_session().scalars(
        select(Conversation)
        .where(Conversation.owner == current_owner())
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(int(raw))
    )
    return {"conversations": [conversation_json(c) for c in rows]}


@bp.post("/conversations")
def create_conversation() -> tuple[dict[str, object], int]:
    body = json_body({"title": str})
    conversation = Conversation(owner=current_owner(),
                                title=title_from(body["title"]) if "title" in body else "")
    session = autocommit(get_session())  # one INSERT
    session.add(conversation)
    session.commit()
    return conversation_json(conversation), 201


@bp.get("/conversations/<uuid:conversation_id>")
def get_conversation(conversation_id: uuid.UUID) -> dict[str, object]:
    conversation = owned_conversation(conversation_id, with_messages=True)
    return {**conversation_json(conversation),
            "messages": [message_json(m) for m in conversation.messages]}


@bp.patch("/conversations/<uuid:conversation_id>")
def rename_conversation(conversation_id: uuid.UUID) -> dict[str, object]:
    body = json_body({"title": str})
    if "title" not in body:
        raise APIError(422, "missing_field", "Send the new title in the field title.")
    conversation = owned_conversation(conversation_id)
    conversation.title = title_from(body["title"])
    conversation.updated_at = utcnow()
    get_session().commit()
    return conversation_json(conversation)


@bp.delete("/conversations/<uuid:conversation_id>")
def delete_conversation(conversation_id: uuid.UUID) -> Response:
    conversation = owned_conversation(conversation_id, with_messages=True)
    chat: ChatService = current_app.extensions["brook.chat"]
    for message in conversation.messages:
        if message.status == "streaming":
            chat.stop(message.id)
    session = get_session()
    session.delete(conversation)
    session.commit()
    return Response(status=204)


@bp.post("/conversations/<uuid:conversation_id>/messages")
def send_message(conversation_id: uuid.UUID) -> tuple[dict[str, object], int]:
    body = json_body({"content": str})
    content = message_content(body, current_app.config["BROOK_SETTINGS"].max_message_chars)
    chat = admit()
    try:
        with starting_an_answer():
            user, answer = chat.send(get_session(), conversation_id, current_owner(), content)
    except NotFound:
        raise APIError(404, "not_found", "There is no such conversation.") from None
    return turn_json(user, answer), 202
