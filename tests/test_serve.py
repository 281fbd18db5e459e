"""`brook serve` for real: gunicorn with a gevent worker in its own process, killed, restarted."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from brook.models import Message

from .conftest import (
    BROOK,
    Server,
    directive,
    new_conversation,
    read_events,
    send,
    text_of,
    wait_for_answer,
    wait_until,
)
from .fakemodel import FakeModelServer

pytestmark = pytest.mark.slow  # `brook serve`


@pytest.fixture
def server(tmp_path: Path, fake: FakeModelServer, database_url: str) -> Iterator[Server]:
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": database_url, "SECRET_KEY": "serve-test",
        "OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "fake-gpt",
        "FLUSH_INTERVAL_MS": "100",
    }
    if database_url.startswith("postgresql"):
        subprocess.run([BROOK, "db", "upgrade"], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
    s = Server(tmp_path, env)
    yield s
    s.stop()


def test_gunicorn_gevent_serves_and_a_restart_marks_interrupted(server: Server,
                                                                 database_url: str) -> None:
    server.start()
    with httpx.Client(base_url=server.url, timeout=20) as client:
        assert "Brook" in client.get("/").text
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "long " + directive(tokens=2000, gap=0.01))
        first = text_of(read_events(client, sent["stream_url"], limit=30))
        assert first
        engine = create_engine(database_url)
        stored = select(Message.content).where(
            Message.id == uuid.UUID(sent["assistant_message"]["id"]))

        def batch_stored() -> bool:
            with engine.connect() as connection:
                return len(connection.execute(stored).scalar_one()) >= len(first)

        wait_until(batch_stored, "a batch to reach the database", every=0.05)
        engine.dispose()
        server.kill()

        server.start()
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
        assert answer["status"] == "interrupted"
        assert answer["content"].startswith(first)
        assert len(answer["content"].split()) < 2000
        events = read_events(client, sent["stream_url"])
        assert text_of(events) == answer["content"]
        assert events[-1]["data"]["status"] == "interrupted"
        # The conversation goes on.
        again = send(client, conversation_id, "again")
        done = wait_for_answer(client, conversation_id, again["assistant_message"]["id"])
        assert done["status"] == "complete"
    assert "marked 1 answer(s) interrupted: the process writing them is gone" \
        in server.log.read_text()
