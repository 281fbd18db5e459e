"""The answers this process writes: generating, batched writes, Stop, and how they end.

Generation is decoupled from the request that asked for it: it runs in a greenlet (a thread
outside gevent) to the end or to Stop, even when every reader has gone. Text goes to the
stream bus as it comes, to the database in batches (one statement for every answer, each
flush interval or FLUSH_CHARS), and finally once, through `end`: the one path by which every
answer of this process ends, whether complete, stopped, failed or interrupted.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..database import autocommit
from ..messages import ChatMessage
from ..models import Message, utcnow
from ..providers import Models, Progress, ProviderError, Reasoning, Usage
from . import titles
from .bus import INTERNAL_ERROR, LocalBus
from .limits import Limits
from .live import LiveAnswer
from .tokens import TokenCounter

log = logging.getLogger(__name__)

MESSAGES = cast(Table, Message.__table__)
# Built once: constructing a statement costs more than running it on SQLite.
_STILL_STREAMING = update(MESSAGES).where(MESSAGES.c.id == bindparam("b_id"),
                                          MESSAGES.c.status == "streaming")
FLUSH = _STILL_STREAMING.values(content=bindparam("b_content"),
                                reasoning=bindparam("b_reasoning"), updated_at=bindparam("b_now"))
FINAL = _STILL_STREAMING.values(
    content=bindparam("b_content"), reasoning=bindparam("b_reasoning"),
    status=bindparam("b_status"), error=bindparam("b_error"),
    updated_at=bindparam("b_now"), lease_until=None, prompt_tokens=bindparam("b_prompt"),
    completion_tokens=bindparam("b_completion"))


class Writer:
    """Generates this process's answers and writes them to the bus and the database."""

    def __init__(self, sessions: sessionmaker[Session], models: Models, settings: Settings,
                 bus: LocalBus, worker: str, spawn: Callable[[Callable[[], None]], None],
                 counter: TokenCounter, limits: Limits) -> None:
        self.sessions = sessions
        self.models = models
        self.settings = settings
        self.bus = bus
        self.worker = worker
        self.spawn = spawn
        self.counter = counter
        self.limits = limits
        self.flush_now = threading.Event()  # set when an answer has FLUSH_CHARS unwritten

    def start(self, message_id: uuid.UUID, model: str | None, prompt: list[ChatMessage],
              temperature: float | None = None, titles: uuid.UUID | None = None) -> None:
        """Generate an answer with the model of this id (the default's where unknown); once
        complete, have it title the conversation `titles` (titles.py)."""
        live = self.bus.open(message_id, model)
        if titles is not None:
            live.titles = (titles, prompt[-1]["content"])
        self.spawn(lambda: self._generate(live, prompt, temperature))

    def _generate(self, live: LiveAnswer, prompt: list[ChatMessage],
                  temperature: float | None) -> None:
        usage: Usage | None = None
        # However the answer ends (here, by Stop, by a drain), `end` adds its tokens to its
        # owner's usage: what the model reported by then, else an estimate.
        live.count_tokens = lambda text: self._tokens(prompt, usage, text)
        error: dict[str, str] | None = None
        status = "complete"
        try:
            provider = self.models.get(live.model).provider
            for item in provider.stream(prompt, temperature=temperature):
                if live.stop_requested.is_set():
                    break
                if isinstance(item, Usage):
                    usage = item
                    continue
                if isinstance(item, Progress):
                    live.set_progress(item.data())
                    continue
                if isinstance(item, Reasoning):
                    if not live.append_reasoning(item.text):
                        log.debug("answer %s: reasoning after the answer began, dropped",
                                  live.message_id)
                    continue
                live.append(item)
                if live.length - live.flushed >= self.settings.flush_chars:
                    self.flush_now.set()
            if live.stop_requested.is_set():
                status = "stopped"
        except ProviderError as exc:
            log.warning("answer %s failed: %s", live.message_id, exc, exc_info=exc.__cause__)
            status, error = "error", {"code": exc.code, "message": exc.message}
        except Exception:
            log.exception("answer %s failed", live.message_id)
            status, error = "error", dict(INTERNAL_ERROR)
        finally:
            self.end(live, status, None if usage is None else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            }, error)

    def _tokens(self, prompt: list[ChatMessage], usage: Usage | None, text: str) -> int:
        """An answer's tokens for its owner's usage (chat/limits.py): what the model
        reported, else an estimate of the prompt and the stored text."""
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
            return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
        return self.counter.count_exchange(prompt, text)

    def _add_tokens(self, connection: Connection, live: LiveAnswer, text: str) -> None:
        if live.count_tokens is None:  # never generated here (a unit test's bare answer)
            return
        try:
            self.limits.add_tokens(connection, live.message_id, live.count_tokens(text),
                                   utcnow().date())
        except Exception:
            log.exception("could not count the tokens of %s", live.message_id)

    def end(self, live: LiveAnswer, status: str, usage: dict[str, Any] | None = None,
            error: dict[str, str] | None = None) -> bool:
        """End an answer: freeze its text, write it once and add its tokens to its owner's
        usage, then end every reader's stream; whether this call ended it.

        Every ending goes through here (the generator's, Stop's, a drain's); the first
        caller wins and the rest return. The generator, if still running, stops at its next
        token; readers see exactly the text that was stored, and a page that asks for its
        usage when it sees the end finds the answer's tokens counted.
        """
        with live.finalizing:
            if live.done:
                return False
            live.stop_requested.set()
            reasoning, text = live.seal()
            tokens = usage or {}
            titling = False
            try:
                # The final write, then the tokens: statements of their own on one connection.
                with autocommit(self.sessions()) as session:
                    connection = session.connection()
                    connection.execute(FINAL, {
                        "b_id": live.message_id, "b_content": text,
                        "b_reasoning": reasoning, "b_status": status,
                        "b_error": error, "b_now": utcnow(),
                        "b_prompt": tokens.get("prompt_tokens"),
                        "b_completion": tokens.get("completion_tokens"),
                    })
                    self._add_tokens(connection, live, reasoning + text)
                    if status == "complete" and live.titles is not None:
                        titling = titles.ask(connection, live.titles[0], self.worker)
            except Exception:
                log.exception("could not store the final answer %s", live.message_id)
            finally:
                live.finish(status, usage, error)
                self.bus.published(live)
            if titling and live.titles is not None:
                conversation_id, question = live.titles
                provider = self.models.get(live.model).provider
                self.spawn(lambda: titles.write_title(self.sessions, provider,
                                                      conversation_id, question, text))
            return True

    def stop_here(self, message_id: uuid.UUID) -> bool:
        """Stop an answer if this process writes it; False if it is not one of ours."""
        live = self.bus.get(message_id)
        if live is None:
            return False
        self.end(live, "stopped")
        return True

    def flush(self) -> None:
        """Write every live answer's new text in one statement; act on Stops from elsewhere.

        One statement for all answers (not one transaction per answer) keeps the cost per
        process flat as answers multiply. The same transaction reads the Stops other
        instances asked for (the row's `stop_requested`: the one mechanism of Stop, which
        the bus only makes quicker) and answers another process closed.
        """
        answers = self.bus.live.answers()
        if not answers:
            return
        now = utcnow()
        batch = [(live, live.length) for live in answers
                 if not live.done and live.length > live.flushed]
        halted_where = and_(Message.worker == self.worker, Message.status == "streaming",
                            Message.stop_requested)
        with self.sessions.begin() as session:
            if batch:
                session.connection().execute(FLUSH, [
                    dict(zip(("b_reasoning", "b_content"), live.parts(length), strict=True),
                         b_id=live.message_id, b_now=now)
                    for live, length in batch])
                halted_where = or_(halted_where, and_(
                    Message.id.in_([live.message_id for live, _ in batch]),
                    Message.status != "streaming"))
            halted = session.execute(select(Message.id, Message.status).where(halted_where)
                                     ).all()
        for live, length in batch:
            live.flushed = max(live.flushed, length)
        for message_id, status in halted:
            halted_live = self.bus.get(message_id)
            if halted_live is not None:
                # Stopped from elsewhere; or closed elsewhere, which only a process that
                # lost the database for a lease can see: its stored ending stands.
                self.end(halted_live, "stopped" if status == "streaming" else status)

    def drain(self, grace: float) -> None:
        """Let running answers finish for `grace` seconds, then end the rest `interrupted`.

        Readers of an interrupted answer get `end`, reconnect elsewhere and read it there.
        """
        deadline = time.monotonic() + grace
        while len(self.bus.live) and time.monotonic() < deadline:
            time.sleep(0.1)
        for live in self.bus.live.answers():
            self.end(live, "interrupted")
