"""Typed SQLAlchemy 2.0 models: a conversation owns an ordered list of messages."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Role = Literal["user", "assistant"]
Status = Literal["streaming", "complete", "stopped", "error", "interrupted"]
STATUSES: tuple[Status, ...] = ("streaming", "complete", "stopped", "error", "interrupted")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


TITLE_CHARS = 60  # a title made from the first message is at most this long
SYSTEM_PROMPT_MAX = 8_000  # characters of a conversation's own system prompt


def default_title(content: str) -> str:
    """A conversation's title until someone names it: the first message's first words."""
    words = " ".join(content.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_owner_updated", "owner", "updated_at"),
        Index("ix_conversations_title_pending", "title_worker",
              sqlite_where=text("title_source = 'pending'"),
              postgresql_where=text("title_source = 'pending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(200), default="")
    # Who wrote the title: "none" (untitled yet), "message" (the first message's words),
    # "pending" (the model is asked for one), "model" (it wrote it), "user" (never
    # overwritten; chat/titles.py).
    title_source: Mapped[str] = mapped_column(String(16), default="none",
                                              server_default="user")
    # While the title is `pending`: the process that asked for it. If that process is gone
    # (chat/liveness.py), the sweep gives the title back to the first message's words.
    title_worker: Mapped[str | None] = mapped_column(String(200), default=None)
    # The conversation's own settings; None: the deployment's (the default model,
    # SYSTEM_PROMPT, the model's own temperature).
    model: Mapped[str | None] = mapped_column(String(100), default=None)
    system_prompt: Mapped[str | None] = mapped_column(Text, default=None)
    temperature: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        order_by="Message.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_position", "conversation_id", "position", unique=True),
        # At most one answer streams per conversation: the database, not a race-prone
        # check in Python, turns a second concurrent send into a 409.
        Index(
            "ux_messages_one_streaming",
            "conversation_id",
            unique=True,
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
        Index("ix_messages_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    position: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    # An answer's reasoning (a reasoning model's summary or thinking), shown apart from
    # its content and never sent back to the model.
    reasoning: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[str] = mapped_column(String(16), default="complete")
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    prompt_tokens: Mapped[int | None] = mapped_column(default=None)
    completion_tokens: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # While streaming: the process generating the answer ("host:pid:nonce", a `Worker`), a
    # grace period from its start (no sweep touches it before `lease_until`), and whether a
    # Stop from another instance is waiting for it.
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


def usage_of(message: Message) -> dict[str, Any] | None:
    """An answer's token counts, as the API and the stream's `end` event carry them."""
    if message.prompt_tokens is None and message.completion_tokens is None:
        return None
    return {"prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens}


class Worker(Base):
    """A serving process ("host:pid:nonce") and until when its heartbeat says it is alive."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    alive_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Usage(Base):
    """What one owner used on one day (UTC), for the limits (chat/limits.py).

    `owner` "*" is the whole deployment (its tokens, for BUDGET_TOKENS_PER_DAY). The answers
    started in the current minute are counted in `minute_answers`, for the minute that
    begins at `minute` (a fixed window).
    """

    __tablename__ = "usage"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    answers: Mapped[int] = mapped_column(default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    conversations: Mapped[int] = mapped_column(default=0)
    minute: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    minute_answers: Mapped[int] = mapped_column(default=0)
