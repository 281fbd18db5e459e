"""Upstream faults, each produced by the fake model server over real HTTP.

Each gives the reader an `error` event with a plain message and a stable code, the answer
status `error` with any partial text kept, the details in the server log, and never the
upstream's raw text or a stack trace in the browser.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from .conftest import AppFactory, directive, new_conversation, read_events, send, wait_for_answer
from .fakemodel import FakeModelServer

UPSTREAM_WORDS = ("maximum context length", "content management policy", "Traceback",
                  "ResponsibleAIPolicyViolation", "Incorrect API key", "Internal")


def run_fault(make_app: AppFactory, serve: Any, database_url: str, content: str,
              **env: str) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    live = serve(make_app(database_url, **env))
    with live.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, content)
        with client.stream("GET", sent["stream_url"]) as response:
            raw = response.read().decode()
        events = read_events(client, sent["stream_url"])
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    return events, answer, raw


def assert_error(events: list[dict[str, Any]], answer: dict[str, Any], raw: str,
                 code: str) -> None:
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["error", "end"], kinds
    error = events[-2]["data"]
    assert error["code"] == code
    assert error["message"]
    assert len(error["message"]) < 200
    assert events[-1]["data"]["status"] == "error"
    assert answer["status"] == "error"
    assert answer["error"] == error
    for word in UPSTREAM_WORDS:
        assert word not in raw


@pytest.mark.parametrize(
    ("fault", "env", "code", "partial"),
    [
        ({"fault": "status", "status": 500}, {}, "upstream_error", False),
        ({"fault": "status", "status": 429, "retry_after": 0.1}, {}, "rate_limited", False),
        ({"fault": "status", "status": 404, "code": "DeploymentNotFound"}, {},
         "upstream_not_found", False),
        ({"fault": "drop", "after": 3}, {}, "stream_interrupted", True),
        ({"fault": "malformed", "after": 3}, {}, "upstream_bad_response", True),
        ({"fault": "content_filter_prompt"}, {}, "content_filter", False),
        ({"fault": "content_filter_answer", "after": 3}, {}, "content_filter", True),
        ({"fault": "context_length"}, {}, "context_length_exceeded", False),
        ({"ttft": 3}, {"MODEL_TIMEOUT": "0.5"}, "upstream_timeout", False),
    ],
)
def test_upstream_fault(make_app: AppFactory, serve: Any, database_url: str,
                        caplog: pytest.LogCaptureFixture, fault: dict[str, Any],
                        env: dict[str, str], code: str, partial: bool) -> None:
    caplog.set_level(logging.WARNING, logger="brook")
    events, answer, raw = run_fault(make_app, serve, database_url,
                                    "question " + directive(tokens=20, **fault), **env)
    assert_error(events, answer, raw, code)
    if partial:
        assert answer["content"]
        assert len(answer["content"].split()) < 20
        assert "".join(e["data"]["text"] for e in events if e["event"] == "message") \
            == answer["content"]
    else:
        assert answer["content"] == ""
    # The details are in the server log.
    assert any(code in r.getMessage() for r in caplog.records), caplog.text


def test_unreachable_upstream(make_app: AppFactory, serve: Any, sqlite_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    events, answer, raw = run_fault(make_app, serve, sqlite_url, "hello",
                                    OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    assert_error(events, answer, raw, "upstream_unreachable")


def test_wrong_api_key(make_app: AppFactory, serve: Any, sqlite_url: str,
                       fake: FakeModelServer) -> None:
    fake.api_key = "the-right-key"
    events, answer, raw = run_fault(make_app, serve, sqlite_url, "hello",
                                    OPENAI_API_KEY="a-wrong-key")
    assert_error(events, answer, raw, "upstream_auth")
    assert "the-right-key" not in raw
    assert "a-wrong-key" not in raw


def test_429_with_retry_after_is_retried_within_budget(make_app: AppFactory, serve: Any,
                                                       sqlite_url: str,
                                                       fake: FakeModelServer) -> None:
    fault = directive(fault="status", status=429, retry_after=0.3, times=1)
    events, answer, _ = run_fault(make_app, serve, sqlite_url, "hello " + fault,
                                  MODEL_MAX_RETRIES="1")
    assert events[-1]["data"]["status"] == "complete"
    assert answer["content"] == "Hello from the fake model."
    assert len(fake.requests) == 2


def test_no_model_configured(make_app: AppFactory, serve: Any, sqlite_url: str) -> None:
    live = serve(make_app(sqlite_url, OPENAI_BASE_URL="", OPENAI_API_KEY="",
                          MODEL_PROVIDER="none"))
    with live.client() as client:
        page = client.get("/").text
        assert "OPENAI_API_KEY" in page
        assert "AZURE_OPENAI_ENDPOINT" in page
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "hello")
        events = read_events(client, sent["stream_url"])
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert events[-2]["event"] == "error"
    assert events[-2]["data"]["code"] == "model_not_configured"
    assert "OPENAI_API_KEY" in events[-2]["data"]["message"]
    assert answer["status"] == "error"


def take_every_connection(engine: Engine) -> list[Connection]:
    """Check out connections until the pool has none left (it waits its timeout, then says so)."""
    held: list[Connection] = []
    try:
        while len(held) < 100:
            held.append(engine.connect())
    except SQLAlchemyTimeout:
        return held
    for connection in held:
        connection.close()
    raise AssertionError("the pool never ran dry")


def test_no_free_database_connection_is_503_overloaded(
        make_app: AppFactory, serve: Any, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A worker whose connections are all busy answers at once, stores nothing, recovers."""
    app = make_app(database_url, DATABASE_POOL_TIMEOUT="0.2")
    engine = app.extensions["brook.engine"]
    live = serve(app)
    with live.client() as client:
        conversation_id = new_conversation(client)
        held = take_every_connection(engine)
        try:
            with caplog.at_level(logging.WARNING, logger="brook.errors"):
                response = client.post(f"/api/conversations/{conversation_id}/messages",
                                       json={"content": "hello"})
                listing = client.get("/api/conversations")
        finally:
            for connection in held:
                connection.close()
        for refused in (response, listing):
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "overloaded"
            assert refused.headers["Retry-After"] == "2"
        assert "no free database connection for POST" in caplog.text
        assert client.get(f"/api/conversations/{conversation_id}").json()["messages"] == []
        sent = send(client, conversation_id, "hello")
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert answer["status"] == "complete"
