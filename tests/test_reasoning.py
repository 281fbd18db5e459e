"""Reasoning as it streams: kept apart from the answer, stored in its own column, resumable.

The model's reasoning (here the fake model's `reasoning_content` deltas, a leading `<think>`
block, or the Responses API's summary) streams as `reasoning` events before the answer's
`message` events, in one offset space: every event id counts the characters delivered so
far, reasoning first. A reader resuming from any id gets exactly the rest of both, on the
in-process bus, on Redis from another worker, and from the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import (
    AppFactory,
    LiveServer,
    Server,
    clients,
    directive,
    new_conversation,
    read_events,
    send,
    wait_for_answer,
)
from .fakemodel import FakeModelServer
from .test_a11y import axe_violations, open_page

REASONING = "The user asks about <b>rivers</b>; I should be brief.\n\nRivers flow downhill."
REPLY = "A **brook** is a small stream."


def reasoning_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["event"] == "reasoning")


def answer_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["event"] == "message")


def check_order(events: list[dict[str, Any]], start: int = 0) -> None:
    """Reasoning events come before message events; ids grow by each event's text."""
    kinds = [e["event"] for e in events if e["event"] in ("reasoning", "message")]
    assert kinds == sorted(kinds, key=lambda k: k == "message")
    offset = start
    for event in events:
        if event["event"] in ("reasoning", "message"):
            offset += len(event["data"]["text"])
            assert int(event["id"]) == offset


def test_reasoning_streams_apart_and_is_stored(client: httpx.Client,
                                               fake: FakeModelServer) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "What is a brook? " + directive(
        reasoning=REASONING, reply=REPLY))
    events = read_events(client, sent["stream_url"])
    assert events[0]["event"] == "start"
    assert reasoning_of(events) == REASONING
    assert answer_of(events) == REPLY
    check_order(events)
    assert events[-1]["event"] == "end"
    assert int(events[-1]["id"]) == len(REASONING) + len(REPLY)
    answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert (answer["reasoning"], answer["content"]) == (REASONING, REPLY)
    assert sent["user_message"]["reasoning"] == ""
    # The reasoning is never sent back to the model.
    send_again = send(client, conversation_id, "And a river? " + directive(reply="Bigger."))
    read_events(client, send_again["stream_url"])
    prompt = fake.requests[-1]["body"]["messages"]
    assert [m for m in prompt if m["role"] == "assistant"] == [
        {"role": "assistant", "content": REPLY}]


def test_a_leading_think_block_is_reasoning(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, directive(reasoning=REASONING, reply=REPLY,
                                                   reasoning_field="think", chunk=3))
    events = read_events(client, sent["stream_url"])
    assert (reasoning_of(events), answer_of(events)) == (REASONING, REPLY)
    answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert (answer["reasoning"], answer["content"]) == (REASONING, REPLY)


def test_a_stored_answer_resumes_from_any_offset(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, directive(reasoning=REASONING, reply=REPLY))
    read_events(client, sent["stream_url"])
    wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    whole = REASONING + REPLY
    for offset in range(len(whole) + 1):
        events = read_events(client, sent["stream_url"],
                             headers={"Last-Event-ID": str(offset)})
        assert reasoning_of(events) == REASONING[offset:], offset
        assert answer_of(events) == REPLY[max(0, offset - len(REASONING)):], offset
        check_order(events, offset)
        assert events[-1]["event"] == "end"
    past = client.get(sent["stream_url"], headers={"Last-Event-ID": str(len(whole) + 1)})
    assert past.status_code == 400


def resume_until_end(client: httpx.Client, url: str, hops: int = 3) -> list[dict[str, Any]]:
    """Read a few events, hang up, reconnect with Last-Event-ID, again, until `end`."""
    events: list[dict[str, Any]] = []
    last: str | None = None
    while not events or events[-1]["event"] != "end":
        headers = {"Last-Event-ID": last} if last is not None else {}
        got = read_events(client, url, headers=headers, limit=hops)
        events += [e for e in got if e["event"] != "start" or last is None]
        ids = [e["id"] for e in got if e.get("id") is not None]
        last = ids[-1] if ids else last
    return events


def test_a_live_answer_resumes_mid_reasoning_and_mid_answer(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, directive(reasoning=REASONING, reply=REPLY,
                                                   gap=0.01))
    events = resume_until_end(client, sent["stream_url"])
    assert (reasoning_of(events), answer_of(events)) == (REASONING, REPLY)
    answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert (answer["reasoning"], answer["content"]) == (REASONING, REPLY)


@pytest.mark.slow
def test_reasoning_read_on_another_worker_through_redis(
        cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    with clients(a, b) as (ca, cb):
        conversation_id = new_conversation(ca)
        sent = send(ca, conversation_id, directive(reasoning=REASONING, reply=REPLY,
                                                   gap=0.01))
        events = resume_until_end(cb, sent["stream_url"], hops=2)
        assert (reasoning_of(events), answer_of(events)) == (REASONING, REPLY)
        wait_for_answer(ca, conversation_id, sent["assistant_message"]["id"])
        whole = REASONING + REPLY
        for offset in range(0, len(whole) + 1, 7):
            again = read_events(cb, sent["stream_url"], headers={"Last-Event-ID": str(offset)})
            assert reasoning_of(again) + answer_of(again) == whole[offset:], offset
            check_order(again, offset)


@pytest.mark.slow
def test_reasoning_survives_its_writer_killed_mid_reasoning(
        cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    long_reasoning = " ".join(f"step{i}" for i in range(2000))
    with clients(a, b) as (ca, cb):
        conversation_id = new_conversation(ca)
        sent = send(ca, conversation_id, directive(reasoning=long_reasoning, reply=REPLY,
                                                   gap=0.01))
        read_events(cb, sent["stream_url"], limit=5)  # the reasoning is under way
        events: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: events.extend(
            read_events(cb, sent["stream_url"])))
        reader.start()
        a.kill()
        reader.join(timeout=30)
        assert not reader.is_alive(), "the reader on B never got an end"
        assert events[-1]["data"]["status"] == "interrupted"
        answer = wait_for_answer(cb, conversation_id, sent["assistant_message"]["id"])
    assert answer["status"] == "interrupted"
    assert answer["content"] == ""
    assert answer["reasoning"]
    assert long_reasoning.startswith(answer["reasoning"])
    assert reasoning_of(events) == answer["reasoning"]


# -- the page ---------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_thinking_block_streams_open_then_closes(
        make_app: AppFactory, serve: Callable[[Any], LiveServer], sqlite_url: str, page: Page,
        scheme: Literal["light", "dark"]) -> None:
    live = serve(make_app(sqlite_url))
    errors = open_page(page, live, scheme)
    thought = "Consider **both** sides, then `decide`. " * 6
    page.locator("#prompt").fill("Decide? " + directive(reasoning=thought, reply=REPLY,
                                                        gap=0.05, chunk=4))
    page.locator("#prompt").press("Enter")
    answer = page.locator('.message[data-role="assistant"]').last
    block = answer.locator(".thinking")
    summary = block.locator("summary")
    # While the reasoning streams: open, and says so.
    expect(block).to_have_attribute("open", "")
    expect(summary).to_have_text("Thinking…")
    expect(block.locator(".content strong").first).to_have_text("both")
    assert axe_violations(page, live) == []
    # Once the answer's text begins: closed, and the answer below it.
    expect(answer).to_have_attribute("data-status", "complete")
    expect(block).not_to_have_attribute("open", "")
    expect(summary).to_have_text("Thinking")
    expect(answer.locator(":scope > .content strong")).to_have_text("brook")
    summary.click()
    expect(block.locator(".content code").first).to_have_text("decide")
    assert axe_violations(page, live) == []
    # After a reload: from the database, closed, rendered when opened.
    page.reload()
    block = page.locator('.message[data-role="assistant"] .thinking')
    expect(block).to_have_count(1)
    expect(block).not_to_have_attribute("open", "")
    block.locator("summary").click()
    expect(block.locator(".content strong").first).to_have_text("both")
    expect(page.locator('.message[data-role="assistant"] > .content')).to_have_text(
        "A brook is a small stream.")
    assert axe_violations(page, live) == []
    assert errors == []
