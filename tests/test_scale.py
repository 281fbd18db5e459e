"""The shape people deploy, under stress: two `brook serve` processes on a real Redis and a real
PostgreSQL, with a worker's event loop saturated, a burst beyond capacity, and a worker killed
under readers that reconnect like browsers."""

from __future__ import annotations

import functools
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, func, select

from brook import sse
from brook.models import Message

from .conftest import (
    Server,
    clients,
    cluster_env,
    directive,
    new_conversation,
    read_events,
    send,
    text_of,
    wait_for_answer,
    wait_until,
)
from .fakemodel import FakeModelServer
from .redis_servers import RedisServer

pytestmark = pytest.mark.slow  # `brook serve` processes

HOOKS = str(Path(__file__).parent / "hooks")


def test_a_saturated_worker_loses_no_answer_to_the_other_workers_sweep(
        tmp_path: Path, fake: FakeModelServer, pg_url: str, redis_server: RedisServer) -> None:
    """A's event loop runs nothing for three leases; B sweeps every third of a lease all
    along. A's heartbeat comes from an OS thread, so B never takes A for dead."""
    trigger = tmp_path / "saturate"
    env = cluster_env(fake, pg_url, redis_server.url, STREAM_LEASE_SECONDS="1")
    a = Server(tmp_path, {**env, "PYTHONPATH": HOOKS, "BROOK_TEST_SATURATE": str(trigger)},
               "a")
    b = Server(tmp_path, env, "b")
    a.start()
    b.start()
    try:
        with clients(a, b) as (ca, cb):
            sent = [send(ca, new_conversation(ca), f"q{i} " + directive(tokens=150, gap=0.02))
                    for i in range(3)]
            for turn in sent:
                assert text_of(read_events(cb, turn["stream_url"], limit=3))
            trigger.write_text("3")
            wait_until(lambda: list(tmp_path.glob("saturate.*")), "A's event loop to saturate")
            trigger.unlink()
            for turn in sent:
                events = read_events(cb, turn["stream_url"])
                answer = wait_for_answer(cb, turn["user_message"]["conversation_id"],
                                         turn["assistant_message"]["id"], timeout=30)
                assert answer["status"] == "complete", answer
                assert len(answer["content"].split()) == 150
                assert text_of(events) == answer["content"]
        assert "interrupted" not in (tmp_path / "b.log").read_text()
    finally:
        a.stop()
        b.stop()


def test_a_burst_beyond_capacity_is_refused_cleanly(
        tmp_path: Path, fake: FakeModelServer, pg_url: str, redis_server: RedisServer) -> None:
    """Two workers taking four answers each; forty messages at once. Each worker takes
    exactly four (an answer is never counted twice while it starts); the rest get `503
    overloaded` with Retry-After and store nothing; every accepted answer is whole."""
    env = cluster_env(fake, pg_url, redis_server.url, MAX_ANSWERS_PER_WORKER="4")
    a, b = Server(tmp_path, env, "a"), Server(tmp_path, env, "b")
    a.start()
    b.start()
    try:
        with clients(a, b) as (ca, cb):
            conversations = [new_conversation(ca) for _ in range(40)]
            gate = threading.Barrier(40)
            responses: list[httpx.Response] = [httpx.Response(0)] * 40

            def post(i: int) -> None:
                with httpx.Client(base_url=(a, b)[i % 2].url, cookies=ca.cookies,
                                  timeout=30) as client:
                    gate.wait()
                    responses[i] = client.post(
                        f"/api/conversations/{conversations[i]}/messages",
                        json={"content": f"q{i} " + directive(tokens=100, gap=0.1)})

            threads = [threading.Thread(target=post, args=(i,)) for i in range(40)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            accepted = [(i, r.json()) for i, r in enumerate(responses) if r.status_code == 202]
            refused = [r for r in responses if r.status_code != 202]
            # Four each: the answers take ten seconds, far longer than the posts.
            assert sorted(i % 2 for i, _ in accepted) == [0] * 4 + [1] * 4
            assert refused
            for response in refused:
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "overloaded"
                assert int(response.headers["Retry-After"]) >= 1
            engine = create_engine(pg_url)
            with engine.connect() as connection:
                stored = connection.execute(select(Message.role, func.count())
                                            .group_by(Message.role)).all()
            engine.dispose()
            assert dict(stored) == {"user": len(accepted), "assistant": len(accepted)}
            for i, turn in accepted:
                reader = (cb, ca)[i % 2]  # the other instance from the one generating
                events = read_events(reader, turn["stream_url"])
                answer = wait_for_answer(ca, conversations[i],
                                         turn["assistant_message"]["id"], timeout=30)
                assert answer["status"] == "complete"
                assert len(answer["content"].split()) == 100
                assert text_of(events) == answer["content"]
    finally:
        a.stop()
        b.stop()


class ReconnectingReader(threading.Thread):
    """Reads one answer like a browser: hangs up every so often (or is cut off), and comes
    back to either instance with Last-Event-ID, until `end`."""

    def __init__(self, servers: list[Server], cookies: httpx.Cookies, url: str,
                 seed: int) -> None:
        super().__init__()
        self.servers, self.cookies, self.url = servers, cookies, url
        self.random = random.Random(seed)
        self.received = ""
        self.end: dict[str, Any] | None = None
        self.reconnects = 0

    def run(self) -> None:
        last_id: str | None = None
        deadline = time.monotonic() + 60
        while self.end is None and time.monotonic() < deadline:
            server = self.random.choice(self.servers)
            headers = {"Last-Event-ID": last_id} if last_id else {}
            hang_up = time.monotonic() + self.random.uniform(0.1, 0.6)
            try:
                with httpx.Client(base_url=server.url, cookies=self.cookies,
                                  timeout=10) as client, \
                        client.stream("GET", self.url, headers=headers) as response:
                    assert response.status_code == 200, response.read()
                    buffer = ""
                    for chunk in response.iter_text():
                        buffer += chunk
                        *blocks, buffer = buffer.split("\n\n")
                        for block in blocks:
                            for event in sse.parse(block + "\n\n"):
                                last_id = event["id"]
                                if event["event"] == "message":
                                    self.received += event["data"]["text"]
                                elif event["event"] == "end":
                                    self.end = event
                        if self.end is not None or time.monotonic() > hang_up:
                            break
            except httpx.TransportError:
                time.sleep(0.1)  # that instance is gone: the next try picks again
            self.reconnects += 1


def test_an_answer_is_counted_once_while_it_starts(
        tmp_path: Path, fake: FakeModelServer, pg_url: str, redis_server: RedisServer) -> None:
    """A worker taking four answers, with Redis holding every write: the answers whose turns
    are stored and whose streams wait on Redis hold one place each, not two (as their own
    reservation and as live answers), so the worker takes exactly four, then refuses."""
    a = Server(tmp_path, cluster_env(fake, pg_url, redis_server.url,
                                     MAX_ANSWERS_PER_WORKER="4"), "a")
    a.start()
    engine = create_engine(pg_url)

    def stored_answers() -> int:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).where(
                Message.role == "assistant")).scalar_one()

    try:
        with httpx.Client(base_url=a.url, timeout=30) as client:
            client.get("/api/conversations")  # the owner cookie
            conversations = [new_conversation(client) for _ in range(5)]
            responses: dict[int, httpx.Response] = {}

            def post(i: int) -> None:
                with httpx.Client(base_url=a.url, cookies=client.cookies,
                                  timeout=30) as other:
                    responses[i] = other.post(
                        f"/api/conversations/{conversations[i]}/messages",
                        json={"content": f"q{i} " + directive(tokens=5)})

            def stored_or_answered(i: int) -> bool:
                return stored_answers() >= i + 1 or i in responses

            redis_server.client().execute_command("CLIENT", "PAUSE", 20000, "WRITE")
            threads: list[threading.Thread] = []
            try:
                for i in range(4):  # one at a time: each waits on Redis once stored
                    threads.append(threading.Thread(target=post, args=(i,)))
                    threads[-1].start()
                    wait_until(functools.partial(stored_or_answered, i),
                               "the answer to be stored (or refused)")
                    assert i not in responses, responses[i].text  # refused, not waiting
                post(4)
                assert responses[4].status_code == 503
                assert responses[4].json()["error"]["code"] == "overloaded"
            finally:
                redis_server.client().execute_command("CLIENT", "UNPAUSE")
            for thread in threads:
                thread.join()
            assert [responses[i].status_code for i in range(4)] == [202] * 4
            assert stored_answers() == 4
    finally:
        engine.dispose()
        a.stop()


def test_killing_one_of_two_workers_under_reconnecting_readers(
        tmp_path: Path, fake: FakeModelServer, pg_url: str, redis_server: RedisServer) -> None:
    """Every reader gets `end`, and its text, cut back to the end's id where the reader had
    read words that did not survive, equals the stored answer."""
    env = cluster_env(fake, pg_url, redis_server.url)
    a, b = Server(tmp_path, env, "a"), Server(tmp_path, env, "b")
    a.start()
    b.start()
    try:
        with clients(a, b) as (ca, _cb):
            turns = [send(ca, new_conversation(ca), f"q{i} " + directive(tokens=400, gap=0.01))
                     for i in range(20)]
            readers = [ReconnectingReader([a, b], ca.cookies, turn["stream_url"], seed)
                       for seed, turn in enumerate(turns)]
            for reader in readers:
                reader.start()
            wait_until(lambda: all(reader.received and reader.reconnects for reader in readers),
                       "every answer to be under way and read")
            a.kill()
            for reader in readers:
                reader.join(timeout=90)
            for reader, turn in zip(readers, turns, strict=True):
                assert reader.end is not None, "a reader never got its end"
                with httpx.Client(base_url=b.url, cookies=ca.cookies, timeout=20) as cb:
                    answer = wait_for_answer(cb, turn["user_message"]["conversation_id"],
                                             turn["assistant_message"]["id"], timeout=30)
                assert reader.end["data"]["status"] == answer["status"]
                assert answer["status"] in ("interrupted", "complete")
                end = int(reader.end["id"])
                assert end == len(answer["content"])
                assert reader.received[:end] == answer["content"]
            assert sum(r.reconnects for r in readers) > 40
            assert any(r.end is not None and r.end["data"]["status"] == "interrupted"
                       for r in readers)
    finally:
        a.stop()
        b.stop()


def test_a_reader_whose_redis_connection_drops_reads_on(
        cluster: tuple[Server, Server], redis_server: RedisServer) -> None:
    """Every connection to Redis is cut mid-answer (writer's and readers'): each reader's
    one response carries on, losing and repeating nothing."""
    a, b = cluster
    with clients(a, b) as (ca, cb):
        turns = [send(ca, new_conversation(ca), f"q{i} " + directive(tokens=300, gap=0.01))
                 for i in range(5)]
        texts: dict[int, str] = {}
        started = threading.Barrier(len(turns) + 1)

        def read(i: int) -> None:
            with cb.stream("GET", turns[i]["stream_url"]) as response:
                buffer, text = "", ""
                for chunk in response.iter_text():
                    buffer += chunk
                    *blocks, buffer = buffer.split("\n\n")
                    for block in blocks:
                        for event in sse.parse(block + "\n\n"):
                            if event["event"] == "message":
                                if not text:
                                    started.wait()
                                text += event["data"]["text"]
                            elif event["event"] == "end":
                                texts[i] = text
                                return

        readers = [threading.Thread(target=read, args=(i,)) for i in range(len(turns))]
        for reader in readers:
            reader.start()
        started.wait()  # every reader has text: now cut them all off Redis
        admin = redis.Redis.from_url(redis_server.url)
        killed = admin.client_kill_filter(_type="normal", skipme=True)
        admin.close()
        assert killed >= 2  # at least the writer's and the reading loop's connections
        for reader in readers:
            reader.join(timeout=60)
        for i, turn in enumerate(turns):
            answer = wait_for_answer(ca, turn["user_message"]["conversation_id"],
                                     turn["assistant_message"]["id"], timeout=30)
            assert answer["status"] == "complete"
            assert texts[i] == answer["content"]
            assert len(answer["content"].split()) == 300
