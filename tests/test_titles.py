"""Titles written by the model after a conversation's first answer (chat/titles.py), through
the API on SQLite and PostgreSQL, against the fake model server."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, select, update

from brook.chat.titles import cleaned
from brook.models import Conversation, Worker, utcnow

from .conftest import (
    AppFactory,
    LiveServer,
    directive,
    new_conversation,
    read_events,
    send,
    wait_until,
)
from .fakemodel import FakeModelServer


@pytest.fixture
def site(make_app: AppFactory, serve: Any, database_url: str) -> LiveServer:
    live: LiveServer = serve(make_app(database_url, MODEL_TITLES="true"))
    return live


def conversation(client: httpx.Client, conversation_id: str) -> dict[str, Any]:
    response = client.get(f"/api/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def settled(client: httpx.Client, conversation_id: str) -> dict[str, Any]:
    """The conversation once its title is no longer being asked for."""
    wait_until(lambda: conversation(client, conversation_id)["title_source"] != "pending",
               "the title's request to end")
    return conversation(client, conversation_id)


def first_answer(client: httpx.Client, question: str) -> str:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, question)
    read_events(client, sent["stream_url"])
    return conversation_id


def test_the_model_titles_a_conversation_after_its_first_answer(
        site: LiveServer, fake: FakeModelServer) -> None:
    fake.reply = '"Quiet Brooks and Rivers."'
    with site.client() as client:
        conversation_id = first_answer(client, "Tell me about brooks and rivers, please")
        wait_until(lambda: conversation(client, conversation_id)["title_source"] == "model",
                   "the model's title")
        titled = conversation(client, conversation_id)
        assert titled["title"] == "Quiet Brooks and Rivers"
        # It was asked with the question and the answer, and no temperature.
        asked = [r["body"] for r in fake.requests
                 if "Write a short title" in str(r["body"]["messages"][0])][-1]
        assert "Tell me about brooks and rivers" in asked["messages"][1]["content"]
        assert "Quiet Brooks" in asked["messages"][1]["content"]  # the answer
        # Later answers leave the title alone.
        count = len(fake.requests)
        sent = send(client, conversation_id, "And lakes?")
        read_events(client, sent["stream_url"])
        assert len(fake.requests) == count + 1
        assert conversation(client, conversation_id)["title"] == "Quiet Brooks and Rivers"


def test_a_failed_title_leaves_the_first_words(site: LiveServer) -> None:
    question = "Why is the sky blue? " + directive(reply="Rayleigh.")
    with site.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, question)
        read_events(client, sent["stream_url"])
        # The title's request carries the question, directive and all: this one fails it.
        failing = "Why is the sky blue? " + directive(fault="status", status=500, key="t")
        other = new_conversation(client)
        sent = send(client, other, failing)
        events = read_events(client, sent["stream_url"])
        assert events[-1]["data"]["status"] == "error"  # the answer itself failed: no title
        titled = settled(client, conversation_id)
        failed = settled(client, other)
    assert titled["title_source"] == "model"
    assert failed["title_source"] == "message"
    assert failed["title"].startswith("Why is the sky blue?")


def test_an_empty_reply_keeps_the_first_words(site: LiveServer, fake: FakeModelServer) -> None:
    fake.reply = "  \n  "
    with site.client() as client:
        conversation_id = first_answer(client, "What is a brook?")
        wait_until(lambda: any("Write a short title" in str(r["body"]) for r in fake.requests),
                   "the title's request")
        result = settled(client, conversation_id)
    assert (result["title"], result["title_source"]) == ("What is a brook?", "message")


def test_a_rename_is_never_overwritten(site: LiveServer, fake: FakeModelServer,
                                      caplog: pytest.LogCaptureFixture) -> None:
    fake.reply = "Model Title"
    fake.ttft = 0.5  # the title's request is still out when the user renames
    caplog.set_level("INFO", logger="brook.chat.titles")
    with site.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "What is a brook?")
        read_events(client, sent["stream_url"])
        wait_until(lambda: conversation(client, conversation_id)["title_source"] == "pending",
                   "the title to be asked for")
        chat = site.app.extensions["brook.chat"]
        assert asking(site, conversation_id) == chat.worker  # this process asks for it
        renamed = client.patch(f"/api/conversations/{conversation_id}",
                               json={"title": "Mine"}).json()
        assert renamed["title_source"] == "user"
        wait_until(lambda: "came after a rename" in caplog.text, "the title to come back")
        final = conversation(client, conversation_id)
    assert (final["title"], final["title_source"]) == ("Mine", "user")


def asking(site: LiveServer, conversation_id: str) -> str | None:
    """The process recorded as asking for a conversation's title."""
    engine: Engine = site.app.extensions["brook.engine"]
    with engine.connect() as connection:
        worker: str | None = connection.scalar(
            select(Conversation.title_worker).where(Conversation.id == uuid.UUID(conversation_id)))
    return worker


def test_a_title_whose_asking_process_is_gone_is_given_back(site: LiveServer) -> None:
    """A process that dies while it asks for a title leaves it `pending`: the sweep gives it
    back to the first words once that process is gone, and leaves live processes' alone."""
    engine: Engine = site.app.extensions["brook.engine"]
    chat = site.app.extensions["brook.chat"]
    with site.client() as client:
        ids = [new_conversation(client) for _ in range(4)]
        for conversation_id in ids:
            sent = send(client, conversation_id, "What is a brook? " + directive(reply="Water."))
            read_events(client, sent["stream_url"])
        for conversation_id in ids:
            settled(client, conversation_id)
        # Pending titles as processes left them: one gone without a trace (no heartbeat),
        # one whose heartbeat ran out, one from before the asker was recorded (0008), and
        # one of another process that is alive.
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(insert(Worker), [
                {"id": "elsewhere:1:late", "alive_until": now - timedelta(minutes=1),
                 "started_at": now - timedelta(hours=1)},
                {"id": "elsewhere:2:alive", "alive_until": now + timedelta(minutes=5),
                 "started_at": now - timedelta(hours=1)}])
            for conversation_id, worker in zip(ids, ("elsewhere:3:vanished", "elsewhere:1:late",
                                                     None, "elsewhere:2:alive"), strict=True):
                connection.execute(update(Conversation)
                                   .where(Conversation.id == uuid.UUID(conversation_id))
                                   .values(title="What is a brook?", title_source="pending",
                                           title_worker=worker))
        chat.sweep()
        after = [conversation(client, conversation_id) for conversation_id in ids]
        assert [c["title_source"] for c in after] == ["message", "message", "message",
                                                      "pending"]
        assert [c["title"] for c in after[:3]] == ["What is a brook?"] * 3  # the first words
        assert [asking(site, conversation_id) for conversation_id in ids] == [
            None, None, None, "elsewhere:2:alive"]
        # This process's own pending titles are its to finish.
        with engine.begin() as connection:
            connection.execute(update(Conversation)
                               .where(Conversation.id == uuid.UUID(ids[0]))
                               .values(title_source="pending", title_worker=chat.worker))
        chat.sweep()
        assert conversation(client, ids[0])["title_source"] == "pending"


def test_titles_can_be_turned_off(make_app: AppFactory, serve: Any, sqlite_url: str,
                                  fake: FakeModelServer) -> None:
    live = serve(make_app(sqlite_url, MODEL_TITLES="false"))
    with live.client() as client:
        count = len(fake.requests)
        conversation_id = first_answer(client, "What is a brook?")
        assert conversation(client, conversation_id)["title_source"] == "message"
    assert len(fake.requests) == count + 1


@pytest.mark.parametrize(("reply", "title"), [
    ('"A Quiet Brook."', "A Quiet Brook"),
    ("# Title: **Rivers and brooks**\nand more", "Rivers and brooks"),
    ("\u201cStreams\u201d", "Streams"),
    ("  \n ", None),
    ("x" * 100, "x" * 59 + "\u2026"),
    ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),  # the page shows text
])
def test_a_reply_is_cleaned_to_a_title(reply: str, title: str | None) -> None:
    assert cleaned(reply) == title
