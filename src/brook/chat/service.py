"""The chat service: store a turn, generate the answer in the background, serve its events.

Generation is decoupled from the request that asked for it: it runs in its own thread (a
greenlet under gunicorn's gevent worker) to the end or to Stop, even when every reader has
gone, and writes the answer to the database in batches and finally once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..background import spawn
from ..config import Settings
from ..db import autocommit
from ..models import Conversation, Message, utcnow
from ..providers import Provider, ProviderError, Usage
from .bus import INTERNAL_ERROR, BadOffset, LocalBus
from .live import LiveAnswer
from .stored import stored_events
from .tokens import ChatMessage, TokenCounter, fit_to_budget

log = logging.getLogger(__name__)

TITLE_CHARS = 60
STOP_WAIT_SECONDS = 3.0

__all__ = ["BadOffset", "Busy", "ChatService", "Draining", "Gone", "NotLast"]


class Busy(Exception):
    """An answer is already streaming in this conversation."""


class NotLast(Exception):
    """Only the last answer of a conversation can be regenerated."""


class Draining(Exception):
    """This instance is shutting down and takes no new answers."""


class Gone(LookupError):
    """The message was deleted (with its conversation) while being asked for."""


def default_title(content: str) -> str:
    words = " ".join(content.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


MESSAGES = cast(Table, Message.__table__)
# Built once: constructing a statement costs more than running it on SQLite.
_STILL_STREAMING = update(MESSAGES).where(MESSAGES.c.id == bindparam("b_id"),
                                          MESSAGES.c.status == "streaming")
FLUSH = _STILL_STREAMING.values(content=bindparam("b_content"), updated_at=bindparam("b_now"),
                                lease_until=bindparam("b_lease"))
FINAL = _STILL_STREAMING.values(
    content=bindparam("b_content"), status=bindparam("b_status"), error=bindparam("b_error"),
    updated_at=bindparam("b_now"), lease_until=None, prompt_tokens=bindparam("b_prompt"),
    completion_tokens=bindparam("b_completion"))


def worker_id() -> str:
    """This process, as recorded on the answers it generates: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ChatService:
    def __init__(self, sessions: sessionmaker[Session], provider: Provider, settings: Settings,
                 counter: TokenCounter, bus: LocalBus,
                 spawn: Callable[[Callable[[], None]], None] = spawn) -> None:
        self.sessions = sessions
        self.provider = provider
        self.settings = settings
        self.counter = counter
        self.bus = bus
        self.spawn = spawn
        self.worker = worker_id()
        self.accepting = True
        self.lease = timedelta(seconds=settings.stream_lease)
        self._closed = threading.Event()
        self._flush_now = threading.Event()
        self._upkeep = threading.Thread(target=self._upkeep_loop, daemon=True,
                                        name="brook-upkeep")
        self._upkeep.start()

    def _upkeep_loop(self) -> None:
        """Flush the answers every flush interval; renew this process's leases every third
        of a lease, and sweep other processes' expired ones every other renewal.

        One thread does all of it: the flush and the renewal update the same rows, and two
        transactions doing so at once, each locking the rows in its own order, deadlock.
        """
        renew_every = self.settings.stream_lease / 3
        next_renewal = time.monotonic() + renew_every
        renewals = 0
        while not self._closed.is_set():
            self._flush_now.wait(min(self.settings.flush_interval,
                                     max(0.0, next_renewal - time.monotonic())))
            self._flush_now.clear()
            try:
                self.flush()
            except Exception:
                log.warning("could not write answers to the database; retrying", exc_info=True)
                self._closed.wait(0.5)
            if time.monotonic() < next_renewal:
                continue
            next_renewal = time.monotonic() + renew_every
            renewals += 1
            try:
                self.renew_leases()
                if renewals % 2 == 0:
                    self.sweep()
            except Exception:
                log.warning("lease upkeep failed; retrying", exc_info=True)

    # -- sending -----------------------------------------------------------------------------

    def send(self, session: Session, conversation: Conversation, content: str
             ) -> tuple[Message, Message]:
        """Store the user's message and an empty streaming answer, then start generating."""
        last = session.scalar(
            select(func.coalesce(func.max(Message.position), -1))
            .where(Message.conversation_id == conversation.id)
        )
        assert last is not None  # coalesce
        now = utcnow()
        user = Message(conversation_id=conversation.id, position=last + 1, role="user",
                       content=content, status="complete", created_at=now, updated_at=now)
        if not conversation.title:
            conversation.title = default_title(content)
        session.add(user)
        return user, self._answer(session, conversation, last + 2)

    def regenerate(self, session: Session, conversation: Conversation, answer: Message
                   ) -> Message:
        """Replace the conversation's last answer with a new one."""
        if answer.status == "streaming":
            raise Busy
        last = session.scalar(select(func.max(Message.position))
                              .where(Message.conversation_id == conversation.id))
        if answer.position != last:
            raise NotLast
        session.delete(answer)
        session.flush()
        return self._answer(session, conversation, answer.position)

    def edit(self, session: Session, conversation: Conversation, user: Message, content: str
             ) -> tuple[Message, Message]:
        """Change one of the user's messages and answer it anew; every later turn goes."""
        later = select(Message).where(Message.conversation_id == conversation.id,
                                      Message.position > user.position)
        if any(m.status == "streaming" for m in session.scalars(later)):
            raise Busy
        session.execute(delete(Message).where(Message.conversation_id == conversation.id,
                                              Message.position > user.position))
        user.content, user.updated_at = content, utcnow()
        return user, self._answer(session, conversation, user.position + 1)

    def _answer(self, session: Session, conversation: Conversation, position: int) -> Message:
        """Add a streaming answer at `position`, commit the turn, start generating."""
        if not self.accepting:
            session.rollback()
            raise Draining
        now = utcnow()
        answer = Message(conversation_id=conversation.id, position=position, role="assistant",
                         content="", status="streaming", model=self.provider.model,
                         created_at=now, updated_at=now, worker=self.worker,
                         lease_until=now + self.lease)
        conversation.updated_at = now
        session.add(answer)
        try:
            session.flush()  # the one-streaming-answer-per-conversation index says Busy here
        except IntegrityError:
            session.rollback()
            raise Busy from None
        # Read the prompt in the same transaction, so that the commit returns the connection
        # to the pool before anything can switch to another greenlet.
        prompt = self.prompt_for(session, conversation.id)
        session.commit()
        live = self.bus.open(answer.id, answer.model)
        self.spawn(lambda: self.generate(live, prompt))
        return answer

    def prompt_for(self, session: Session, conversation_id: uuid.UUID) -> list[ChatMessage]:
        rows = session.execute(
            select(Message.role, Message.content)
            .where(Message.conversation_id == conversation_id, Message.content != "")
            .order_by(Message.position)
        ).all()
        history: list[ChatMessage] = [{"role": role, "content": text} for role, text in rows]
        return fit_to_budget(self.settings.system_prompt, history,
                             self.settings.prompt_token_budget, self.counter)

    # -- generating --------------------------------------------------------------------------

    def generate(self, live: LiveAnswer, prompt: list[ChatMessage]) -> None:
        usage: Usage | None = None
        error: dict[str, str] | None = None
        status = "complete"
        try:
            for item in self.provider.stream(prompt):
                if live.stop_requested.is_set():
                    break
                if isinstance(item, Usage):
                    usage = item
                    continue
                live.append(item)
                if live.length - live.flushed >= self.settings.flush_chars:
                    self._flush_now.set()
            if live.stop_requested.is_set():
                status = "stopped"
        except ProviderError as exc:
            log.warning("answer %s failed: %s", live.message_id, exc, exc_info=exc.__cause__)
            status, error = "error", {"code": exc.code, "message": exc.message}
        except Exception:
            log.exception("answer %s failed", live.message_id)
            status, error = "error", dict(INTERNAL_ERROR)
        finally:
            usage_dict = None if usage is None else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            }
            self._finalize(live, status, usage_dict, error)

    def flush(self) -> None:
        """Write every live answer's new text, in one transaction.

        One statement for all answers (not one transaction per answer) keeps the cost per
        process flat as answers multiply. The same transaction picks up Stops asked from other
        instances, and answers another process closed.
        """
        now = utcnow()
        batch = [(live, live.length) for live in self.bus.live.answers()
                 if not live.done and live.length > live.flushed]
        if not batch:
            return
        rows = [{"b_id": live.message_id, "b_content": live.text()[:length], "b_now": now,
                 "b_lease": now + self.lease} for live, length in batch]
        with self.sessions.begin() as session:
            session.connection().execute(FLUSH, rows)
            halted = set(session.scalars(
                select(Message.id).where(
                    Message.id.in_([live.message_id for live, _ in batch]),
                    or_(Message.stop_requested, Message.status != "streaming"))
            ))
        for live, length in batch:
            live.flushed = max(live.flushed, length)
            if live.message_id in halted:
                live.stop_requested.set()  # a Stop from another instance, or closed elsewhere
                self.stop_local(live.message_id)

    def _finalize(self, live: LiveAnswer, status: str, usage: dict[str, Any] | None,
                  error: dict[str, str] | None) -> None:
        """Write the final answer once, then end every reader's stream. First caller wins."""
        with live.finalizing:
            if live.done:
                return
            text = live.seal()
            tokens = usage or {}
            try:
                with autocommit(self.sessions()) as session:  # one statement
                    session.connection().execute(FINAL, {
                        "b_id": live.message_id, "b_content": text, "b_status": status,
                        "b_error": error, "b_now": utcnow(),
                        "b_prompt": tokens.get("prompt_tokens"),
                        "b_completion": tokens.get("completion_tokens"),
                    })
            except Exception:
                log.exception("could not store the final answer %s", live.message_id)
            finally:
                live.finish(status, usage, error)
                self.bus.published(live)

    def stop(self, message_id: uuid.UUID) -> None:
        """Stop an answer; its partial text is kept with status `stopped`.

        Generated here, it stops at once. Generated elsewhere, the row asks the generating
        instance to stop (it reads the flag at its next flush, or at once through the bus),
        and this waits for it to store the answer; if nobody does, the generator is gone and
        the answer is closed here with the text the bus or the database has.
        """
        if self.stop_local(message_id):
            return
        with self.sessions.begin() as session:
            asked = session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "streaming")
                .values(stop_requested=True)
            ).rowcount  # type: ignore[attr-defined]
        if not asked:
            return
        self.bus.request_stop(message_id)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with self.sessions() as session:
                status = session.scalar(select(Message.status).where(Message.id == message_id))
            if status != "streaming":
                return
        self.close_orphan(message_id, "stopped")

    def stop_local(self, message_id: uuid.UUID) -> bool:
        """Stop an answer generated by this process; False if it is not one of ours."""
        live = self.bus.get(message_id)
        if live is None:
            return False
        live.stop_requested.set()
        self._finalize(live, "stopped", None, None)
        return True

    def close_orphan(self, message_id: uuid.UUID, status: str) -> bool:
        """End an answer whose generator is gone, with the most text the bus or row has."""
        text = self.bus.recover(message_id)
        values: dict[str, Any] = {"status": status, "updated_at": utcnow(), "lease_until": None}
        if text is not None:
            values["content"] = text
        with self.sessions.begin() as session:
            row = session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "streaming")
                .values(**values)
                .returning(func.length(Message.content))
            ).first()
        if row is None:
            return False
        self.bus.publish_end(message_id, status, int(row[0]))
        return True

    def renew_leases(self) -> None:
        """Extend the leases of the answers this process writes; act on remote Stops."""
        ids = [answer.message_id for answer in self.bus.live.answers()]
        if not ids:
            return
        now = utcnow()
        with self.sessions.begin() as session:
            rows = session.execute(
                update(Message)
                .where(Message.id.in_(ids), Message.status == "streaming")
                .values(lease_until=now + self.lease)
                .returning(Message.id, Message.stop_requested)
            ).all()
        for message_id, stop in rows:
            if stop:
                self.stop_local(message_id)

    def sweep(self) -> int:
        """Mark answers whose generator's lease has run out as `interrupted`."""
        ours = {live.message_id for live in self.bus.live.answers()}
        with self.sessions() as session:
            orphans = session.scalars(
                select(Message.id).where(Message.status == "streaming",
                                         Message.lease_until < utcnow())
            ).all()
        # Never our own: a busy process may renew late, but it is not dead.
        return sum(self.close_orphan(message_id, "interrupted")
                   for message_id in orphans if message_id not in ours)

    def drain(self, grace: float) -> None:
        """Stop taking answers, let running ones finish for `grace` seconds, interrupt the rest.

        Readers of an interrupted answer get `end`, reconnect elsewhere and read it there.
        """
        self.accepting = False
        deadline = time.monotonic() + grace
        while len(self.bus.live) and time.monotonic() < deadline:
            time.sleep(0.1)
        for live in self.bus.live.answers():
            live.stop_requested.set()
            self._finalize(live, "interrupted", None, None)

    # -- reading -----------------------------------------------------------------------------

    def events(self, message_id: uuid.UUID, after: int | None) -> Iterator[str]:
        """The answer's SSE events from `after` (None: from the start, with `start`).

        The bus serves answers it carries; the database serves the rest. Raises `BadOffset`
        if `after` is past the answer and `Gone` if the message is gone, before anything is
        sent.
        """
        events = self.bus.read(message_id, after)
        if events is not None:
            return events
        with self.sessions() as session:
            message = session.get(Message, message_id)
        if message is None:
            raise Gone(message_id)
        if after is not None and after > len(message.content):
            raise BadOffset(after)
        return stored_events(self.sessions, message, after, self.settings.flush_interval,
                             self.settings.stream_keepalive)

    def close(self) -> None:
        self._closed.set()
        self._flush_now.set()
        self._upkeep.join(timeout=5)
        self.provider.close()
        self.bus.close()

