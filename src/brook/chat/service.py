"""The chat service: what the web layer asks of the chat logic, one module per concern behind it.

- turns.py stores a turn (admitted by admission.py), answers.py generates and writes it and
  ends it, liveness.py knows which processes are alive, stored.py reads finished answers;
- this module builds them, starts and stops them (`start`, `close`), runs the upkeep
  (batched writes and remote Stops every flush interval, the sweep of orphaned answers
  every third of a lease), serves an answer's events from the bus or the database, and
  carries out Stop.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..background import spawn
from ..config import Settings
from ..database import autocommit
from ..models import Conversation, Message, usage_of, utcnow
from ..providers import Models, Provider
from . import titles
from .admission import Admission, Overloaded
from .answers import Writer
from .bus import BadOffset, Events, LocalBus, final_events
from .chatgpt import ChatGPTExport
from .imported import MAX_IMPORT_BYTES, ImportRefused
from .limits import LimitExceeded, Limits, Quota, per_owner
from .liveness import Heartbeat, forget_old_workers, gone, orphans, surviving, worker_id
from .search import SearchHit, find_matches
from .stored import deleted_event, stored_events
from .tokens import TokenCounter
from .transfer import (
    BrookExport,
    export_json,
    export_markdown,
    owned_conversations,
    read_import,
    store_import,
)
from .turns import CONVERSATIONS, Busy, NotFound, NotLast, Turn, Turns

log = logging.getLogger(__name__)

# Built once, as turns.py's statements are; executed with every column of the new row.
INSERT_CONVERSATION = insert(CONVERSATIONS)

STOP_WAIT_SECONDS = 3.0

__all__ = ["MAX_IMPORT_BYTES", "BadOffset", "BrookExport", "Busy", "ChatGPTExport",
           "ChatService", "Draining", "Gone", "ImportRefused", "LimitExceeded", "NotFound",
           "NotLast", "Overloaded", "Quota", "UnknownModel"]


class Draining(Exception):
    """This instance is shutting down and takes no new answers."""


class UnknownModel(ValueError):
    """A model that is not one of the configured ones."""


class Gone(LookupError):
    """The message was deleted (with its conversation) while being asked for."""


class ChatService:
    """Chat for the web layer. Building one starts nothing; `start` starts its background
    work (see there), so a unit test can build one and drive it step by step."""

    def __init__(self, sessions: sessionmaker[Session], models: Models | Provider,
                 settings: Settings,
                 counter: TokenCounter, bus: LocalBus, heartbeat_engine: Engine,
                 spawn: Callable[[Callable[[], None]], None] = spawn) -> None:
        self.sessions = sessions
        # The models people may pick (a bare provider: the one model, for tests).
        self.models = models if isinstance(models, Models) else Models.single(models)
        self.provider = self.models.default.provider
        self.settings = settings
        self.bus = bus
        self.worker = worker_id()
        self.accepting = True
        # Answers whose turn is (being) stored here but not yet live on the bus: the sweep
        # must not take them for orphans of this process, however long the gap lasts.
        self.starting: set[uuid.UUID] = set()
        self.turns = Turns(settings, counter, self.models, self.worker)
        self.limits = Limits(settings)
        self.writer = Writer(sessions, self.models, settings, bus, self.worker, spawn, counter,
                             self.limits)
        self.admission = Admission(settings.max_answers_per_worker,
                                   settings.max_event_loop_lag, lambda: len(bus.live), spawn)
        self.heartbeat = Heartbeat(heartbeat_engine, self.worker, settings.stream_lease)
        bus.on_stop(self.writer.stop_here)
        self._closed = threading.Event()
        self._upkeep: threading.Thread | None = None

    def start(self) -> None:
        """Start the background work: this process's heartbeat (its first beat written before
        this returns), the admission's probe and the upkeep. The app factory calls it.

        Until then nothing runs on its own: answers are generated through `spawn` (a unit
        test passes one that runs them inline), nothing is flushed or swept but by calling
        `writer.flush()` or `sweep()`, no heartbeat is written and admission sees no lag.
        """
        self.heartbeat.start()
        self.admission.start()
        self._upkeep = threading.Thread(target=self._upkeep_loop, daemon=True,
                                        name="brook-upkeep")
        self._upkeep.start()

    def _upkeep_loop(self) -> None:
        """Flush (and read remote Stops) every flush interval; sweep every third of a lease.

        One greenlet does both, one after the other: both update answers' rows, and two
        transactions doing so at once, each locking rows in its own order, can deadlock.
        The first sweep runs at once, for the answers of a previous run of this server.
        """
        sweep_every = self.settings.stream_lease / 3
        next_sweep = 0.0
        while not self._closed.is_set():
            try:
                self.writer.flush()
            except Exception:
                log.warning("could not write answers to the database; retrying", exc_info=True)
                self._closed.wait(0.5)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + sweep_every
                try:
                    self.sweep()
                except Exception:
                    log.warning("could not sweep orphaned answers; retrying", exc_info=True)
            self.writer.flush_now.wait(self.settings.flush_interval)
            self.writer.flush_now.clear()

    # -- starting answers --------------------------------------------------------------------

    def admit(self) -> None:
        """Raise `Draining` or `Overloaded` unless this worker takes a new answer now."""
        if not self.accepting:
            raise Draining
        self.admission.check()

    def quota(self, signed_in: bool, admin: bool) -> Quota | None:
        """The limits of an owner who is (not) signed in (an admin has none)."""
        return self.limits.quota(signed_in, admin)

    def create_conversation(self, session: Session, owner: str, title: str,
                            quota: Quota | None = None,
                            settings: dict[str, Any] | None = None) -> Conversation:
        """Store a new conversation (with its own `settings`: see `update_conversation`);
        raises `LimitExceeded` (nothing stored) over a limit, `UnknownModel`."""
        now = utcnow()
        conversation = Conversation(id=uuid.uuid4(), owner=owner, title=title,
                                    title_source="user" if title else "none",
                                    created_at=now, updated_at=now)
        self._settle(conversation, settings or {})
        if quota is None or not (quota.conversations_per_day or quota.stored_conversations):
            autocommit(session)  # one INSERT
        else:
            self._within_limits(session, self.limits.admit_conversation, owner, quota)
        # A Core INSERT of what the object holds (it stays out of the session): the ORM's
        # unit of work cost more than the statement on SQLite.
        session.connection().execute(INSERT_CONVERSATION, {
            column.key: getattr(conversation, column.key) for column in CONVERSATIONS.columns})
        session.commit()
        return conversation

    def update_conversation(self, session: Session, conversation: Conversation,
                            changes: dict[str, Any]) -> None:
        """Change a conversation's title (the user's from then on, never overwritten), model,
        system prompt or temperature (None: back to the default); they apply from its next
        answer on. Raises `UnknownModel` (nothing changed) for a model not configured."""
        self._settle(conversation, changes)
        if "title" in changes:
            conversation.title, conversation.title_source = changes["title"], "user"
        conversation.updated_at = utcnow()
        session.commit()

    def _settle(self, conversation: Conversation, changes: dict[str, Any]) -> None:
        if "model" in changes:
            if changes["model"] not in self.models:
                raise UnknownModel(changes["model"])
            conversation.model = changes["model"]
        for name in ("system_prompt", "temperature"):
            if name in changes:
                setattr(conversation, name, changes[name])

    def model_list(self) -> list[dict[str, object]]:
        """The models a conversation may use, the default first."""
        return [{"id": choice.id, "name": choice.name, "temperature": choice.temperature,
                 "default": choice is self.models.default} for choice in self.models]

    def usage(self, session: Session, owner: str, quota: Quota | None) -> dict[str, object]:
        """An owner's use of each limit today."""
        return self.limits.usage(autocommit(session).connection(), owner, quota, utcnow())

    def usage_by_owner(self, session: Session, days: int) -> list[dict[str, object]]:
        """Every owner's usage per day over the last `days` days (UTC), for admins."""
        since = utcnow().date() - timedelta(days=days - 1)
        return per_owner(autocommit(session).connection(), since)

    def search(self, session: Session, owner: str, query: str, limit: int) -> list[SearchHit]:
        """The owner's conversation titles and final messages that match `query` (plain
        words, each the start of a word), best first, at most `limit`, with snippets."""
        return find_matches(autocommit(session).connection(), owner, query, limit)

    def send(self, session: Session, conversation_id: uuid.UUID, owner: str, content: str,
             quota: Quota | None = None) -> tuple[Message, Message]:
        """Store the user's message and an empty streaming answer, then start generating.

        Raises `NotFound` if `owner` has no such conversation, `LimitExceeded` over one of
        their limits (`quota`; None: none).
        """
        with self._admitted() as answer_id:
            self._admit_answer(session, owner, quota)
            user, turn = self.turns.send(session, conversation_id, owner, content, answer_id)
        return user, self._start(turn)

    def regenerate(self, session: Session, conversation: Conversation, answer: Message,
                   quota: Quota | None = None) -> Message:
        with self._admitted() as answer_id:
            self._admit_answer(session, conversation.owner, quota)
            turn = self.turns.regenerate(session, conversation, answer, answer_id)
        return self._start(turn)

    def edit(self, session: Session, conversation: Conversation, user: Message, content: str,
             quota: Quota | None = None) -> tuple[Message, Message]:
        with self._admitted() as answer_id:
            self._admit_answer(session, conversation.owner, quota)
            user, turn = self.turns.edit(session, conversation, user, content, answer_id)
        return user, self._start(turn)

    def _admit_answer(self, session: Session, owner: str, quota: Quota | None) -> None:
        """Count the answer against its owner's limits, in the transaction that stores it."""
        if quota is not None and (quota.answers_per_minute or quota.concurrent_answers
                                  or quota.tokens_per_day or self.limits.budget):
            self._within_limits(session, self.limits.admit_answer, owner, quota)
        else:  # counted all the same, for the usage shown
            self.limits.count_answer(session.connection(), owner, utcnow())

    @staticmethod
    def _within_limits(session: Session, admit: Callable[..., None], owner: str,
                       quota: Quota) -> None:
        try:
            admit(session.connection(), owner, quota, utcnow())
        except LimitExceeded:
            session.rollback()
            raise

    @contextmanager
    def _admitted(self) -> Iterator[uuid.UUID]:
        """Hold an answer's place while its turn is stored; yield the answer's id.

        The place is given back just before `_start` makes the answer live: nothing between
        them waits, so no other request sees the answer counted twice (reserved and live)
        or not at all. The id is in `starting` from before its row exists until `_start`
        has made it live (or the turn failed), so the sweep never sees a row of this
        process that is neither live nor starting while it is being started.
        """
        if not self.accepting:
            raise Draining
        answer_id = uuid.uuid4()
        self.starting.add(answer_id)
        try:
            with self.admission.slot():
                yield answer_id
        except BaseException:
            self.starting.discard(answer_id)
            raise

    def _start(self, turn: Turn) -> Message:
        try:
            self.writer.start(turn.answer.id, turn.answer.model, turn.prompt, turn.temperature,
                              turn.answer.conversation_id if turn.titles else None)
        finally:
            self.starting.discard(turn.answer.id)
        return turn.answer

    # -- stopping and ending -----------------------------------------------------------------

    def stop(self, message_id: uuid.UUID) -> None:
        """Stop an answer; its partial text is kept with status `stopped`.

        Stop is the row's `stop_requested`. Written here, the answer stops at once. Written
        elsewhere, the bus tells the writing process at once and its next flush would read
        the flag anyway; this waits for the answer to be stored. If its process is gone,
        the answer is closed here with the most text the bus or the database kept.
        """
        if self.writer.stop_here(message_id):
            return
        with autocommit(self.sessions()) as session:
            writer = session.scalar(
                update(Message)
                .where(Message.id == message_id, Message.status == "streaming")
                .values(stop_requested=True)
                .returning(Message.worker))
        if writer is None:
            return
        self.bus.request_stop(message_id)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with autocommit(self.sessions()) as session:
                if session.scalar(select(Message.status).where(Message.id == message_id)
                                  ) != "streaming":
                    return
        with autocommit(self.sessions()) as session:
            dead = gone(session, writer)
        if dead:
            try:
                self.close_orphan(message_id, "stopped")
            except Exception:  # Redis is away: the sweep closes it once Redis is back
                log.warning("could not close %s, whose writer is gone; the sweep will",
                            message_id, exc_info=True)

    def close_orphan(self, message_id: uuid.UUID, status: str) -> bool:
        """End an answer whose process is gone, with the most text the bus or database has."""
        recovered = self.bus.recover(message_id)
        with self.sessions.begin() as session:
            row = session.execute(
                select(Message.reasoning, Message.content, Message.conversation_id,
                       Message.position)
                .where(Message.id == message_id, Message.status == "streaming")
                .with_for_update()).first()
            if row is None:
                return False
            reasoning, text = surviving(row.reasoning, row.content, recovered)
            session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "streaming")
                .values(status=status, content=text, reasoning=reasoning, updated_at=utcnow(),
                        lease_until=None))
            # Its tokens count too (the model's report died with the process: an estimate).
            tokens = self.turns.estimate_tokens(session, row.conversation_id, row.position,
                                                reasoning + text)
            self.limits.add_tokens(session.connection(), message_id, tokens, utcnow().date())
        self.bus.publish_end(message_id, status, len(reasoning) + len(text))
        return True

    def sweep(self) -> int:
        """Mark answers whose process is gone `interrupted`, keeping every word that survived.

        This process's own answers are left alone while live or starting; both are read
        after the query, so an answer that went from starting to live meanwhile is in one.
        """
        with autocommit(self.sessions()) as session:
            candidates = orphans(session, me=self.worker)
        ours = self.starting | {live.message_id for live in self.bus.live.answers()}
        with self.sessions.begin() as session:
            forget_old_workers(session)
        closed = sum(self.close_orphan(message_id, "interrupted")
                     for message_id in candidates if message_id not in ours)
        if closed:
            log.info("marked %d answer(s) interrupted: the process writing them is gone", closed)
        with self.sessions.begin() as session:
            titled = titles.give_back_orphaned(session, self.worker)
        if titled:
            log.info("%d title(s) no longer pending: the process asking for them is gone",
                     titled)
        return closed

    def drain(self, grace: float) -> None:
        """Stop taking answers, let running ones finish for `grace` seconds, interrupt the rest."""
        self.accepting = False
        self.writer.drain(grace)

    # -- reading -----------------------------------------------------------------------------

    def events(self, message_id: uuid.UUID, after: int | None) -> Iterator[str]:
        """The answer's SSE events from `after` (None: from the start, with `start`).

        The bus serves answers it carries, the database the rest, and the database takes
        over where the bus lost text (Redis restarted). Raises `BadOffset` if `after` is
        past a finished answer and `Gone` if the message is gone, before anything is sent.
        A reader past the end of an `interrupted` answer (it had read text that did not
        survive its writer) gets only the `end`, whose id is where the answer now ends.
        """
        events = self.bus.read(message_id, after)
        if events is not None:
            return self._then_database(events, message_id)
        with self.sessions() as session:
            message = session.get(Message, message_id)
        if message is None:
            raise Gone(message_id)
        length = len(message.reasoning) + len(message.content)  # the offsets' (chat/live.py)
        if after is not None and after > length:
            if message.status == "interrupted":
                return iter([final_events("interrupted", usage_of(message), None, length)])
            if message.status != "streaming":
                raise BadOffset(after)
        return self._stored(message, after)

    def _stored(self, message: Message, after: int | None) -> Events:
        return stored_events(self.sessions, message, after, self.settings.flush_interval,
                             self.settings.stream_keepalive)

    def _then_database(self, events: Events, message_id: uuid.UUID) -> Iterator[str]:
        rest = yield from events
        if rest is None:
            return
        with self.sessions() as session:
            message = session.get(Message, message_id)
        if message is None:
            yield deleted_event(rest)
            return
        yield from self._stored(message, rest)

    def close(self) -> None:
        self._closed.set()
        self.writer.flush_now.set()
        if self._upkeep is not None:
            self._upkeep.join(timeout=5)
        self.admission.close()
        self.heartbeat.stop()
        self.models.close()
        self.bus.close()

    # -- export and import (transfer.py; ChatGPT's files: chatgpt.py) -----------------------

    def export(self, session: Session, owner: str, conversation_id: uuid.UUID | None,
               markdown: bool = False) -> tuple[bytes, str | None]:
        """One of the owner's conversations (None: all of them) as Brook's JSON document, or
        as a Markdown transcript, and the conversation's title (None for all). Raises
        `NotFound` if the owner has no such conversation."""
        rows = owned_conversations(session, owner, conversation_id)
        if conversation_id is not None and not rows:
            raise NotFound(conversation_id)
        body = export_markdown(rows) if markdown else export_json(rows)
        return body, rows[0].title if conversation_id is not None else None

    def import_file(self, session: Session, owner: str, raw: bytes, quota: Quota | None = None
                    ) -> tuple[list[Conversation], int]:
        """Import a file (Brook's JSON export or ChatGPT's conversations.json) for `owner`:
        validated whole first, then stored in one transaction. Returns the conversations made
        and how many of the file's had nothing to import. Raises `ImportRefused` (a file
        that cannot be imported) or `LimitExceeded` (over LIMIT_STORED_CONVERSATIONS), with
        nothing stored."""
        file = read_import(raw)
        return store_import(session, owner, file, quota), file.skipped
