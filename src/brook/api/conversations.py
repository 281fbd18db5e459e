"""Conversations: list, create, get with messages, rename, delete; and sending a message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Response, current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..chat.service import Busy, ChatService, Draining, NotFound, Overloaded, UnknownModel
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner
from ..models import Conversation
from . import bp, schemas, serialize
from .openapi import Link, links_to, operation
from .requests import json_body, whole_numbers
from .serialize import respond
from .usage import LIMITED, owner_quota, within_limits

BUSY = "`answer_in_progress`: an answer is still being written in this conversation."
REFUSED = "`overloaded` (this worker is answering all it can) or `shutting_down`."
NO_CONVERSATION = "`not_found`: no such conversation of yours."
BAD_TEXT = "`empty_message`, `message_too_long`, `nul_character`."
# From a created conversation, and from a sent message, to what can be done with them.
ON_CONVERSATION = links_to("/id", "conversation_id", "getConversation",
                           "updateConversation", "deleteConversation", "sendMessage")
SETTINGS_ERRORS = ("`empty_title`, `title_too_long`, `nul_character`, `empty_system_prompt`, "
                   "`system_prompt_too_long`, `unknown_model` (not one of GET /api/models), "
                   "`invalid_temperature` (not a number from 0 to 2).")
ON_TURN = (*links_to("/assistant_message/id", "message_id", "streamAnswer", "stopAnswer",
                     "regenerateAnswer"),
           Link("editMessage", "message_id", "/user_message/id"),
           Link("getConversation", "conversation_id", "/user_message/conversation_id"))


@contextmanager
def starting_an_answer() -> Iterator[None]:
    """Turn the chat service's refusals to start an answer into their HTTP errors."""
    try:
        with within_limits():
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
@operation(id="listConversations", summary="The owner's conversations, newest first",
           ok=(200, "Conversations", schemas.ConversationList), query=schemas.ListQuery,
           errors={400: "`invalid_limit`: limit is not one whole number from 1 to 500."})
def list_conversations() -> Response:
    query = whole_numbers(schemas.ListQuery, "invalid_limit",
                          "limit must be a whole number from 1 to 500.")
    rows = get_session().scalars(
        select(Conversation)
        .where(Conversation.owner == current_owner())
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(query.limit)
    )
    return respond(schemas.ConversationList(
        conversations=[serialize.conversation(c) for c in rows]))


@contextmanager
def known_model() -> Iterator[None]:
    try:
        yield
    except UnknownModel as exc:
        raise APIError(422, "unknown_model", f"There is no model {str(exc)[:100]!r}: choose "
                       "one of GET /api/models.") from None


def settings_of(body: schemas.NewConversation | schemas.ConversationUpdate) -> dict[str, Any]:
    """The conversation settings a body sends (a field sent as null resets it)."""
    return {name: getattr(body, name) for name in ("model", "system_prompt", "temperature")
            if name in body.model_fields_set}


@bp.post("/conversations")
@operation(id="createConversation", summary="Create a conversation",
           ok=(201, "Created", schemas.Conversation), body=schemas.NewConversation,
           body_required=False, links=ON_CONVERSATION,
           errors={422: SETTINGS_ERRORS, 429: LIMITED})
def create_conversation() -> Response:
    body = json_body(schemas.NewConversation, required=False)
    chat: ChatService = current_app.extensions["brook.chat"]
    with within_limits(), known_model():
        conversation = chat.create_conversation(get_session(), current_owner(), body.title,
                                                owner_quota(chat), settings_of(body))
    return respond(serialize.conversation(conversation), 201)


@bp.get("/models")
@operation(id="listModels", summary="The models a conversation may use",
           ok=(200, "The models, the default first", schemas.ModelList))
def list_models() -> Response:
    chat: ChatService = current_app.extensions["brook.chat"]
    return respond(schemas.ModelList(models=[schemas.ModelInfo.model_validate(m)
                                             for m in chat.model_list()]))


@bp.get("/conversations/<uuid:conversation_id>")
@operation(id="getConversation", summary="A conversation with its messages, oldest first",
           ok=(200, "The conversation", schemas.ConversationWithMessages),
           errors={404: NO_CONVERSATION})
def get_conversation(conversation_id: uuid.UUID) -> Response:
    conversation = owned_conversation(conversation_id, with_messages=True)
    return respond(serialize.conversation_with_messages(conversation))


@bp.patch("/conversations/<uuid:conversation_id>")
@operation(id="updateConversation",
           summary="Rename a conversation, or change its model, system prompt or temperature",
           description="Fields left out stay as they are; `system_prompt` or `temperature` "
                       "sent as null go back to the default. A title set here is never "
                       "replaced by one the model writes. The settings apply from the next "
                       "answer on.",
           ok=(200, "Changed", schemas.Conversation), body=schemas.ConversationUpdate,
           errors={404: NO_CONVERSATION, 422: SETTINGS_ERRORS + " `missing_field`: nothing "
                                                                "to change."})
def update_conversation(conversation_id: uuid.UUID) -> Response:
    body = json_body(schemas.ConversationUpdate)
    changes = settings_of(body)
    if "title" in body.model_fields_set:
        changes["title"] = body.title
    if not changes:
        raise APIError(422, "missing_field", schemas.ConversationUpdate.MISSING["title"])
    conversation = owned_conversation(conversation_id)
    chat: ChatService = current_app.extensions["brook.chat"]
    with known_model():
        chat.update_conversation(get_session(), conversation, changes)
    return respond(serialize.conversation(conversation))


@bp.delete("/conversations/<uuid:conversation_id>")
@operation(id="deleteConversation",
           summary="Delete a conversation and its messages (stops an answer being written)",
           ok=(204, "Deleted", None), errors={404: NO_CONVERSATION})
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


def message_body() -> schemas.MessageBody:
    limit: int = current_app.config["BROOK_SETTINGS"].max_message_chars
    return json_body(schemas.MessageBody, context={"max_message_chars": limit})


@bp.post("/conversations/<uuid:conversation_id>/messages")
@operation(id="sendMessage", summary="Send a message; the answer is written in the background",
           ok=(202, "Stored; the answer is streaming", schemas.Turn), body=schemas.MessageBody,
           links=ON_TURN,
           errors={404: NO_CONVERSATION, 409: BUSY, 422: BAD_TEXT, 429: LIMITED, 503: REFUSED})
def send_message(conversation_id: uuid.UUID) -> Response:
    body = message_body()
    chat = admit()
    try:
        with starting_an_answer():
            user, answer = chat.send(get_session(), conversation_id, current_owner(),
                                     body.content, owner_quota(chat))
    except NotFound:
        raise APIError(404, "not_found", "There is no such conversation.") from None
    return respond(serialize.turn(user, answer), 202)
