"""Several `brook serve` processes sharing a real Redis and a real PostgreSQL, under faults.

Each test runs its own redis-server (so it can kill and restart it) and two app processes on
127.0.0.1 with no affinity: any instance serves any reader.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from brook import sse
from brook.chat.redis_keys import key
from brook.database import PING_AFTER_IDLE_SECONDS

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


def test_post_on_one_read_and_stop_on_the_other(cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    with clients(a, b) as (ca, cb):
        conversation_id = new_conversation(ca)
        sent = send(ca, conversation_id, "long " + directive(tokens=600, gap=0.01))
        first = read_events(cb, sent["stream_url"], limit=15)
        assert first[0]["event"] == "start"
        assert first[0]["data"]["model"] == "fake-gpt"
        assert text_of(first)
        response = cb.post(f"/api/messages/{sent['assistant_message']['id']}/stop", json={})
        assert response.status_code == 200
        stopped = response.json()
        assert stopped["status"] == "stopped"
        assert stopped["content"].startswith(text_of(first))
        assert len(stopped["content"].split()) < 600
        for client in (cb, ca):
            events = read_events(client, sent["stream_url"])
            assert text_of(events) == stopped["content"]  # byte for byte
            assert events[-1]["data"]["status"] == "stopped"
        assert wait_for_answer(ca, conversation_id,
                               sent["assistant_message"]["id"])["content"] == stopped["content"]


def test_reader_on_another_instance_resumes_anywhere(cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    with clients(a, b) as (ca, cb):
        conversation_id = new_conversation(ca)
        sent = send(ca, conversation_id, "long " + directive(tokens=300, gap=0.01))
        received, last_id, hops = "", None, 0
        while True:
            client = (ca, cb)[hops % 2]  # no affinity: alternate instances
            headers: dict[str, str] = {"Last-Event-ID": last_id} if last_id else {}
            with client.stream("GET", sent["stream_url"], headers=headers) as response:
                deadline = time.monotonic() + 0.2  # hang up every 200 ms
                buffer, ended = "", False
                for chunk in response.iter_text():
                    buffer += chunk
                    *blocks, buffer = buffer.split("\n\n")
                    for block in blocks:
                        for event in sse.parse(block + "\n\n"):
                            if event["event"] == "message":
                                received += event["data"]["text"]
                            last_id = event["id"]
                            ended = ended or event["event"] == "end"
                    if ended or time.monotonic() > deadline:
                        break
            hops += 1
            if ended:
                break
        assert hops > 5
        answer = wait_for_answer(ca, conversation_id, sent["assistant_message"]["id"])
        assert answer["status"] == "complete"
        assert received == answer["content"]
        assert len(answer["content"].split()) == 300


def test_killed_generator_ends_interrupted_for_readers_elsewhere(
        cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    with clients(a, b) as (ca, cb):
        conversation_id = new_conversation(ca)
        sent = send(ca, conversation_id, "long " + directive(tokens=3000, gap=0.01))
        events: list[dict[str, Any]] = []
        read_events(cb, sent["stream_url"], limit=5)  # the answer is under way
        reader = threading.Thread(target=lambda: events.extend(
            read_events(cb, sent["stream_url"])))
        reader.start()
        a.kill()
        # The lease is 2 s; the reader waits on its end, never on a clock.
        reader.join(timeout=30)
        assert not reader.is_alive(), "the reader on B never got an end"
        assert events[-1]["event"] == "end"
        assert events[-1]["data"]["status"] == "interrupted"
        answer = wait_for_answer(cb, conversation_id, sent["assistant_message"]["id"])
        assert answer["status"] == "interrupted"
        assert answer["content"]
        assert text_of(events) == answer["content"]
        # Its tokens count against the owner's day, estimated where the process died: the
        # prompt rebuilt from the stored turns and the text that survived.
        assert cb.get("/api/usage").json()["tokens_today"] > len(answer["content"].split())


@pytest.mark.slow  # `brook serve` processes
def test_a_title_asked_for_by_a_killed_worker_is_given_back(
        tmp_path: Path, fake: FakeModelServer, pg_url: str, redis_server: RedisServer) -> None:
    """Killed while it asks the model for a title, a worker leaves the title `pending`; the
    other instance's sweep gives it back to the first words, so no page waits for ever."""
    env = cluster_env(fake, pg_url, redis_server.url, MODEL_TITLES="true")
    a, b = Server(tmp_path, env, "a"), Server(tmp_path, env, "b")
    a.start()
    b.start()
    fake.ttft = 60.0  # the title's request hangs; the answer's own directive does not
    # The title's request shows the model the question's first 2,000 characters: the
    # directive, after them, applies to the answer alone.
    question = "What is a brook? " + "Tell me more. " * 150 + directive(ttft=0, reply="Water.")
    try:
        with clients(a, b) as (ca, cb):
            conversation_id = new_conversation(ca)
            sent = send(ca, conversation_id, question)
            assert read_events(ca, sent["stream_url"])[-1]["data"]["status"] == "complete"

            def title_source() -> str:
                source: str = cb.get(f"/api/conversations/{conversation_id}").json()[
                    "title_source"]
                return source

            wait_until(lambda: title_source() == "pending", "the title to be asked for")
            wait_until(lambda: any("Write a short title" in str(r["body"])
                                   for r in fake.requests),
                       "the title's request to reach the model")
            a.kill()
            wait_until(lambda: title_source() == "message", "the title to be given back")
            conversation = cb.get(f"/api/conversations/{conversation_id}").json()
    finally:
        a.stop()
        b.stop()
    assert conversation["title"].startswith("What is a brook? Tell me more.")


def test_redis_restarted_mid_answer(cluster: tuple[Server, Server],
                                    redis_server: RedisServer) -> None:
    a, b = cluster
    with clients(a, b) as (ca, cb):
        conversation_id = new_conversation(ca)
        sent = send(ca, conversation_id, "long " + directive(tokens=400, gap=0.01))
        received, last_id = "", None
        read_events(cb, sent["stream_url"], limit=5)
        redis_server.stop()
        time.sleep(0.5)  # an outage of half a second: the time is the input here
        redis_server.start()
        # Wait for the writer to publish into the new, empty Redis: its stream now lacks the
        # beginning, which a reader from the start must not mistake for the whole answer.
        stream_key = key(uuid.UUID(sent["assistant_message"]["id"]))
        wait_until(lambda: redis_server.client().exists(stream_key),
                   "the writer to publish again")
        deadline = time.monotonic() + 20  # the reader's retries (it reconnects as a browser)
        while time.monotonic() < deadline:
            headers: dict[str, str] = {"Last-Event-ID": last_id} if last_id else {}
            try:
                events = read_events(cb, sent["stream_url"], headers=headers)
            except (httpx.HTTPError, AssertionError):
                time.sleep(0.2)
                continue
            received += text_of(events)
            if events:
                last_id = events[-1]["id"]
            if events and events[-1]["event"] == "end":
                break
        answer = wait_for_answer(ca, conversation_id, sent["assistant_message"]["id"])
        assert answer["status"] in ("complete", "error")
        assert received == answer["content"]
        # The cluster still works afterwards.
        again = send(ca, conversation_id, "again")
        assert text_of(read_events(cb, again["stream_url"])) == "Hello from the fake model."


@pytest.mark.slow  # `brook serve` processes
def test_sigterm_drains_then_interrupts(tmp_path: Path, fake: FakeModelServer, pg_url: str,
                                        redis_server: RedisServer) -> None:
    env = cluster_env(fake, pg_url, redis_server.url, SHUTDOWN_GRACE_SECONDS="1.5")
    a, b = Server(tmp_path, env, "a"), Server(tmp_path, env, "b")
    a.start()
    b.start()
    try:
        with clients(a, b) as (ca, cb):
            c1, c2 = new_conversation(ca), new_conversation(ca)
            short = send(ca, c1, "short " + directive(tokens=40, gap=0.02))
            long = send(ca, c2, "long " + directive(tokens=3000, gap=0.01))
            read_events(cb, long["stream_url"], limit=5)
            assert a.process is not None
            a.process.terminate()  # SIGTERM to gunicorn's master, as a platform would
            # The short answer finishes within the grace period; the long one is interrupted
            # with its text kept, and readers elsewhere get its end.
            events = read_events(cb, long["stream_url"])
            assert events[-1]["data"]["status"] == "interrupted"
            done = wait_for_answer(cb, c1, short["assistant_message"]["id"])
            assert done["status"] == "complete"
            assert len(done["content"].split()) == 40
            cut = wait_for_answer(cb, c2, long["assistant_message"]["id"])
            assert cut["status"] == "interrupted"
            assert text_of(events) == cut["content"]
            a.process.wait(timeout=30)
    finally:
        a.stop()
        b.stop()


def test_database_down_when_posting_is_503_then_recovers(
        tmp_path: Path, fake: FakeModelServer, pg_url: str, make_app: Any, serve: Any) -> None:
    """PostgreSQL behind a TCP relay the test can cut: a 503, nothing half-stored, recovery."""
    from .relay import relay_to

    with relay_to(pg_url) as (relay, url):
        live = serve(make_app(url))
        with live.client() as client:
            conversation_id = new_conversation(client)
            relay.cut()
            response = client.post(f"/api/conversations/{conversation_id}/messages",
                                   json={"content": "hello"})
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "database_unavailable"
            assert "psycopg" not in response.text
            relay.restore()
            conversation = client.get(f"/api/conversations/{conversation_id}")
            assert conversation.status_code == 200
            assert conversation.json()["messages"] == []
            sent = send(client, conversation_id, "hello again")
            answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
            assert answer["content"] == "Hello from the fake model."


def test_connections_broken_while_idle_are_replaced(
        fake: FakeModelServer, pg_url: str, make_app: Any, serve: Any) -> None:
    """PostgreSQL restarting while Brook is idle breaks its pooled connections; the next
    request after a pause still succeeds (an idle connection is checked before use)."""
    from .relay import relay_to

    with relay_to(pg_url) as (relay, url):
        live = serve(make_app(url))
        with live.client() as client:
            conversation_id = new_conversation(client)
            relay.cut()  # every pooled connection is now dead
            relay.restore()
            time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
            sent = send(client, conversation_id, "hello")
            answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
            assert answer["content"] == "Hello from the fake model."


def test_flushes_and_lease_renewals_do_not_deadlock(
        fake: FakeModelServer, pg_url: str, make_app: Any, serve: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """Flushing and renewing leases both update every live answer's row. Done at once, in
    two transactions that lock the rows in different orders, PostgreSQL aborts one of them
    as a deadlock; one thread does both, one after the other."""
    caplog.set_level(logging.WARNING, logger="brook")
    live = serve(make_app(pg_url, STREAM_LEASE_SECONDS="0.15", FLUSH_INTERVAL_MS="5",
                          FLUSH_CHARS="1"))
    with live.client() as client:
        sent = []
        for i in range(60):
            conversation_id = new_conversation(client)
            turn = send(client, conversation_id, f"q{i} " + directive(tokens=150, gap=0.01))
            sent.append((conversation_id, turn["assistant_message"]["id"]))
        for conversation_id, message_id in sent:
            answer = wait_for_answer(client, conversation_id, message_id, timeout=60)
            assert answer["status"] == "complete"
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []


@pytest.mark.slow  # `brook serve`
def test_expired_stream_is_served_from_the_database(
        tmp_path: Path, fake: FakeModelServer, pg_url: str, redis_server: RedisServer) -> None:
    env = cluster_env(fake, pg_url, redis_server.url, STREAM_EXPIRE_SECONDS="1")
    a = Server(tmp_path, env, "a")
    a.start()
    try:
        with httpx.Client(base_url=a.url, timeout=20) as client:
            conversation_id = new_conversation(client)
            sent = send(client, conversation_id, "hi " + directive(tokens=50))
            live_text = text_of(read_events(client, sent["stream_url"]))
            stream_key = key(uuid.UUID(sent["assistant_message"]["id"]))
            r = redis.Redis.from_url(redis_server.url)
            wait_until(lambda: not r.exists(stream_key), "the finished stream to expire",
                       every=0.2)
            r.close()
            events = read_events(client, sent["stream_url"], headers={"Last-Event-ID": "5"})
            assert live_text[:5] + text_of(events) == live_text
            assert events[-1]["data"]["status"] == "complete"
    finally:
        a.stop()
