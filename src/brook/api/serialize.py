"""Model rows to the JSON shapes of the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import url_for

from ..chat.stored import usage_of
from ..models import Conversation, Message


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "usage": usage_of(message),
        "error": message.error,
        "created_at": message.created_at.isoformat(),
        "updated_at": message.updated_at.isoformat(),
        "stream_url": url_for("api.stream", message_id=message.id)
        if message.role == "assistant" else None,
    }
