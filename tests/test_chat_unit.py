"""Unit tests of the chat logic through `ChatService`, with no services and no threads.

Each test builds the service as the app does, but from parts that need nothing outside this
process: a SQLite file (copied from one migrated once), the in-process bus, a scripted model
that implements the `Provider` protocol in memory, and a `spawn` that runs each answer's
generation inline (or keeps it for the test to run later). The service is not started, so
no heartbeat, probe or upkeep runs: the test calls what it wants to happen.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from brook import database, sse
from brook.chat.bus import LocalBus
from brook.chat.service import (
    Busy,
    ChatService,
    Draining,
    NotFound,
    NotLast,
    Overloaded,
)
from brook.chat.tokens import TokenCounter
from brook.config import load_settings
from brook.messages import ChatMessage
from brook.models import Conversation, Message, Worker, utcnow
from brook.providers import ProviderError, Usage

REPLY = ("Hello", " there", ",", " friend", ".")
USAGE = Usage(21, 5)
SYSTEM = "Be brief."


class ScriptedModel:
    """A model in memory: answers every prompt with `tokens`, then `usage`; raises `fail`
    before token `fail_at`; calls `before(i)` before yielding token i. Keeps every prompt."""

    def __init__(self, tokens: Sequence[str] = REPLY, usage: Usage | None = USAGE,
                 fail: Exception | None = None, fail_at: int = 0,
                 before: Callable[[int], None] | None = None) -> None:
        self.model: str | None = "scripted-1"
        self.tokens, self.usage = list(tokens), usage
        self.fail, self.fail_at, self.before = fail, fail_at, before
        self.prompts: list[list[ChatMessage]] = []
        self.closed = False

    def stream(self, messages: Sequence[ChatMessage], *, temperature: float | None = None
               ) -> Iterator[str | Usage]:
        self.prompts.append(list(messages))
        for i, token in enumerate(self.tokens):
            if self.fail is not None and i == self.fail_at:
                raise self.fail
            if self.before is not None:
                self.before(i)
            yield token
        if self.usage is not None:
            yield self.usage

    def close(self) -> None:
        self.closed = True


@dataclass
class Chat:
    service: ChatService
    sessions: sessionmaker[Session]
    model: ScriptedModel
    later: list[Callable[[], None]] = field(default_factory=list)

    def conversation(self, owner: str = "alice") -> uuid.UUID:
        with self.sessions.begin() as session:
            conversation = Conversation(owner=owner)
            session.add(conversation)
            session.flush()
            return conversation.id

    def send(self, conversation_id: uuid.UUID, content: str, owner: str = "alice"
             ) -> tuple[Message, Message]:
        with self.sessions() as session:
            return self.service.send(session, conversation_id, owner, content)

    def regenerate(self, answer_id: uuid.UUID) -> Message:
        with self.sessions() as session:
            answer = session.get_one(Message, answer_id)
            return self.service.regenerate(session, answer.conversation, answer)

    def edit(self, user_id: uuid.UUID, content: str) -> tuple[Message, Message]:
        with self.sessions() as session:
            user = session.get_one(Message, user_id)
            return self.service.edit(session, user.conversation, user, content)

    def message(self, message_id: uuid.UUID) -> Message:
        with self.sessions() as session:
            return session.get_one(Message, message_id)

    def count(self, conversation_id: uuid.UUID) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count(Message.id)).where(
                Message.conversation_id == conversation_id)) or 0

    def events(self, message_id: uuid.UUID) -> list[dict[str, Any]]:
        return sse.parse("".join(self.service.events(message_id, None)))

    def run_later(self) -> None:
        """Run the generation kept by a deferred `spawn`, oldest first."""
        while self.later:
            self.later.pop(0)()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each service gets a copy."""
    path = tmp_path_factory.mktemp("schema") / "brook.db"
    database.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def make_chat(tmp_path: Path, migrated: Path) -> Iterator[Callable[..., Chat]]:
    """`make_chat(model, inline=True, **env)`: a ChatService on a fresh SQLite file, not
    started. `inline=False` keeps each generation in `chat.later` until `run_later()`."""
    made: list[tuple[Chat, Engine]] = []

    def make(model: ScriptedModel | None = None, *, inline: bool = True,
             **env: str) -> Chat:
        path = tmp_path / f"brook-{len(made)}.db"
        shutil.copy(migrated, path)
        url = f"sqlite:///{path}"
        settings = load_settings({"DATABASE_URL": url,
                                  "BROOK_INSTANCE_PATH": str(tmp_path / "instance"),
                                  "SYSTEM_PROMPT": SYSTEM,
                                  "MODEL_TITLES": "false",  # tests/test_titles.py
                                  **env})
        engine = database.make_engine(url)
        database.ensure_schema(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        later: list[Callable[[], None]] = []

        def run_now(target: Callable[[], None]) -> None:
            target()

        model = model or ScriptedModel()
        service = ChatService(sessions, model, settings, TokenCounter(None),
                              LocalBus(settings.stream_coalesce, settings.stream_keepalive),
                              database.make_engine(url, pool_size=1),
                              spawn=run_now if inline else later.append)
        chat = Chat(service, sessions, model, later)
        made.append((chat, engine))
        return chat

    yield make
    for chat, engine in made:
        chat.service.close()
        engine.dispose()


def test_building_the_service_starts_nothing_and_start_starts_it(
        make_chat: Callable[..., Chat]) -> None:
    before = set(threading.enumerate())
    chat = make_chat(inline=False)
    assert not [t.name for t in set(threading.enumerate()) - before if t.name.startswith("brook")]
    with chat.sessions() as session:
        assert session.scalars(select(Worker.id)).all() == []  # no heartbeat yet

    chat.service.start()
    started = {thread.name for thread in set(threading.enumerate()) - before}
    assert {"brook-upkeep", "brook-heartbeat"} <= started
    assert len(chat.later) == 1  # the admission's probe, handed to `spawn`
    with chat.sessions() as session:
        assert session.scalars(select(Worker.id)).all() == [chat.service.worker]
    chat.service.close()
    assert chat.model.closed


def test_a_turn_is_stored_and_its_answer_generated_inline(
        make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()
    conversation = chat.conversation()
    user, answer = chat.send(conversation, "  Hi,   how are you?  ")

    assert (user.role, user.content, user.position) == ("user", "  Hi,   how are you?  ", 0)
    assert (answer.role, answer.position, answer.model) == ("assistant", 1, "scripted-1")
    stored = chat.message(answer.id)
    assert (stored.status, stored.content) == ("complete", "Hello there, friend.")
    assert (stored.prompt_tokens, stored.completion_tokens) == (21, 5)
    assert (stored.error, stored.lease_until) == (None, None)
    assert chat.model.prompts == [[{"role": "system", "content": SYSTEM},
                                   {"role": "user", "content": "  Hi,   how are you?  "}]]
    with chat.sessions() as session:
        assert session.get_one(Conversation, conversation).title == "Hi, how are you?"
    assert len(chat.service.bus.live) == 0  # ended: readers are served from the database

    events = chat.events(answer.id)
    assert [e["event"] for e in events] == ["start", "message", "end"]
    assert events[1]["data"] == {"text": "Hello there, friend."}
    assert events[2]["data"] == {"status": "complete",
                                 "usage": {"prompt_tokens": 21, "completion_tokens": 5}}
    assert events[2]["id"] == str(len("Hello there, friend."))


def test_the_model_gets_the_history_and_the_next_turn_follows_it(
        make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()
    conversation = chat.conversation()
    chat.send(conversation, "one")
    _, second = chat.send(conversation, "two")
    assert second.position == 3
    assert chat.model.prompts[-1] == [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "one"},
        {"role": "assistant", "content": "Hello there, friend."},
        {"role": "user", "content": "two"}]


def test_the_oldest_turns_are_left_out_of_the_prompt_beyond_the_budget(
        make_chat: Callable[..., Chat]) -> None:
    counter = TokenCounter(None)  # the service's counter: an estimate, the same every time
    questions = [f"question {i}: " + "words " * 10 for i in range(3)]
    reply = "".join(REPLY)
    system: ChatMessage = {"role": "system", "content": SYSTEM}
    newest: list[ChatMessage] = [{"role": "user", "content": questions[1]},
                                 {"role": "assistant", "content": reply},
                                 {"role": "user", "content": questions[2]}]
    # Room for the system prompt, the reply's priming and the two newest turns, not one more.
    budget = 3 + sum(counter.count_message(m) for m in (system, *newest))
    chat = make_chat(PROMPT_TOKEN_BUDGET=str(budget))
    conversation = chat.conversation()
    for question in questions:
        chat.send(conversation, question)
    assert chat.model.prompts[-1] == [system, *newest]

    roomy = make_chat(PROMPT_TOKEN_BUDGET=str(budget + counter.count_message(
        {"role": "assistant", "content": reply}) + counter.count_message(
        {"role": "user", "content": questions[0]})))
    conversation = roomy.conversation()
    for question in questions:
        roomy.send(conversation, question)
    assert len(roomy.model.prompts[-1]) == 6  # the system prompt and every turn


def test_stop_mid_answer_keeps_the_text_so_far(make_chat: Callable[..., Chat]) -> None:
    chat: Chat

    def stop_before_third_token(i: int) -> None:
        if i == 2:
            (live,) = chat.service.bus.live.answers()
            chat.service.stop(live.message_id)

    chat = make_chat(ScriptedModel(before=stop_before_third_token))
    _, answer = chat.send(chat.conversation(), "Tell me a story")
    stored = chat.message(answer.id)
    assert (stored.status, stored.content, stored.error) == ("stopped", "Hello there", None)
    assert (stored.prompt_tokens, stored.completion_tokens) == (None, None)
    assert [(e["event"], e["data"]) for e in chat.events(answer.id)][1:] == [
        ("message", {"text": "Hello there"}), ("end", {"status": "stopped", "usage": None})]
    chat.service.stop(answer.id)  # stopping an ended answer changes nothing
    assert chat.message(answer.id).status == "stopped"


def test_stop_before_generation_starts_stores_an_empty_stopped_answer(
        make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(inline=False)
    _, answer = chat.send(chat.conversation(), "hello")
    assert chat.message(answer.id).status == "streaming"
    chat.service.stop(answer.id)
    chat.run_later()
    stored = chat.message(answer.id)
    assert (stored.status, stored.content) == ("stopped", "")


@pytest.mark.parametrize(("failure", "error"), [
    (ProviderError("rate_limited", "The model is busy; try again shortly."),
     {"code": "rate_limited", "message": "The model is busy; try again shortly."}),
    (RuntimeError("upstream said something private"),
     {"code": "internal_error", "message": "Something went wrong while writing this answer."}),
], ids=["provider-error", "unexpected"])
def test_a_failing_model_ends_the_answer_as_an_error_with_the_text_so_far(
        make_chat: Callable[..., Chat], failure: Exception, error: dict[str, str]) -> None:
    chat = make_chat(ScriptedModel(fail=failure, fail_at=2))
    _, answer = chat.send(chat.conversation(), "hello")
    stored = chat.message(answer.id)
    assert (stored.status, stored.content, stored.error) == ("error", "Hello there", error)
    events = chat.events(answer.id)
    assert [e["event"] for e in events] == ["start", "message", "error", "end"]
    assert events[2]["data"] == error
    assert events[3]["data"] == {"status": "error", "usage": None}


def test_refusals_store_nothing(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(inline=False)
    mine = chat.conversation()
    with pytest.raises(NotFound):
        chat.send(mine, "hello", owner="mallory")
    assert chat.count(mine) == 0

    _, answer = chat.send(mine, "first")
    with pytest.raises(Busy):  # an answer is streaming in this conversation
        chat.send(mine, "second")
    with pytest.raises(Busy):
        chat.regenerate(answer.id)
    assert chat.count(mine) == 2
    chat.run_later()
    _, last = chat.send(mine, "second")
    chat.run_later()
    with pytest.raises(NotLast):
        chat.regenerate(answer.id)
    again = chat.regenerate(last.id)
    chat.run_later()
    assert (again.position, chat.message(again.id).status) == (3, "complete")
    assert chat.count(mine) == 4


def test_edit_replaces_every_later_turn(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()
    conversation = chat.conversation()
    first, _ = chat.send(conversation, "first")
    chat.send(conversation, "second")
    user, answer = chat.edit(first.id, "first, again")
    assert (user.content, answer.position) == ("first, again", 1)
    assert chat.count(conversation) == 2
    assert chat.model.prompts[-1][1:] == [{"role": "user", "content": "first, again"}]
    assert chat.message(answer.id).status == "complete"


def test_a_worker_at_capacity_refuses_new_answers_until_one_ends(
        make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(inline=False, MAX_ANSWERS_PER_WORKER="1")
    busy, other = chat.conversation(), chat.conversation()
    user, answer = chat.send(busy, "first")  # live until its generation runs
    with pytest.raises(Overloaded) as refused:
        chat.send(other, "hello")
    assert refused.value.retry_after == 2
    with pytest.raises(Overloaded):
        chat.service.admit()
    assert chat.count(other) == 0
    assert chat.service.admission.reserved == 0

    chat.run_later()
    assert chat.message(answer.id).status == "complete"
    chat.service.admit()
    _, next_answer = chat.send(other, "hello")
    with pytest.raises(Overloaded):  # regenerating and editing take a place too
        chat.regenerate(answer.id)
    with pytest.raises(Overloaded):
        chat.edit(user.id, "again")
    chat.run_later()
    assert chat.message(next_answer.id).status == "complete"


def test_a_draining_worker_takes_nothing_new_and_interrupts_what_it_writes(
        make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(inline=False)
    conversation = chat.conversation()
    _, answer = chat.send(conversation, "hello")
    chat.service.drain(0)
    assert chat.message(answer.id).status == "interrupted"
    chat.run_later()  # its generation stops at once: the ending stands
    assert chat.message(answer.id).status == "interrupted"
    with pytest.raises(Draining):
        chat.service.admit()
    with pytest.raises(Draining):
        chat.send(conversation, "again")
    assert chat.count(conversation) == 2


def test_flush_writes_the_text_so_far_while_the_answer_streams(
        make_chat: Callable[..., Chat]) -> None:
    chat: Chat
    seen: list[tuple[str, str]] = []

    def flush_before_fourth_token(i: int) -> None:
        if i == 3:
            (live,) = chat.service.bus.live.answers()
            chat.service.writer.flush()
            stored = chat.message(live.message_id)
            seen.append((stored.status, stored.content))

    chat = make_chat(ScriptedModel(before=flush_before_fourth_token))
    _, answer = chat.send(chat.conversation(), "hello")
    assert seen == [("streaming", "Hello there,")]
    assert chat.message(answer.id).content == "Hello there, friend."


def test_the_sweep_interrupts_answers_whose_writer_is_gone_and_keeps_its_text(
        make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(inline=False)
    orphaned, ours = chat.conversation(), chat.conversation()
    _, lost = chat.send(orphaned, "hello")
    _, live = chat.send(ours, "hello")
    # The first answer's writer "died": its generation never runs, this bus forgets it.
    chat.later.pop(0)
    lost_live = chat.service.bus.get(lost.id)
    assert lost_live is not None
    chat.service.bus.published(lost_live)
    past = utcnow() - timedelta(seconds=1)
    with chat.sessions.begin() as session:  # both past their lease; the lost one half written
        session.execute(update(Message).where(Message.id == lost.id)
                        .values(content="Half an ans", worker="elsewhere:1:gone"))
        session.execute(update(Message).where(Message.id.in_([lost.id, live.id]))
                        .values(lease_until=past))

    assert chat.service.sweep() == 1
    stored = chat.message(lost.id)
    assert (stored.status, stored.content) == ("interrupted", "Half an ans")
    assert chat.message(live.id).status == "streaming"  # being written here: not an orphan
    assert chat.service.sweep() == 0


def test_the_sweep_leaves_an_answer_alone_between_its_commit_and_going_live(
        make_chat: Callable[..., Chat]) -> None:
    """Under load the request's thread may wait longer than the start's grace between
    storing the turn and making the answer live; a sweep of this process that runs in that
    gap (here: right after the commit, the grace already over) must not close it."""
    chat = make_chat(STREAM_LEASE_SECONDS="0.01")
    conversation_id = chat.conversation()
    swept: list[int] = []

    def sweep_now(session: Session) -> None:
        with chat.sessions.begin() as other:
            other.execute(update(Message).where(Message.status == "streaming")
                          .values(lease_until=utcnow() - timedelta(seconds=1)))
        swept.append(chat.service.sweep())

    with chat.sessions() as session:
        event.listen(session, "after_commit", sweep_now)
        _, answer = chat.service.send(session, conversation_id, "alice", "hello")
    assert swept == [0]
    stored = chat.message(answer.id)
    assert (stored.status, stored.content) == ("complete", "".join(REPLY))
    assert chat.service.starting == set()


def test_a_turn_that_fails_to_store_is_not_left_starting(
        make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(inline=False)
    conversation_id = chat.conversation()
    chat.send(conversation_id, "hello")
    with pytest.raises(Busy):
        chat.send(conversation_id, "again")
    with pytest.raises(NotFound):
        chat.send(uuid.uuid4(), "nowhere")
    assert chat.service.starting == set()


def test_the_in_process_bus_sends_the_latest_progress_until_the_text() -> None:
    """The local model's download, as readers of this process's bus see it: the latest
    report when they come (also resuming at 0), each new one as it comes, none after text."""
    bus = LocalBus(0.0, 5.0)
    answer = bus.open(uuid.uuid4(), "m")
    for done in (1, 2):
        answer.set_progress({"phase": "download", "done": done})
    reader = bus.read(answer.message_id, None)
    resumed = bus.read(answer.message_id, 0)
    assert reader is not None
    assert resumed is not None
    assert [e["event"] for e in sse.parse(next(reader))] == ["start"]
    assert sse.parse(next(reader))[0]["data"] == {"phase": "download", "done": 2}
    assert sse.parse(next(resumed)) == [
        {"id": "0", "event": "progress", "data": {"phase": "download", "done": 2}}]
    answer.set_progress({"phase": "load", "done": 2})
    assert sse.parse(next(reader))[0]["data"]["phase"] == "load"
    answer.append("Hi")
    answer.set_progress({"phase": "download", "done": 3})  # after text: dropped
    answer.finish("complete", None, None)
    rest = sse.parse("".join(reader))
    assert [e["event"] for e in rest] == ["message", "end"]
    assert [e["event"] for e in sse.parse("".join(resumed))] == ["message", "end"]
    late = bus.read(answer.message_id, None)
    assert late is not None
    assert [e["event"] for e in sse.parse("".join(late))] == ["start", "message", "end"]
