"""Model rows to the response models of schemas.py, and those to JSON responses."""

from __future__ import annotations

from flask import Response, url_for
from pydantic import BaseModel

from .. import models
from . import schemas


def respond(body: BaseModel, status: int = 200) -> Response:
    return Response(body.model_dump_json(), status=status, mimetype="application/json")


def conversation(row: models.Conversation) -> schemas.Conversation:
    return schemas.Conversation.model_validate(row, from_attributes=True)


def conversation_with_messages(row: models.Conversation) -> schemas.ConversationWithMessages:
    return schemas.ConversationWithMessages.model_validate(
        {**dict(conversation(row)), "messages": [message(m) for m in row.messages]})


def message(row: models.Message) -> schemas.Message:
    usage = models.usage_of(row)
    return schemas.Message(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,  # type: ignore[arg-type]  # a Literal the column holds as text
        content=row.content,
        reasoning=row.reasoning,
        status=row.status,  # type: ignore[arg-type]
        model=row.model,
        usage=schemas.Usage(**usage) if usage else None,
        error=schemas.ErrorDetail(code=row.error["code"], message=row.error["message"])
        if row.error else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        stream_url=url_for("api.stream", message_id=row.id) if row.role == "assistant" else None,
    )


def turn(user: models.Message, answer: models.Message) -> schemas.Turn:
    assistant = message(answer)
    assert assistant.stream_url is not None
    return schemas.Turn(user_message=message(user), assistant_message=assistant,
                        stream_url=assistant.stream_url)
