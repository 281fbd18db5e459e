"""`brook db seed`: demo conversations on SQLite and PostgreSQL, listed by the API."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from brook import database
from brook.cli import main
from brook.models import Conversation, Message
from brook.seed import DEMO_OWNER, SEED_MARK, seed_demo

from .conftest import AppFactory, LiveServer, new_conversation, send, wait_for_answer


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI reads .env from the working directory


def seed(database_url: str, *args: str) -> Result:
    result = CliRunner().invoke(main, ["db", "seed", *args], env={"DATABASE_URL": database_url})
    assert "Traceback" not in result.output
    return result


def rows(database_url: str) -> tuple[Counter[str], list[Any]]:
    """Conversations per owner, and every message with its conversation's owner."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            owners = Counter(session.scalars(select(Conversation.owner)).all())
            messages = list(session.execute(
                select(Conversation.owner, Message.role, Message.content, Message.status,
                       Message.error, Message.worker, Message.created_at)
                .join(Message).order_by(Conversation.created_at, Message.position)))
    finally:
        engine.dispose()
    return owners, messages


def test_seeded_conversations_are_listed_by_the_api(make_app: AppFactory, serve: Any,
                                                    database_url: str) -> None:
    live: LiveServer = serve(make_app(database_url))
    with live.client() as client:
        mine = new_conversation(client)
        sent = send(client, mine, "hello")
        wait_for_answer(client, mine, sent["assistant_message"]["id"])

        result = seed(database_url, "--owner-of", mine, "--count", "7", "--seed", "3")
        assert result.exit_code == 0, result.output
        assert "Added 7 conversation(s)" in result.output
        items = client.get("/api/conversations").json()["conversations"]
        assert len(items) == 8
        assert all(item["title"] for item in items)
        seeded = [item for item in items if item["id"] != mine]
        stamps = [item["updated_at"] for item in seeded]
        assert stamps == sorted(stamps, reverse=True)  # newest first, as the API promises

        first = client.get(f"/api/conversations/{seeded[0]['id']}").json()
        roles = [m["role"] for m in first["messages"]]
        assert roles[:2] == ["user", "assistant"]
        assert roles == ["user", "assistant"] * (len(roles) // 2)

    with live.client() as stranger:  # another browser: another owner, none of these
        assert stranger.get("/api/conversations").json() == {"conversations": []}


def test_default_owner_reset_and_statuses(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        database.upgrade(database_url)
    result = seed(database_url, "--count", "60", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert f"for owner {DEMO_OWNER}" in result.output
    owners, messages = rows(database_url)
    assert owners == {DEMO_OWNER: 60}
    assert all(m.worker == SEED_MARK for m in messages)
    answers = [m for m in messages if m.role == "assistant"]
    statuses = Counter(m.status for m in answers)
    assert statuses["complete"] > 0.8 * len(answers)
    assert set(statuses) - {"complete"}, statuses  # a few stopped, failed or interrupted
    assert all(m.error and m.error["message"] for m in answers if m.status == "error")
    assert any("```" in m.content for m in answers)  # Markdown with code blocks
    spread = max(m.created_at for m in messages) - min(m.created_at for m in messages)
    assert spread > timedelta(days=14)

    # --reset: what the seed made goes, and only that; the same seed makes the same again.
    other = seed(database_url, "--owner", "someone-else", "--count", "2")
    assert other.exit_code == 0, other.output
    again = seed(database_url, "--count", "60", "--seed", "7", "--reset")
    assert again.exit_code == 0, again.output
    assert "Deleted 60 conversation(s)" in again.output
    owners_after, messages_after = rows(database_url)
    assert owners_after == {DEMO_OWNER: 60, "someone-else": 2}
    mine_after = [m for m in messages_after if m.owner == DEMO_OWNER]
    assert [m.content for m in mine_after] == [m.content for m in messages]


def test_the_same_seed_makes_the_same_conversations(tmp_path: Path) -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    contents = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        database.upgrade(url)
        engine = database.make_engine(url)
        with Session(engine) as session:
            seed_demo(session, count=10, seed=11, now=now)
            contents.append(session.execute(
                select(Conversation.title, Conversation.created_at, Message.position,
                       Message.content, Message.status)
                .join(Message).order_by(Conversation.created_at, Message.position)).all())
        engine.dispose()
    assert contents[0] == contents[1]
    assert len(contents[0]) >= 20


def test_bad_options_are_plain_errors(sqlite_url: str) -> None:
    result = seed(sqlite_url, "--owner", "x", "--owner-of", "y")
    assert result.exit_code == 2
    assert "not both" in result.output
    result = seed(sqlite_url, "--owner-of", "not-a-conversation")
    assert result.exit_code == 1
    assert "No conversation not-a-conversation" in result.output
    engine = create_engine(sqlite_url)
    with Session(engine) as session:  # migrated by the command, and nothing added
        assert session.scalar(select(func.count()).select_from(Conversation)) == 0
    engine.dispose()
