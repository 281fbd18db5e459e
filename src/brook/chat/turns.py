"""Storing turns: a user's message and an empty streaming answer, in one transaction.

Each turn reads the conversation's messages once (their positions give the next one; their
text is the prompt), writes the new rows in one INSERT, and commits before generating
starts. Sending, the hot path, is five round trips to PostgreSQL with statements built once:
BEGIN; an UPDATE that checks the owner, stamps the conversation and locks it against a
concurrent send; the history; the INSERT of both messages; COMMIT. Refusals come before
anything is stored: `NotFound`, `Busy` (an answer is already streaming here), `NotLast`,
and the service's `Draining` and `Overloaded`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, cast

from sqlalchemy import Table, bindparam, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..config import Settings
from ..messages import ChatMessage
from ..models import Conversation, Message, default_title, utcnow
from ..providers import Models
from .tokens import TokenCounter, fit_to_budget

CONVERSATIONS = cast(Table, Conversation.__table__)
MESSAGES = cast(Table, Message.__table__)
# Built once: constructing a statement costs more than running it on SQLite.
CLAIM = (update(CONVERSATIONS)
         .where(CONVERSATIONS.c.id == bindparam("b_conversation"),
                CONVERSATIONS.c.owner == bindparam("b_owner"))
         .values(updated_at=bindparam("b_now"),
                 title=case((CONVERSATIONS.c.title == "", bindparam("b_title")),
                            else_=CONVERSATIONS.c.title),
                 title_source=case((CONVERSATIONS.c.title == "", "message"),
                                   else_=CONVERSATIONS.c.title_source))
         .returning(CONVERSATIONS.c.model, CONVERSATIONS.c.system_prompt,
                    CONVERSATIONS.c.temperature, CONVERSATIONS.c.title_source))
HISTORY = (select(Message.id, Message.position, Message.role, Message.content, Message.status)
           .where(Message.conversation_id == bindparam("b_conversation"))
           .order_by(Message.position))
_COLUMNS = ("id", "conversation_id", "position", "role", "content", "reasoning", "status",
            "model", "worker", "lease_until", "created_at", "updated_at")
# Executed with both rows at once: one statement, cached once compiled (a multi-row VALUES
# clause is compiled anew every time).
INSERT_MESSAGES = insert(MESSAGES)


class NotFound(LookupError):
    """No such conversation of this owner's."""


class Busy(Exception):
    """An answer is already streaming in this conversation."""


class NotLast(Exception):
    """Only the last answer of a conversation can be regenerated."""


class Turn(NamedTuple):
    """A stored answer waiting to be generated, with the prompt that asks for it and the
    temperature to ask with (None: the model's own)."""

    answer: Message
    prompt: list[ChatMessage]
    temperature: float | None = None
    titles: bool = False  # whether the answer, once complete, has its model title it


class Settled(NamedTuple):
    """What a conversation's answers are asked with: the model (a configured one's id), the
    system prompt and the temperature."""

    model: str
    system_prompt: str
    temperature: float | None


class Row(NamedTuple):
    id: uuid.UUID
    position: int
    role: str
    content: str
    status: str


class Turns:
    def __init__(self, settings: Settings, counter: TokenCounter, models: Models,
                 worker: str) -> None:
        self.settings = settings
        self.counter = counter
        self.models = models
        self.worker = worker
        self.lease = timedelta(seconds=settings.stream_lease)

    def send(self, session: Session, conversation_id: uuid.UUID, owner: str, content: str,
             answer_id: uuid.UUID) -> tuple[Message, Turn]:
        """Store the user's message and an empty streaming answer after the last message.

        Raises `NotFound` if the owner has no such conversation. The messages returned are
        not in the session: they are what was stored, for the response.
        """
        now = utcnow()
        connection = session.connection()
        claimed = connection.execute(CLAIM, {"b_conversation": conversation_id,
                                             "b_owner": owner, "b_now": now,
                                             "b_title": default_title(content)}).first()
        if claimed is None:
            session.rollback()
            raise NotFound(conversation_id)
        settled = self.settled(claimed.model, claimed.system_prompt, claimed.temperature)
        rows = [Row(*row) for row in connection.execute(HISTORY,
                                                        {"b_conversation": conversation_id})]
        position = rows[-1].position + 1 if rows else 0
        user = Message(id=uuid.uuid4(), conversation_id=conversation_id, position=position,
                       role="user", content=content, reasoning="", status="complete",
                       model=None,
                       worker=None, lease_until=None, created_at=now, updated_at=now,
                       prompt_tokens=None, completion_tokens=None, error=None)
        answer = self._new_answer(answer_id, conversation_id, position + 1, now,
                                  settled.model)
        try:
            connection.execute(INSERT_MESSAGES, [{name: getattr(message, name)
                                                  for name in _COLUMNS}
                                                 for message in (user, answer)])
            session.commit()  # the one-streaming-answer-per-conversation index says Busy here
        except IntegrityError:
            session.rollback()
            raise Busy from None
        return user, Turn(answer, self.prompt(rows, user, settled.system_prompt),
                          settled.temperature, self._titles(claimed.title_source))

    def regenerate(self, session: Session, conversation: Conversation, answer: Message,
                   answer_id: uuid.UUID) -> Turn:
        """Replace the conversation's last answer with a new one."""
        if answer.status == "streaming":
            raise Busy
        rows = self._rows(session, conversation.id)
        if rows[-1].id != answer.id:
            raise NotLast
        session.delete(answer)
        session.flush()
        return self._answer(session, conversation, answer.position, rows[:-1], None,
                            answer_id)

    def edit(self, session: Session, conversation: Conversation, user: Message, content: str,
             answer_id: uuid.UUID) -> tuple[Message, Turn]:
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
        return user, self._answer(session, conversation, user.position + 1, earlier, user,
                                  answer_id)

    @staticmethod
    def _rows(session: Session, conversation_id: uuid.UUID) -> Sequence[Row]:
        return [Row(*row) for row in session.execute(HISTORY,
                                                     {"b_conversation": conversation_id})]

    def _titles(self, title_source: str) -> bool:
        """Whether an answer is to have its model title the conversation: one whose title
        is still its first message's words (titles.py)."""
        return self.settings.model_titles and title_source == "message"

    def settled(self, model: str | None, system_prompt: str | None,
                temperature: float | None) -> Settled:
        """A conversation's settings as its next answer uses them: a model no longer
        configured gives way to the default, a temperature to a model that takes none."""
        choice = self.models.get(model)
        return Settled(choice.id, system_prompt or self.settings.system_prompt,
                       temperature if choice.temperature else None)

    def _new_answer(self, answer_id: uuid.UUID, conversation_id: uuid.UUID, position: int,
                    now: datetime, model: str) -> Message:
        return Message(id=answer_id, conversation_id=conversation_id, position=position,
                       role="assistant", content="", reasoning="", status="streaming",
                       model=model or None,
                       created_at=now, updated_at=now, worker=self.worker,
                       lease_until=now + self.lease, prompt_tokens=None,
                       completion_tokens=None, error=None)

    def _answer(self, session: Session, conversation: Conversation, position: int,
                history: Sequence[Row], question: Message | None, answer_id: uuid.UUID
                ) -> Turn:
        """Add a streaming answer at `position` and commit the turn."""
        now = utcnow()
        settled = self.settled(conversation.model, conversation.system_prompt,
                               conversation.temperature)
        answer = self._new_answer(answer_id, conversation.id, position, now, settled.model)
        conversation.updated_at = now
        session.add(answer)
        prompt = self.prompt(history, question, settled.system_prompt)
        try:
            session.commit()  # the one-streaming-answer-per-conversation index says Busy here
        except IntegrityError:
            session.rollback()
            raise Busy from None
        return Turn(answer, prompt, settled.temperature,
                    self._titles(conversation.title_source))

    def estimate_tokens(self, session: Session, conversation_id: uuid.UUID, position: int,
                        text: str) -> int:
        """The tokens of an answer whose prompt is no longer at hand (one closed for a
        process that died): that prompt rebuilt from the turns stored before it, and `text`."""
        history = [row for row in self._rows(session, conversation_id) if row.position < position]
        return self.counter.count_exchange(self.prompt(history, None), text)

    def prompt(self, history: Sequence[Row], question: Message | None,
               system_prompt: str | None = None) -> list[ChatMessage]:
        messages: list[ChatMessage] = [{"role": row.role, "content": row.content}
                                       for row in history if row.content]
        if question is not None:
            messages.append({"role": "user", "content": question.content})
        return fit_to_budget(system_prompt or self.settings.system_prompt, messages,
                             self.settings.prompt_token_budget, self.counter)
