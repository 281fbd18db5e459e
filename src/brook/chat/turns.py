"""Storing turns: a user's message and an empty streaming answer, in one transaction.

Each turn reads the conversation's messages once (their positions give the next one; their
text is the prompt), writes the new rows in one INSERT, and commits before generating
starts. Refusals come before anything is stored: `Busy` (an answer is already streaming
here), `NotLast`, and the service's `Draining` and `Overloaded`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..config import Settings
from ..models import Conversation, Message, utcnow
from .tokens import ChatMessage, TokenCounter, fit_to_budget

TITLE_CHARS = 60


class Busy(Exception):
    """An answer is already streaming in this conversation."""


class NotLast(Exception):
    """Only the last answer of a conversation can be regenerated."""


class Turn(NamedTuple):
    """A stored answer waiting to be generated, with the prompt that asks for it."""

    answer: Message
    prompt: list[ChatMessage]


class Row(NamedTuple):
    id: uuid.UUID
    position: int
    role: str
    content: str
    status: str


def default_title(content: str) -> str:
    words = " ".join(content.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


class Turns:
    def __init__(self, settings: Settings, counter: TokenCounter, model: str | None,
                 worker: str) -> None:
        self.settings = settings
        self.counter = counter
        self.model = model
        self.worker = worker
        self.lease = timedelta(seconds=settings.stream_lease)

    def send(self, session: Session, conversation: Conversation, content: str
             ) -> tuple[Message, Turn]:
        """Store the user's message and an empty streaming answer after the last message."""
        rows = self._rows(session, conversation.id)
        position = rows[-1].position + 1 if rows else 0
        now = utcnow()
        user = Message(conversation_id=conversation.id, position=position, role="user",
                       content=content, status="complete", created_at=now, updated_at=now)
        if not conversation.title:
            conversation.title = default_title(content)
        session.add(user)
        return user, self._answer(session, conversation, position + 1, rows, user)

    def regenerate(self, session: Session, conversation: Conversation, answer: Message
                   ) -> Turn:
        """Replace the conversation's last answer with a new one."""
        if answer.status == "streaming":
            raise Busy
        rows = self._rows(session, conversation.id)
        if rows[-1].id != answer.id:
            raise NotLast
        session.delete(answer)
        session.flush()
        return self._answer(session, conversation, answer.position, rows[:-1], None)

    def edit(self, session: Session, conversation: Conversation, user: Message, content: str
             ) -> tuple[Message, Turn]:
        """Change one of the user's messages and answer it anew; every later turn goes."""
        rows = self._rows(session, conversation.id)
        later = [row for row in rows if row.position > user.position]
        if any(row.status == "streaming" for row in later):
            raise Busy
        if later:
            session.execute(delete(Message).where(Message.conversation_id == conversation.id,
                                                  Message.position > user.position))
        user.content, user.updated_at = content, utcnow()
        earlier = [row for row in rows if row.position < user.position]
        return user, self._answer(session, conversation, user.position + 1, earlier, user)

    @staticmethod
    def _rows(session: Session, conversation_id: uuid.UUID) -> Sequence[Row]:
        return [Row(*row) for row in session.execute(
            select(Message.id, Message.position, Message.role, Message.content, Message.status)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.position)
        )]

    def _answer(self, session: Session, conversation: Conversation, position: int,
                history: Sequence[Row], question: Message | None) -> Turn:
        """Add a streaming answer at `position` and commit the turn."""
        now = utcnow()
        answer = Message(conversation_id=conversation.id, position=position, role="assistant",
                         content="", status="streaming", model=self.model,
                         created_at=now, updated_at=now, worker=self.worker,
                         lease_until=now + self.lease)
        conversation.updated_at = now
        session.add(answer)
        prompt = self.prompt(history, question)
        try:
            session.commit()  # the one-streaming-answer-per-conversation index says Busy here
        except IntegrityError:
            session.rollback()
            raise Busy from None
        return Turn(answer, prompt)

    def prompt(self, history: Sequence[Row], question: Message | None) -> list[ChatMessage]:
        messages: list[ChatMessage] = [{"role": row.role, "content": row.content}
                                       for row in history if row.content]
        if question is not None:
            messages.append({"role": "user", "content": question.content})
        return fit_to_budget(self.settings.system_prompt, messages,
                             self.settings.prompt_token_budget, self.counter)
