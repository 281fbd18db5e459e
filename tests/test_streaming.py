"""Sending a message and streaming the answer over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from .conftest import (
    AppFactory,
    LiveServer,
    directive,
    new_conversation,
    read_events,
    send,
    text_of,
    wait_for_answer,
)
from .fakemodel import FakeModelServer

REPLY = ("# Title\n\nLine one.\nLine two with ünïcödé, emoji 🌊 and \"quotes\".\n\n"
         "```py\nx = 1\n```\n")


def test_answer_streams_and_is_stored(client: httpx.Client, fake: FakeModelServer) -> None:
    fake.reply = REPLY
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "Tell me something")
    assert sent["user_message"]["content"] == "Tell me something"
    assert sent["assistant_message"]["status"] == "streaming"
    assert sent["assistant_message"]["model"] == "fake-gpt"
    assert sent["stream_url"] == f"/api/messages/{sent['assistant_message']['id']}/stream"

    events = read_events(client, sent["stream_url"])
    assert events[0]["event"] == "start"
    assert events[0]["id"] == "0"
    assert events[-1]["event"] == "end"
    assert events[-1]["data"]["status"] == "complete"
    assert text_of(events) == REPLY
    # Every event's id is the number of characters delivered so far.
    delivered = 0
    for e in events[1:-1]:
        delivered += len(e["data"]["text"])
        assert int(e["id"]) == delivered
    assert events[-1]["id"] == str(len(REPLY))

    answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert answer["content"] == REPLY
    assert answer["status"] == "complete"
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["usage"]["prompt_tokens"] > 0


@pytest.mark.slow  # an answer paced over 3.6 s
def test_resume_with_last_event_id_loses_and_repeats_nothing(
        client: httpx.Client, fake: FakeModelServer) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "long " + directive(tokens=120, gap=0.03))
    url = sent["stream_url"]
    received = ""
    last_id: str | None = None
    hops = 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id is not None else {}
        events = read_events(client, url, headers=headers, limit=4)
        if last_id is not None:
            assert events[0]["event"] != "start"
        received += text_of(events)
        last_id = events[-1]["id"]
        hops += 1
        if events[-1]["event"] == "end":
            break
    assert hops >= 3
    answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert received == answer["content"]
    assert len(answer["content"].split()) == 120


def test_resume_with_after_query(client: httpx.Client, fake: FakeModelServer) -> None:
    fake.reply = REPLY
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "hi")
    full = text_of(read_events(client, sent["stream_url"]))
    events = read_events(client, sent["stream_url"] + "?after=7")
    assert [e["event"] for e in events][-1] == "end"
    assert "start" not in [e["event"] for e in events]
    assert full[:7] + text_of(events) == REPLY
    # The header wins over the query (a browser reconnects on the original URL).
    events = read_events(client, sent["stream_url"] + "?after=3", headers={"Last-Event-ID": "9"})
    assert text_of(events) == REPLY[9:]


def test_finished_answer_replays_in_full(client: httpx.Client, fake: FakeModelServer) -> None:
    fake.reply = REPLY
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "hi")
    wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    events = read_events(client, sent["stream_url"])
    assert [e["event"] for e in events] == ["start", "message", "end"]
    assert text_of(events) == REPLY
    assert events[-1]["data"] == {"status": "complete", "usage": events[-1]["data"]["usage"]}
    at_end = read_events(client, sent["stream_url"], headers={"Last-Event-ID": str(len(REPLY))})
    assert [e["event"] for e in at_end] == ["end"]


def test_generation_finishes_without_any_reader(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "nobody listens " + directive(tokens=40, gap=0.005))
    answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert answer["status"] == "complete"
    assert len(answer["content"].split()) == 40


def test_reader_that_hangs_up_does_not_stop_generation(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "x " + directive(tokens=60, gap=0.01))
    first = read_events(client, sent["stream_url"], limit=3)
    assert first[0]["event"] == "start"
    answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert answer["status"] == "complete"
    assert len(answer["content"].split()) == 60


def test_stop_keeps_the_partial_answer(client: httpx.Client, fake: FakeModelServer) -> None:
    hangups = fake.hangups
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "slow " + directive(tokens=500, gap=0.02))
    message_id = sent["assistant_message"]["id"]
    first = read_events(client, sent["stream_url"], limit=6)
    response = client.post(f"/api/messages/{message_id}/stop", json={})
    assert response.status_code == 200
    stopped = response.json()
    assert stopped["status"] == "stopped"
    assert text_of(first)
    assert stopped["content"].startswith(text_of(first))
    assert len(stopped["content"].split()) < 500
    # Readers get the stopped text and an end saying so, now and later.
    events = read_events(client, sent["stream_url"])
    assert text_of(events) == stopped["content"]
    assert events[-1]["data"]["status"] == "stopped"
    # And later: once the generating thread has let go of the model's stream (the fake
    # model sees it hang up), no text it still had can change what was stored.
    deadline = time.monotonic() + 30
    while fake.hangups == hangups:
        assert time.monotonic() < deadline, "the model's stream was never closed"
        time.sleep(0.01)
    again = wait_for_answer(client, conversation_id, message_id)
    assert again["content"] == stopped["content"]
    # Stopping a finished answer changes nothing.
    response = client.post(f"/api/messages/{message_id}/stop", json={})
    assert response.status_code == 200
    assert response.json()["content"] == stopped["content"]
    # The conversation takes a new message right away.
    assert send(client, conversation_id, "next")["assistant_message"]["status"] == "streaming"


def test_live_reader_sees_stop(client: httpx.Client, live: LiveServer) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "slow " + directive(tokens=400, gap=0.02))
    with live.client() as other:
        other.cookies = client.cookies
        other.post(f"/api/messages/{sent['assistant_message']['id']}/stop", json={})
    events = read_events(client, sent["stream_url"])
    assert events[-1]["data"]["status"] == "stopped"


def test_second_message_while_streaming_is_409(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "slow " + directive(tokens=200, gap=0.02))
    response = client.post(f"/api/conversations/{conversation_id}/messages",
                           json={"content": "again"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "answer_in_progress"
    messages = client.get(f"/api/conversations/{conversation_id}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "slow " + directive(tokens=200, gap=0.02)]
    client.post(f"/api/messages/{sent['assistant_message']['id']}/stop", json={})


@pytest.mark.slow  # an answer paced over 1 s
def test_answer_is_written_in_batches(make_app: AppFactory, serve: Any,
                                      database_url: str) -> None:
    app = make_app(database_url, FLUSH_INTERVAL_MS="200")
    updates: list[str] = []

    @event.listens_for(app.extensions["brook.engine"], "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE MESSAGES"):
            updates.append(statement)

    live = serve(app)
    with live.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "x " + directive(tokens=200, gap=0.005))
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert len(answer["content"].split()) == 200
    # About one second of tokens at 200 ms per batch, then the final write: far fewer than 200.
    assert 2 <= len(updates) <= 12, len(updates)


def test_invalid_resume_offsets_are_400(client: httpx.Client, fake: FakeModelServer) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "hi")
    wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    for headers, query in [({"Last-Event-ID": "abc"}, ""), ({}, "?after=-1"),
                           ({}, "?after=1.5"), ({}, "?after=100000")]:
        response = client.get(sent["stream_url"] + query, headers=headers)
        assert response.status_code == 400, (headers, query)
        assert response.json()["error"]["code"] == "invalid_after"


def test_model_receives_system_prompt_and_history(make_app: AppFactory, serve: Any,
                                                  database_url: str,
                                                  fake: FakeModelServer) -> None:
    live = serve(make_app(database_url, SYSTEM_PROMPT="You are Brook's test model."))
    with live.client() as client:
        conversation_id = new_conversation(client)
        first = send(client, conversation_id, "first question")
        wait_for_answer(client, conversation_id, first["assistant_message"]["id"])
        second = send(client, conversation_id, "second question")
        wait_for_answer(client, conversation_id, second["assistant_message"]["id"])
    body = fake.requests[-1]["body"]
    assert body["model"] == "fake-gpt"
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are Brook's test model."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Hello from the fake model."},
        {"role": "user", "content": "second question"},
    ]
    assert fake.requests[-1]["headers"]["authorization"] == "Bearer test-key"


def test_history_is_trimmed_to_the_token_budget(make_app: AppFactory, serve: Any,
                                                sqlite_url: str, fake: FakeModelServer) -> None:
    live = serve(make_app(sqlite_url, PROMPT_TOKEN_BUDGET="120"))
    with live.client() as client:
        conversation_id = new_conversation(client)
        for i in range(6):
            sent = send(client, conversation_id, f"question {i} " + "word " * 20)
            wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    messages = fake.requests[-1]["body"]["messages"]
    assert messages[0]["role"] == "system"
    assert messages[-1]["content"].startswith("question 5 ")
    assert 2 < len(messages) < 12  # older turns were dropped, oldest first
    assert messages[1]["role"] == "user"
    assert not any(m["content"].startswith("question 0 ") for m in messages)
