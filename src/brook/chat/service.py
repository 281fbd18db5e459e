"""The chat service: store a turn, generate the answer in the background, serve its events.

Generation is decoupled from the request that asked for it: it runs in its own thread (a
greenlet under gunicorn's gevent worker) to the end or to Stop, even when every reader has
gone, and writes the answer to the database in batches and finally once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .. import sse
from ..config import Settings
from ..models import Conversation, Message, utcnow
from ..providers import Provider, ProviderError, Usage
from .live import LiveAnswer, LiveRegistry
from .tokens import ChatMessage, TokenCounter, fit_to_budget

log = logging.getLogger(__name__)

TITLE_CHARS = 60
KEEPALIVE_SECONDS = 15.0
INTERNAL_ERROR = {"code": "internal_error",
                  "message": "Something went wrong while writing this answer."}


class Busy(Exception):
    """An answer is already streaming in this conversation."""


class NotLast(Exception):
    """Only the last answer of a conversation can be regenerated."""


class BadOffset(ValueError):
    """A resume offset beyond the answer."""


class Gone(LookupError):
    """The message was deleted (with its conversation) while being asked for."""


def default_title(content: str) -> str:
    words = " ".join(content.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


def start_thread(target: Callable[[], None]) -> None:
    threading.Thread(target=target, daemon=True, name="brook-generate").start()


class ChatService:
    def __init__(self, sessions: sessionmaker[Session], provider: Provider, settings: Settings,
                 counter: TokenCounter, spawn: Callable[[Callable[[], None]], None] = start_thread
                 ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.settings = settings
        self.counter = counter
        self.spawn = spawn
        self.live = LiveRegistry()

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
        now = utcnow()
        answer = Message(conversation_id=conversation.id, position=position, role="assistant",
                         content="", status="streaming", model=self.provider.model,
                         created_at=now, updated_at=now)
        conversation.updated_at = now
        session.add(answer)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise Busy from None
        prompt = self.prompt_for(session, conversation.id)
        live = LiveAnswer(answer.id, answer.model)
        self.live.add(live)
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
        flushed_at, flushed_len = time.monotonic(), 0
        try:
            for item in self.provider.stream(prompt):
                if live.stop_requested.is_set():
                    break
                if isinstance(item, Usage):
                    usage = item
                    continue
                live.append(item)
                now = time.monotonic()
                if (now - flushed_at >= self.settings.flush_interval
                        or live.length - flushed_len >= self.settings.flush_chars):
                    flushed_at, flushed_len = now, live.length
                    if not self._flush(live.message_id, live.text()):
                        live.stop_requested.set()  # stopped from elsewhere: the row says so
                        break
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

    def _flush(self, message_id: uuid.UUID, text: str) -> bool:
        """Write the text so far; False when the row is no longer streaming (stopped)."""
        with self.sessions.begin() as session:
            result = session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "streaming")
                .values(content=text, updated_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _finalize(self, live: LiveAnswer, status: str, usage: dict[str, Any] | None,
                  error: dict[str, str] | None) -> None:
        """Write the final answer once, then end every reader's stream. First caller wins."""
        with live.finalizing:
            if live.done:
                return
            text = live.seal()
            try:
                with self.sessions.begin() as session:
                    values: dict[str, Any] = {"content": text, "status": status,
                                              "error": error, "updated_at": utcnow()}
                    if usage:
                        values["prompt_tokens"] = usage["prompt_tokens"]
                        values["completion_tokens"] = usage["completion_tokens"]
                    session.execute(
                        update(Message)
                        .where(Message.id == live.message_id, Message.status == "streaming")
                        .values(**values)
                    )
            except Exception:
                log.exception("could not store the final answer %s", live.message_id)
            finally:
                live.finish(status, usage, error)
                self.live.remove(live.message_id)

    def stop(self, message_id: uuid.UUID) -> None:
        """Stop an answer; its partial text is kept with status `stopped`."""
        live = self.live.get(message_id)
        if live is not None:
            live.stop_requested.set()
            self._finalize(live, "stopped", None, None)
            return
        # Generated by another process (or one that died): the row is the shared truth, and
        # the generating process stops at its next flush when it finds the row changed.
        with self.sessions.begin() as session:
            session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "streaming")
                .values(status="stopped", updated_at=utcnow())
            )

    # -- reading -----------------------------------------------------------------------------

    def events(self, message_id: uuid.UUID, after: int | None) -> Iterator[str]:
        """The answer's SSE events from `after` (None: from the start, with `start`).

        Raises `BadOffset` if `after` is past the answer and `Gone` if the message is gone,
        before anything is sent.
        """
        live = self.live.get(message_id)
        if live is not None:
            if after is not None and after > live.length:
                raise BadOffset(after)
            return self._live_events(live, after)
        with self.sessions() as session:
            message = session.get(Message, message_id)
        if message is None:
            raise Gone(message_id)
        if after is not None and after > len(message.content):
            raise BadOffset(after)
        return self._stored_events(message, after)

    def _live_events(self, live: LiveAnswer, after: int | None) -> Iterator[str]:
        offset = after or 0
        if after is None:
            yield f"retry: {sse.RETRY_MS}\n" + sse.encode(
                "start", {"message_id": str(live.message_id), "model": live.model}, 0)
        while True:
            text, done = live.read(offset, KEEPALIVE_SECONDS)
            if text:
                offset += len(text)
                yield sse.encode("message", {"text": text}, offset)
            elif done:
                yield _final_events(live.status, live.usage, live.error, offset)
                return
            else:
                yield sse.KEEPALIVE

    def _stored_events(self, message: Message, after: int | None) -> Iterator[str]:
        offset = after or 0
        if after is None:
            yield f"retry: {sse.RETRY_MS}\n" + sse.encode(
                "start", {"message_id": str(message.id), "model": message.model}, 0)
        waited = 0.0
        while True:
            if len(message.content) > offset:
                yield sse.encode("message", {"text": message.content[offset:]},
                                 len(message.content))
                offset = len(message.content)
            if message.status != "streaming":
                yield _final_events(message.status, usage_of(message), message.error, offset)
                return
            # Streaming in another process: follow the row as it is flushed.
            time.sleep(self.settings.flush_interval)
            waited += self.settings.flush_interval
            if waited >= KEEPALIVE_SECONDS:
                waited = 0.0
                yield sse.KEEPALIVE
            with self.sessions() as session:
                fresh = session.get(Message, message.id)
            if fresh is None:  # deleted with its conversation
                yield _final_events("error", None, {"code": "deleted", "message":
                                    "This conversation was deleted."}, offset)
                return
            message = fresh

    def close(self) -> None:
        self.provider.close()


def usage_of(message: Message) -> dict[str, Any] | None:
    if message.prompt_tokens is None and message.completion_tokens is None:
        return None
    return {"prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens}


def _final_events(status: str, usage: dict[str, Any] | None, error: dict[str, Any] | None,
                  offset: int) -> str:
    end = sse.encode("end", {"status": status, "usage": usage}, offset)
    if status == "error":
        return sse.encode("error", error or INTERNAL_ERROR, offset) + end
    return end
