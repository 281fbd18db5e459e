"""The stream bus in one test process: coalescing, keep-alives, and two app instances that
share a database with no Redis (the database carries the stream and the Stop)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from brook import sse
from brook.models import Message, utcnow

from .conftest import (
    AppFactory,
    directive,
    new_conversation,
    read_events,
    send,
    text_of,
    wait_for_answer,
)
from .fakemodel import FakeModelServer


def test_fast_tokens_are_coalesced_and_the_first_is_not_held(
        make_app: AppFactory, serve: Any, sqlite_url: str) -> None:
    live = serve(make_app(sqlite_url, STREAM_COALESCE_MS="100"))
    with live.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "x " + directive(tokens=200, gap=0.002))
        events: list[dict[str, Any]] = []
        with client.stream("GET", sent["stream_url"]) as response:
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                *blocks, buffer = buffer.split("\n\n")
                for block in blocks:
                    for event in sse.parse(block + "\n\n"):
                        events.append(event)
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    messages = [e for e in events if e["event"] == "message"]
    assert text_of(events) == answer["content"]
    # 200 tokens over ~0.4 s in 100 ms windows: a handful of events, not 200.
    assert 2 <= len(messages) <= 15, len(messages)
    # The first token went out as soon as it came, not after a window (which would have
    # gathered some fifty).
    assert len(messages[0]["data"]["text"].split()) <= 3


@pytest.mark.slow  # a first token after 1 s
def test_idle_streams_get_keepalive_comments(make_app: AppFactory, serve: Any,
                                             sqlite_url: str) -> None:
    live = serve(make_app(sqlite_url, STREAM_KEEPALIVE_SECONDS="0.2"))
    with live.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "x " + directive(ttft=1.0, tokens=3))
        with client.stream("GET", sent["stream_url"]) as response:
            raw = "".join(response.iter_text())
    assert raw.count(": keep-alive") >= 2
    assert [e["event"] for e in sse.parse(raw)][-1] == "end"


def test_two_instances_without_redis_share_the_database(
        make_app: AppFactory, serve: Any, database_url: str, fake: FakeModelServer) -> None:
    a = serve(make_app(database_url))
    b = serve(make_app(database_url))
    with a.client() as ca, b.client() as cb:
        ca.get("/api/conversations")
        cb.cookies = ca.cookies
        conversation_id = new_conversation(ca)
        sent = send(ca, conversation_id, "slow " + directive(tokens=600, gap=0.01))
        # B follows the row as A flushes it.
        first = read_events(cb, sent["stream_url"], limit=3)
        assert first[0]["event"] == "start"
        # Stop from B: A sees the request at its next flush and stores the answer.
        response = cb.post(f"/api/messages/{sent['assistant_message']['id']}/stop", json={})
        assert response.status_code == 200
        stopped = response.json()
        assert stopped["status"] == "stopped"
        assert len(stopped["content"].split()) < 600
        for client in (ca, cb):
            events = read_events(client, sent["stream_url"])
            assert text_of(events) == stopped["content"]
            assert events[-1]["data"]["status"] == "stopped"


def test_an_expired_lease_is_swept(make_app: AppFactory, serve: Any, sqlite_url: str) -> None:
    """An answer whose process stopped renewing its lease ends `interrupted` for readers."""
    app = make_app(sqlite_url, STREAM_LEASE_SECONDS="0.6")
    live = serve(app)
    with live.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "x " + directive(tokens=2, ttft=30))
        message_id = sent["assistant_message"]["id"]
        # Make the answer look like another, dead process's: not ours, lease run out.
        chat = app.extensions["brook.chat"]
        orphan = chat.bus.get(uuid.UUID(message_id))
        chat.bus.published(orphan)
        with app.extensions["brook.sessions"].begin() as session:
            session.execute(update(Message).where(Message.id == orphan.message_id).values(
                content="kept", worker="elsewhere:1:x", lease_until=utcnow() - timedelta(1)))
        events = read_events(client, sent["stream_url"])
        assert events[-1]["data"]["status"] == "interrupted"
        assert text_of(events) == "kept"
        orphan.stop_requested.set()
