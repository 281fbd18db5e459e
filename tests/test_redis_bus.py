"""The Redis bus against real redis-server processes: a single Redis and a three-node Redis
Cluster. One `RedisBus` writes, a second one (standing in for another process) reads."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from brook import sse
from brook.chat.bus import BadOffset, Events
from brook.chat.live import LiveAnswer
from brook.chat.redis_bus import RedisBus
from brook.chat.redis_keys import BUCKETS, bucket, key

from .conftest import wait_until
from .redis_servers import RedisCluster, RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture

pytestmark = pytest.mark.redis  # every test starts redis-server (`target`, or by hand)

WAIT = 20.0  # seconds any wait below may take before the test fails


@dataclass
class Target:
    """A Redis to test against: its URL and a plain client of our own."""

    url: str
    kind: str
    client: Any  # redis.Redis or redis.cluster.RedisCluster
    ports: list[int]


@pytest.fixture(params=["single", "cluster"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "single":
        server = RedisServer(tmp_path)
        try:
            server.start()
            yield Target(server.url, "single", server.client(), [server.port])
        finally:
            server.stop()
    else:
        cluster: RedisCluster = request.getfixturevalue("shared_cluster")
        for port in cluster.ports:
            cluster.node(port).flushall()
        yield Target(cluster.url, "cluster", cluster.client(), cluster.ports)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One three-node cluster for this module's tests (it takes seconds to form)."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def buses() -> Iterator[Callable[..., RedisBus]]:
    made: list[RedisBus] = []

    def make(url: str, **options: Any) -> RedisBus:
        keepalive = options.pop("keepalive", 0.5)
        made.append(RedisBus(url, 0.025, keepalive, 60, **options))
        return made[-1]

    yield make
    for bus in made:
        bus.close()


class Reader:
    """Drains a bus's events on a thread of its own, as a streaming response would."""

    def __init__(self, events: Callable[[], Events | None]) -> None:
        self._make = events
        self.chunks: list[str] = []
        self.rest: int | None = None
        self.none = False  # read() answered None: the database serves it
        self.done = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            events = self._make()
            if events is None:
                self.none = True
                return
            while True:
                chunk = next(events)
                with self._cond:
                    self.chunks.append(chunk)
                    self._cond.notify_all()
        except StopIteration as stop:
            self.rest = stop.value
        except BaseException as error:
            self.error = error
        finally:
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def wait(self, predicate: Callable[[Reader], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def wait_for_text(self, text: str) -> bool:
        return self.wait(lambda r: r.text == text)

    def wait_for_keepalives(self, count: int) -> bool:
        """Whether `count` keep-alives came (False if the reader ended first)."""
        return self.wait(lambda r: r.keepalives >= count or r.done) and not self.done

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the reader never ended"
        assert self.error is None, self.error

    @property
    def events(self) -> list[dict[str, Any]]:
        return sse.parse("".join(self.chunks))

    @property
    def text(self) -> str:
        return "".join(e["data"]["text"] for e in self.events if e["event"] == "message")

    @property
    def keepalives(self) -> int:
        return self.chunks.count(sse.KEEPALIVE)

    @property
    def end(self) -> dict[str, Any] | None:
        events = self.events
        return events[-1] if events and events[-1]["event"] == "end" else None


def reading(bus: RedisBus, message_id: uuid.UUID, after: int | None
            ) -> Callable[[], Events | None]:
    return lambda: bus.read(message_id, after)


def drain(events: Events | None) -> tuple[list[dict[str, Any]], int | None]:
    """All the events of an answer that has ended, and the generator's return value."""
    assert events is not None
    chunks = []
    while True:
        try:
            chunks.append(next(events))
        except StopIteration as stop:
            return sse.parse("".join(chunks)), stop.value


def published(client: Any, message_id: uuid.UUID) -> int:
    """How far the answer's stream reaches (its top entry's offset), or -1."""
    last = client.xrevrange(key(message_id), count=1)
    return int(last[0][0].split("-")[0]) if last else -1


def write(answer: LiveAnswer, client: Any, text: str) -> None:
    """Append `text` and wait until it is in Redis."""
    answer.append(text)
    wait_until(lambda: published(client, answer.message_id) >= answer.length, "publishing")


def wait_started(client: Any, answers: list[LiveAnswer]) -> None:
    wait_until(lambda: all(published(client, a.message_id) >= 0 for a in answers),
               "the answers' streams")


def connections(port: int, name: str) -> int:
    node = redis.Redis(port=port, decode_responses=True)
    try:
        return sum(1 for c in node.client_list() if c.get("name") == name)
    finally:
        node.close()


def ids_in_every_bucket(per_bucket: int) -> list[uuid.UUID]:
    found: dict[int, list[uuid.UUID]] = {b: [] for b in range(BUCKETS)}
    while any(len(ids) < per_bucket for ids in found.values()):
        message_id = uuid.uuid4()
        if len(found[bucket(message_id)]) < per_bucket:
            found[bucket(message_id)].append(message_id)
    return [m for ids in found.values() for m in ids]


# -- many readers, few connections ---------------------------------------------------------


def test_many_readers_share_a_bounded_number_of_connections(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    writer = buses(target.url)
    readers_bus = buses(target.url, max_connections=10, client_name="brook-readers")
    answers = [writer.open(m, "fake") for m in ids_in_every_bucket(1) + ids_in_every_bucket(1)]
    wait_started(target.client, answers)
    readers = [Reader(reading(readers_bus, answer.message_id, None))
               for answer in answers for _ in range(8)]  # 256 readers
    for reader in readers:
        assert reader.wait(lambda r: bool(r.events)), "no start event"
    most = 0
    if target.kind == "single":
        wait_until(lambda: sum(len(loop.feeds) for loop in readers_bus.loops._loops.values())
                   == len(answers), "every answer followed")
        target.client.config_resetstat()
    for round_ in range(30):
        for i, answer in enumerate(answers):
            answer.append(f"<{i}.{round_}> ")
        time.sleep(0.005)
        if round_ % 10 == 0:
            most = max(most, *(connections(port, "brook-readers") for port in target.ports))
    for answer in answers:
        answer.finish("complete", {"tokens": 30}, None)
    for reader in readers:
        reader.join()
    most = max(most, *(connections(port, "brook-readers") for port in target.ports))
    assert 0 < most <= 10
    for answer, group in zip(answers, (readers[i:i + 8] for i in range(0, len(readers), 8)),
                             strict=True):
        for reader in group:
            assert reader.rest is None
            assert reader.text == answer.text()
            assert reader.end is not None
            assert reader.end["data"] == {"status": "complete", "usage": {"tokens": 30}}
            assert reader.end["id"] == str(answer.length)
    if target.kind == "single":
        # One XREAD carries a window's entries for every answer.
        xreads = int(target.client.info("commandstats")["cmdstat_xread"]["calls"])
        entries = sum(target.client.xlen(key(a.message_id)) for a in answers)
        assert xreads * 5 < entries


def test_a_reader_attaching_while_the_loop_is_blocked_is_served_at_once(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    writer = buses(target.url)
    # Keep-alives and the loop's blocking read last 30 s: only a wake-up serves it sooner.
    readers_bus = buses(target.url, keepalive=30.0, block=30.0)
    ids = ids_in_every_bucket(2)
    busy = writer.open(ids[0], "fake")
    write(busy, target.client, "already ")
    first = Reader(lambda: readers_bus.read(busy.message_id, None))
    assert first.wait(lambda r: r.text == "already ")
    loop = readers_bus.loops.loop(key(busy.message_id))
    wait_until(lambda: key(busy.message_id) in loop.feeds and loop._blocked, "a blocked loop")
    late = writer.open(ids[1], "fake")  # the same bucket: the same loop
    wait_until(lambda: published(target.client, late.message_id) >= 0, "start")
    second = Reader(lambda: readers_bus.read(late.message_id, None))
    assert second.wait(lambda r: bool(r.events))
    late.append("first")
    assert second.wait(lambda r: r.text == "first", timeout=10), "the new reader was not woken"
    late.append(" second")
    late.finish("complete", None, None)
    busy.finish("complete", None, None)
    second.join()
    first.join()
    assert second.text == "first second"
    assert [e["event"] for e in second.events] == ["start", "message", "message", "end"]


# -- offsets -----------------------------------------------------------------------------------


def test_resume_from_every_offset(target: Target, buses: Callable[..., RedisBus]) -> None:
    writer, reader_bus = buses(target.url), buses(target.url)
    answer = writer.open(uuid.uuid4(), "fake")
    for piece in ("Hello", ", ", "wörld", "! ", "Ünïcode ", "and more."):
        write(answer, target.client, piece)
    # Readers of the live answer, from every offset so far.
    live = [Reader(reading(reader_bus, answer.message_id, n))
            for n in range(answer.length + 1)]
    fresh = Reader(lambda: reader_bus.read(answer.message_id, None))
    for reader in [*live, fresh]:
        assert reader.wait(lambda r: len(r.chunks) > 0 or r.done)
    answer.append(" The tail.")
    answer.finish("complete", None, None)
    full = answer.text()
    for n, reader in enumerate(live):
        reader.join()
        assert (reader.text, reader.rest) == (full[n:], None)
        assert reader.end is not None
        assert reader.end["id"] == str(len(full))
    fresh.join()
    assert fresh.events[0]["event"] == "start"
    assert fresh.events[0]["data"]["model"] == "fake"
    assert fresh.text == full
    # And from every offset of the finished answer.
    for n in range(len(full) + 1):
        events, rest = drain(reader_bus.read(answer.message_id, n))
        assert rest is None
        assert "".join(e["data"]["text"] for e in events if e["event"] == "message") == full[n:]
        assert events[-1]["event"] == "end"
        assert events[-1]["id"] == str(len(full))
        assert all(e["event"] != "start" for e in events)


def test_a_stream_exists_as_soon_as_its_answer_is_opened(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    """The request that starts an answer answers 202 after `open`, and its reader may come to
    another instance at once: that instance must find the stream (and follow it through its
    reader loop), not take the answer for one Redis does not carry."""
    writer, reader_bus = buses(target.url), buses(target.url)
    writer.publisher.close()  # only `open` itself may publish here
    answer = writer.open(uuid.uuid4(), "fake")
    assert target.client.xrange(key(answer.message_id)) == [("0-1", {"m": "fake"})]
    reader = Reader(lambda: reader_bus.read(answer.message_id, None))
    assert reader.wait(lambda r: len(r.chunks) > 0)
    assert not reader.none
    assert reader.events[0]["event"] == "start"


def test_an_offset_past_a_complete_answer_is_refused(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    writer, reader_bus = buses(target.url), buses(target.url)
    answer = writer.open(uuid.uuid4(), None)
    answer.append("done")
    answer.finish("complete", None, None)
    wait_until(lambda: published(target.client, answer.message_id) == 4, "the end")
    with pytest.raises(BadOffset):
        reader_bus.read(answer.message_id, 5)
    events, _rest = drain(reader_bus.read(answer.message_id, 4))
    assert [(e["event"], e["id"]) for e in events] == [("end", "4")]
    assert reader_bus.read(uuid.uuid4(), None) is None  # not on this bus: the database's


def test_a_reader_past_an_interrupted_answer_gets_where_it_now_ends(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    writer, reader_bus, sweeper = buses(target.url), buses(target.url), buses(target.url)
    answer = writer.open(uuid.uuid4(), None)
    write(answer, target.client, "hello")
    # A reader that had read further from the writer's memory (on its instance) waits.
    ahead = Reader(lambda: reader_bus.read(answer.message_id, 8))
    assert ahead.wait(lambda r: r.keepalives >= 1)
    assert not ahead.done
    assert ahead.events == []
    # The writer dies; the sweep ends the answer with what survived.
    sweeper.publish_end(answer.message_id, "interrupted", 5)
    ahead.join()
    assert ahead.rest is None
    assert [(e["event"], e["id"], e["data"]["status"]) for e in ahead.events] == [
        ("end", "5", "interrupted")]
    # One who comes later gets only the end too, never BadOffset.
    events, rest = drain(reader_bus.read(answer.message_id, 8))
    assert rest is None
    assert [(e["event"], e["id"], e["data"]["status"]) for e in events] == [
        ("end", "5", "interrupted")]


def test_a_reader_ahead_of_the_stream_waits_for_the_text(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    writer, reader_bus = buses(target.url), buses(target.url)
    answer = writer.open(uuid.uuid4(), None)
    write(answer, target.client, "hello")
    ahead = Reader(lambda: reader_bus.read(answer.message_id, 8))
    assert ahead.wait(lambda r: r.keepalives >= 1)
    write(answer, target.client, " wo")
    write(answer, target.client, "rld!")
    answer.finish("complete", None, None)
    ahead.join()
    assert (ahead.text, ahead.rest) == ("rld!", None)
    assert ahead.end is not None
    assert ahead.end["id"] == "12"


# -- Redis going away ------------------------------------------------------------------------


def test_readers_wait_through_a_redis_restart(redis_server: RedisServer,
                                              buses: Callable[..., RedisBus]) -> None:
    writer, reader_bus = buses(redis_server.url), buses(redis_server.url, keepalive=0.1, block=0.5)
    client = redis_server.client()
    answer = writer.open(uuid.uuid4(), "fake")
    write(answer, client, "before ")
    offsets: list[int | None] = [None, 0, 3, 7]
    readers = [Reader(reading(reader_bus, answer.message_id, n)) for n in offsets]
    for reader, n in zip(readers, offsets, strict=True):
        assert reader.wait_for_text("before "[n or 0:])
        assert reader.wait_for_keepalives(1)  # attached, and waiting
    redis_server.kill()
    answer.append("during ")  # waits in the writer's memory
    for reader in readers:
        assert reader.wait_for_keepalives(reader.keepalives + 3)
        assert not reader.done, "a reader ended while Redis was away"
    assert reader_bus.read(uuid.uuid4(), None) is None  # Redis away at attach: the database
    redis_server.start()
    answer.append("after")
    answer.finish("complete", None, None)
    full = answer.text()
    for reader, n in zip(readers, offsets, strict=True):
        reader.join()
        if reader.rest is None:  # the stream came back in time and nothing was lost
            assert reader.text == full[n or 0:]
            assert reader.end is not None
            assert reader.end["data"]["status"] == "complete"
        else:  # the stream was gone: the database serves the rest from there
            assert reader.end is None
            assert reader.text == full[n or 0:reader.rest]
            assert reader.rest == len("before ")
    # What was written while Redis was away went out when it came back.
    wait_until(lambda: published(client, answer.message_id) == len(full), "the end")
    assert writer.recover(answer.message_id) == (7, "during after", 0)


def test_a_stream_lost_with_redis_hands_over_to_the_database(
        redis_server: RedisServer, buses: Callable[..., RedisBus]) -> None:
    writer, reader_bus = buses(redis_server.url), buses(redis_server.url, keepalive=0.1, block=0.5)
    client = redis_server.client()
    answer = writer.open(uuid.uuid4(), "fake")
    write(answer, client, "kept in the database ")
    reader = Reader(lambda: reader_bus.read(answer.message_id, 5))
    assert reader.wait(lambda r: r.text == "in the database ")
    redis_server.restart()  # empty: the stream is gone, and the writer has nothing new to send
    reader.join()
    assert reader.rest == len("kept in the database ")
    assert reader.end is None
    # The writer goes on; the new stream lacks its beginning.
    write(answer, client, "and more")
    assert reader_bus.read(answer.message_id, None) is None
    assert reader_bus.read(answer.message_id, 3) is None
    answer.finish("complete", None, None)
    events, rest = drain(reader_bus.read(answer.message_id, len("kept in the database ")))
    assert rest is None
    assert [e["event"] for e in events] == ["message", "end"]
    assert events[0]["data"]["text"] == "and more"


def test_a_gap_or_a_vanished_stream_returns_the_offset(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    reader_bus = buses(target.url, keepalive=0.1, block=0.3)
    gap, gone = uuid.uuid4(), uuid.uuid4()
    for message_id in (gap, gone):
        target.client.xadd(key(message_id), {"m": "fake"}, id="0-1")
        target.client.xadd(key(message_id), {"t": "hello"}, id="5-1")
    readers = [Reader(reading(reader_bus, m, None)) for m in (gap, gone)]
    for reader in readers:
        assert reader.wait(lambda r: r.text == "hello")
    target.client.xadd(key(gap), {"t": "abc"}, id="12-1")  # characters 5 to 9 were lost
    target.client.delete(key(gone))
    for reader in readers:
        reader.join()
        assert (reader.text, reader.rest, reader.end) == ("hello", 5, None)


def test_a_bus_started_before_redis_connects_once_it_is_there(
        tmp_path: Path, buses: Callable[..., RedisBus]) -> None:
    server = RedisServer(tmp_path)  # not started yet
    try:
        writer, reader_bus = buses(server.url), buses(server.url)
        answer = writer.open(uuid.uuid4(), "fake")
        answer.append("waited ")  # kept until Redis is there
        assert reader_bus.read(answer.message_id, None) is None  # the database serves it
        server.start()
        write(answer, server.client(), "for Redis")
        reader = Reader(reading(reader_bus, answer.message_id, None))
        assert reader.wait_for_text("waited for Redis")
        answer.finish("complete", None, None)
        reader.join()
        assert reader.rest is None
        assert reader.events[0]["event"] == "start"
    finally:
        server.stop()


def test_publish_end_and_request_stop_never_raise_while_redis_is_away(
        redis_server: RedisServer, buses: Callable[..., RedisBus]) -> None:
    bus = buses(redis_server.url)
    answer = bus.open(uuid.uuid4(), None)
    write(answer, redis_server.client(), "x")
    redis_server.kill()
    bus.publish_end(answer.message_id, "interrupted", 1)
    bus.request_stop(answer.message_id)
    with pytest.raises(redis.RedisError):
        bus.recover(answer.message_id)  # the sweep tries again later


# -- Stop, recover, publish_end -----------------------------------------------------------------


def test_stop_reaches_the_writing_instance(target: Target,
                                           buses: Callable[..., RedisBus]) -> None:
    writer, other = buses(target.url), buses(target.url)
    stopped: list[uuid.UUID] = []
    got = threading.Event()

    def stop_here(message_id: uuid.UUID) -> None:
        stopped.append(message_id)
        got.set()

    writer.on_stop(stop_here)
    answers = [writer.open(m, None) for m in ids_in_every_bucket(1)[:4]]
    assert writer.stop_listening.wait(WAIT)
    other.request_stop(uuid.uuid4())  # not generated anywhere: ignored
    other.request_stop(answers[2].message_id)
    assert got.wait(WAIT)
    assert stopped == [answers[2].message_id]


def test_recover_and_publish_end(target: Target, buses: Callable[..., RedisBus]) -> None:
    writer, sweeper, reader_bus = buses(target.url), buses(target.url), buses(target.url)
    assert sweeper.recover(uuid.uuid4()) is None
    answer = writer.open(uuid.uuid4(), "fake")
    write(answer, target.client, "hello ")
    write(answer, target.client, "world")
    assert sweeper.recover(answer.message_id) == (0, "hello world", 0)
    reader = Reader(lambda: reader_bus.read(answer.message_id, None))
    assert reader.wait(lambda r: r.text == "hello world")
    # The writer died: the sweep stored the text and ends the stream for its readers.
    sweeper.publish_end(answer.message_id, "interrupted", 11)
    reader.join()
    assert reader.rest is None
    assert reader.text == "hello world"
    assert reader.end is not None
    assert (reader.end["id"], reader.end["data"]["status"]) == ("11", "interrupted")
    assert 0 < target.client.ttl(key(answer.message_id)) <= 60
    length = target.client.xlen(key(answer.message_id))
    sweeper.publish_end(answer.message_id, "interrupted", 11)  # already ended: nothing
    assert target.client.xlen(key(answer.message_id)) == length
    missing = uuid.uuid4()
    sweeper.publish_end(missing, "interrupted", 3)  # no stream: none is made
    assert not target.client.exists(key(missing))


def test_recover_a_stream_that_lost_entries(target: Target,
                                            buses: Callable[..., RedisBus]) -> None:
    bus = buses(target.url)
    message_id = uuid.uuid4()
    stream = key(message_id)
    target.client.xadd(stream, {"t": "world"}, id="11-1")  # the beginning was lost
    target.client.xadd(stream, {"t": "abc"}, id="14-1")
    assert bus.recover(message_id) == (6, "worldabc", 0)
    target.client.xadd(stream, {"t": "xyz"}, id="20-1")  # 14 to 17 were lost too
    assert bus.recover(message_id) == (17, "xyz", 0)


def has_text(reader: Reader, expected: str) -> bool:
    return reader.text == expected


def test_text_sent_again_after_a_lost_reply_is_read_and_recovered_once(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    """A pipeline whose reply was lost is sent again from where the writer knew it had got
    to, with whatever came since: the entries overlap, and nobody reads the overlap twice."""
    bus = buses(target.url)
    message_id = uuid.uuid4()
    stream = key(message_id)
    target.client.xadd(stream, {"m": ""}, id="0-1")
    target.client.xadd(stream, {"t": "Hello"}, id="5-1")
    target.client.xadd(stream, {"t": ", w"}, id="8-1")  # applied, but its reply was lost
    target.client.xadd(stream, {"t": ", world"}, id="12-1")  # so sent again, and more
    assert bus.recover(message_id) == (0, "Hello, world", 0)
    for after in (None, 0, 3, 6, 9):
        reader = Reader(functools.partial(bus.read, message_id, after))
        expected = "Hello, world"[after or 0:]
        assert reader.wait(functools.partial(has_text, expected=expected)), reader.text


def test_publish_end_below_the_published_text_still_ends_its_readers(
        target: Target, buses: Callable[..., RedisBus], caplog: pytest.LogCaptureFixture
) -> None:
    writer, sweeper, reader_bus = buses(target.url), buses(target.url), buses(target.url)
    answer = writer.open(uuid.uuid4(), None)
    write(answer, target.client, "hello world")
    reader = Reader(lambda: reader_bus.read(answer.message_id, None))
    assert reader.wait(lambda r: r.text == "hello world")
    with caplog.at_level(logging.WARNING, logger="brook.chat.redis_bus"):
        sweeper.publish_end(answer.message_id, "interrupted", 5)
    assert "past the 5 characters stored" in caplog.text
    reader.join()
    assert reader.rest is None
    assert reader.end is not None
    assert (reader.end["id"], reader.end["data"]["status"]) == ("5", "interrupted")


def test_entries_refused_after_another_instance_ended_the_answer_are_dropped_quietly(
        target: Target, buses: Callable[..., RedisBus], caplog: pytest.LogCaptureFixture
) -> None:
    writer, sweeper = buses(target.url), buses(target.url)
    answer = writer.open(uuid.uuid4(), None)
    write(answer, target.client, "hello")
    sweeper.publish_end(answer.message_id, "interrupted", 5)  # it was thought dead
    with caplog.at_level(logging.DEBUG, logger="brook.chat"):
        answer.append(" more")
        answer.finish("complete", None, None)
        assert writer.publisher.flush()
    refused = [r for r in caplog.records if "ended elsewhere" in r.getMessage()]
    assert refused
    assert all(r.levelno == logging.DEBUG for r in refused)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sweeper.recover(answer.message_id) == (0, "hello", 0)


# -- clusters ----------------------------------------------------------------------------------


def test_cluster_readers_of_every_bucket_complete(
        shared_cluster: RedisCluster, buses: Callable[..., RedisBus],
        caplog: pytest.LogCaptureFixture) -> None:
    client = shared_cluster.client()
    ids = ids_in_every_bucket(3)
    nodes = {client.get_node_from_key(key(m)).name for m in ids}
    assert len(nodes) == 3  # the buckets spread over every node
    writer, reader_bus = buses(shared_cluster.url), buses(shared_cluster.url)
    answers = [writer.open(m, None) for m in ids]
    wait_started(client, answers)
    readers = [Reader(reading(reader_bus, m, None)) for m in ids for _ in range(3)]
    for reader in readers:
        assert reader.wait(lambda r: bool(r.events))
    for round_ in range(10):
        for answer in answers:
            answer.append(f"{round_} ")
        time.sleep(0.01)
    for answer in answers:
        answer.finish("complete", None, None)
    for i, reader in enumerate(readers):
        reader.join()
        assert reader.rest is None
        assert reader.text == answers[i // 3].text()
    assert reader_bus.client().cluster
    assert reader_bus.client().grouped
    assert len(reader_bus.loops._loops) == BUCKETS
    assert "CROSSSLOT" not in caplog.text


def test_a_clustered_redis_behind_one_endpoint_gets_one_bucket_per_read(
        tmp_path: Path, buses: Callable[..., RedisBus],
        caplog: pytest.LogCaptureFixture) -> None:
    """Like Azure Managed Redis's EnterpriseCluster policy: a plain client, CROSSSLOT rules."""
    node = RedisCluster(tmp_path, nodes=1)
    try:
        node.start()
        writer = buses(node.url, cluster=False)
        reader_bus = buses(node.url, cluster=False)
        answers = [writer.open(m, None) for m in ids_in_every_bucket(1)]
        wait_started(node.node(node.ports[0]), answers)
        readers = [Reader(reading(reader_bus, a.message_id, None)) for a in answers]
        for reader in readers:
            assert reader.wait(lambda r: bool(r.events))
        for answer in answers:
            answer.append("all")
            answer.append(" of it")
            answer.finish("complete", None, None)
        for reader in readers:
            reader.join()
            assert reader.text == "all of it"
            assert reader.rest is None
        assert not reader_bus.client().cluster
        assert reader_bus.client().grouped
        assert "CROSSSLOT" not in caplog.text
    finally:
        node.stop()


def progress(done: int) -> dict[str, Any]:
    return {"model": "m", "phase": "download", "waiting": False, "done": done, "total": 10,
            "files": [{"name": "model.safetensors", "done": done, "total": 10}]}


def test_progress_reaches_readers_on_another_instance_and_on_resume_until_the_text(
        target: Target, buses: Callable[..., RedisBus]) -> None:
    """The local model's download, as readers elsewhere see it: each report as it comes
    (`0-<n+1>` entries), only the latest to a reader that comes later or resumes at 0, and
    none once the answer's text has begun."""
    writer, reader_bus = buses(target.url), buses(target.url)
    answer = writer.open(uuid.uuid4(), "m")
    early = Reader(lambda: reader_bus.read(answer.message_id, None))
    assert early.wait(lambda r: len(r.events) == 1)  # start
    answer.set_progress(progress(3))
    assert early.wait(lambda r: len(r.events) == 2)
    for done in (4, 5, 6):
        answer.set_progress(progress(done))
    wait_until(lambda: any("p" in fields and json.loads(fields["p"])["done"] == 6
                           for _, fields in target.client.xrange(key(answer.message_id))),
               "the last report in Redis")
    assert early.wait(lambda r: r.events[-1]["data"].get("done") == 6)
    late = Reader(lambda: reader_bus.read(answer.message_id, None))
    resumed = Reader(lambda: reader_bus.read(answer.message_id, 0))
    assert late.wait(lambda r: len(r.events) >= 2)
    assert resumed.wait(lambda r: len(r.events) >= 1)
    assert [(e["event"], e["id"]) for e in late.events] == [("start", "0"), ("progress", "0")]
    assert late.events[1]["data"] == progress(6)
    assert [(e["event"], e["data"]) for e in resumed.events] == [("progress", progress(6))]
    dones = [e["data"]["done"] for e in early.events if e["event"] == "progress"]
    assert dones == sorted(dones)
    assert dones[0] == 3
    assert dones[-1] == 6

    write(answer, target.client, "Hello")
    answer.set_progress(progress(7))  # after text: dropped
    answer.finish("complete", None, None)
    for reader in (early, late, resumed):
        reader.join()
        assert reader.text == "Hello"
        assert reader.events[-1]["event"] == "end"
        assert all(e["data"]["done"] < 7 for e in reader.events if e["event"] == "progress")
    # A reader of the finished answer gets no progress: the text has it all.
    events, _ = drain(reader_bus.read(answer.message_id, 0))
    assert [e["event"] for e in events] == ["message", "end"]
    events, _ = drain(reader_bus.read(answer.message_id, None))
    assert [e["event"] for e in events] == ["start", "message", "end"]
