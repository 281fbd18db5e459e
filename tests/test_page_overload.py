"""The page when Brook is busy, and when an answer was interrupted, in a real browser.

Busy: a worker at capacity (MAX_ANSWERS_PER_WORKER=1, held by a slow answer started through
the API) refuses a new answer with 503 `overloaded` and Retry-After, storing nothing. The
page keeps the text, says so (a status region, a countdown, Cancel), and sends it again on
its own once the worker has room: exactly once.

Interrupted: the writer died after the page had shown words that did not survive; the
stream's `end` comes with a smaller id. The page shows exactly the stored text.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Locator, Page, Route, expect

from .conftest import AppFactory, LiveServer, directive, new_conversation, wait_for_answer
from .test_a11y import AXE, axe_violations, serve_axe, tab_to
from .test_browser import ANSWERS, ask, last_answer

pytestmark = pytest.mark.browser

QUESTIONS = '.message[data-role="user"]'
SLOW = directive(tokens=40, gap=0.05)  # about two seconds of answer
MESSAGES_URL = re.compile(r".*/api/conversations/[^/]+/messages$")
STREAM_URL = re.compile(r".*/api/messages/[^/]+/stream.*")
CONVERSATION_URL = re.compile(r".*/api/conversations/[0-9a-f-]+$")


@pytest.fixture(name="site")
def site_fixture(make_app: AppFactory, serve: Any, sqlite_url: str) -> LiveServer:
    """Brook with room for one answer at a time."""
    live: LiveServer = serve(make_app(sqlite_url, MAX_ANSWERS_PER_WORKER="1"))
    return live


@pytest.fixture(name="chat")
def chat_fixture(page: Page, site: LiveServer) -> Iterator[Page]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site.url + "/")
    expect(page.locator("#composer")).to_have_attribute("data-state", "idle")
    yield page
    assert errors == []


@pytest.fixture(name="api")
def api_fixture(chat: Page, site: LiveServer) -> Iterator[httpx.Client]:
    """The API as the page's owner (its cookie), to hold the worker busy and to check what
    the server stored."""
    cookies = {c["name"]: c["value"] for c in chat.context.cookies()}
    assert cookies, "the page got no owner cookie"
    with httpx.Client(base_url=site.url, cookies=cookies, timeout=20) as client:
        yield client


def busy_status(page: Page) -> Locator:
    return page.get_by_role("status").filter(has_text="Brook is busy right now")


def hold_the_worker(api: httpx.Client) -> tuple[str, str]:
    """Starts a slow answer in a conversation of its own: the worker is then full. (An answer
    that just ended may hold its place a moment longer: refused, it asks again.)"""
    conversation = new_conversation(api)
    deadline = time.monotonic() + 10
    while True:
        response = api.post(f"/api/conversations/{conversation}/messages",
                            json={"content": f"Take your time {SLOW}"})
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert response.status_code == 202, response.text
    return conversation, response.json()["assistant_message"]["id"]


def wait_until(page: Page, condition: Callable[[], bool], timeout_ms: int = 10_000) -> None:
    """Lets Playwright deliver its events (route handlers run then) until `condition`."""
    for _ in range(timeout_ms // 10):
        if condition():
            return
        page.wait_for_timeout(10)
    assert condition()


def messages_of(api: httpx.Client, conversation: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/conversations/{conversation}")
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def shown_conversation(page: Page) -> str:
    match = re.search(r"#c=([0-9a-f-]+)", page.url)
    assert match, page.url
    return match.group(1)


# -- busy: sent again on its own --------------------------------------------------------------

def test_a_refused_message_is_kept_and_sent_again_once_there_is_room(
        chat: Page, api: httpx.Client) -> None:
    held, held_answer = hold_the_worker(api)
    refusals: list[int] = []
    chat.on("response", lambda r: refusals.append(r.status)
            if MESSAGES_URL.match(r.url) and r.status == 503 else None)

    ask(chat, "Are you there?")
    expect(busy_status(chat)).to_contain_text(re.compile(r"again in \d+ seconds?"))
    notice = chat.locator("#busy")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("your message was not sent yet")
    expect(notice.get_by_role("button", name="Cancel")).to_be_visible()
    # Not shown as sent; the text stays where it was typed, and can still be changed.
    expect(chat.locator(QUESTIONS)).to_have_count(0)
    expect(chat.locator("#prompt")).to_have_value("Are you there?")
    expect(chat.locator("#prompt")).to_be_editable()

    # Once the slow answer is done, the page sends it again and the answer streams in.
    expect(chat.locator(QUESTIONS)).to_have_count(1, timeout=20_000)
    expect(chat.locator(f"{QUESTIONS} .content")).to_have_text("Are you there?")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(answer.locator(".content")).to_have_text("Hello from the fake model.")
    expect(notice).to_be_hidden()
    expect(busy_status(chat)).to_have_count(0)
    expect(chat.locator("#prompt")).to_have_value("")
    expect(chat.locator("#notice")).to_be_hidden()

    assert wait_for_answer(api, held, held_answer)["status"] == "complete"
    assert refusals
    stored = messages_of(api, shown_conversation(chat))
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "Are you there?"), ("assistant", "Hello from the fake model.")]
    assert stored[1]["status"] == "complete"


def test_regenerate_and_edit_are_sent_again_too(chat: Page, api: httpx.Client) -> None:
    ask(chat, "First question")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    conversation = shown_conversation(chat)
    old_answer = last_answer(chat).get_attribute("data-id")

    held, held_answer = hold_the_worker(api)
    last_answer(chat).get_by_role("button", name="Regenerate").click()
    expect(busy_status(chat)).to_contain_text("Brook is busy right now")
    expect(chat.locator("#busy")).to_contain_text("it could not answer again yet")
    expect(chat.locator(ANSWERS)).to_have_count(1)
    expect(last_answer(chat)).to_have_attribute("data-id", old_answer or "")
    expect(last_answer(chat)).not_to_have_attribute("data-id", old_answer or "", timeout=20_000)
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(chat.locator("#busy")).to_be_hidden()
    wait_for_answer(api, held, held_answer)

    held, held_answer = hold_the_worker(api)
    question = chat.locator(QUESTIONS).first
    question.get_by_role("button", name="Edit").click()
    box = question.get_by_role("textbox", name="Edit your message")
    box.fill("First question, edited")
    box.press("Enter")
    expect(busy_status(chat)).to_contain_text("Brook is busy right now")
    expect(chat.locator("#busy")).to_contain_text("your edited message was not sent yet")
    expect(question.locator(".content")).to_have_text("First question")  # not shown as sent
    expect(question.locator(".content")).to_have_text("First question, edited", timeout=20_000)
    expect(last_answer(chat)).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(chat.locator("#busy")).to_be_hidden()
    wait_for_answer(api, held, held_answer)

    stored = messages_of(api, conversation)
    assert [(m["role"], m["content"], m["status"]) for m in stored] == [
        ("user", "First question, edited", "complete"),
        ("assistant", "Hello from the fake model.", "complete")]


# -- busy: the user decides ---------------------------------------------------------------------

def refuse(page: Page, retry_after: str, seen: list[str], times: int | None = None) -> None:
    """Answers the page's sends with 503 overloaded (the first `times`, or all)."""
    def handler(route: Route) -> None:
        if route.request.method != "POST" or (times is not None and len(seen) >= times):
            route.continue_()
            return
        seen.append(route.request.post_data or "")
        route.fulfill(status=503, headers={"Retry-After": retry_after}, json={"error": {
            "code": "overloaded", "message": "Brook is answering as many questions as it can."}})

    page.route(MESSAGES_URL, handler)


def test_cancel_by_keyboard_keeps_the_text_unsent(chat: Page, api: httpx.Client) -> None:
    seen: list[str] = []
    refuse(chat, "30", seen)
    ask(chat, "Not now")
    notice = chat.locator("#busy")
    expect(notice).to_contain_text(re.compile(r"Sending it again in (30|31) seconds"))
    cancel = notice.get_by_role("button", name="Cancel")
    tab_to(chat, cancel, backwards=True)
    chat.keyboard.press("Enter")
    expect(notice).to_be_hidden()
    expect(chat.locator("#prompt")).to_be_focused()
    expect(chat.locator("#prompt")).to_have_value("Not now")
    expect(chat.locator(QUESTIONS)).to_have_count(0)
    assert len(seen) == 1
    chat.unroute_all()
    assert messages_of(api, shown_conversation(chat)) == []

    # Sent by hand, it goes as usual.
    chat.locator("#prompt").press("Enter")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    expect(chat.locator(QUESTIONS)).to_have_count(1)


def test_typing_cancels_and_send_sends_now(chat: Page) -> None:
    seen: list[str] = []
    refuse(chat, "30", seen, times=2)
    ask(chat, "First try")
    notice = chat.locator("#busy")
    expect(notice).to_be_visible()
    chat.locator("#prompt").press("End")
    chat.keyboard.type("!")  # changing the text: it is not sent again as it was
    expect(notice).to_be_hidden()
    expect(chat.locator("#prompt")).to_have_value("First try!")

    ask(chat, "Second try")
    expect(notice).to_be_visible()
    chat.locator("#prompt").press("Enter")  # Send while it waits: sends now
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    expect(notice).to_be_hidden()
    expect(chat.locator(f"{QUESTIONS} .content")).to_have_text(["Second try"])
    assert [json.loads(s)["content"] for s in seen] == ["First try", "Second try"]


def test_refused_again_it_waits_longer_then_leaves_it_to_the_user(chat: Page) -> None:
    """Each refusal waits its Retry-After (here 1 s), at least twice as long as the last
    time, plus up to a second of jitter; after six refusals the page stops trying."""
    chat.clock.install()
    seen: list[str] = []
    refuse(chat, "1", seen)
    ask(chat, "Keep trying")
    notice = chat.locator("#busy")
    waits = [1, 2, 4, 8, 16]
    for refusals, wait in enumerate(waits, 1):
        wait_until(chat, lambda: len(seen) == refusals)  # noqa: B023
        shown = re.compile(rf"Sending it again in ({wait}|{wait + 1}) seconds?\.")
        expect(notice).to_contain_text(shown)
        chat.clock.run_for((wait - 1) * 1000)  # not yet
        chat.wait_for_timeout(50)  # (a request that should not go would go now)
        assert len(seen) == refusals
        chat.clock.run_for(2000)  # Retry-After or the backoff, and the jitter: sent again
    alert = chat.get_by_role("alert")
    expect(alert).to_have_text(re.compile("still too busy.*your message was not sent"))
    expect(notice).to_be_hidden()
    assert len(seen) == len(waits) + 1
    expect(chat.locator("#prompt")).to_have_value("Keep trying")
    expect(chat.locator("#prompt")).to_be_editable()
    expect(chat.locator(QUESTIONS)).to_have_count(0)


def test_a_cancelled_edit_goes_back_to_its_box(chat: Page) -> None:
    ask(chat, "Original")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    seen: list[str] = []

    def restarting(route: Route) -> None:
        if route.request.method != "PATCH":
            route.continue_()
            return
        seen.append(route.request.post_data or "")
        route.fulfill(status=503, headers={"Retry-After": "30"}, json={
            "error": {"code": "shutting_down", "message": "Brook is restarting."}})

    chat.route(re.compile(r".*/api/messages/[^/]+$"), restarting)
    question = chat.locator(QUESTIONS).first
    question.get_by_role("button", name="Edit").click()
    box = question.get_by_role("textbox", name="Edit your message")
    box.fill("Edited, not sent")
    box.press("Enter")
    notice = chat.locator("#busy")
    expect(notice).to_contain_text("your edited message was not sent yet")
    expect(question.locator(".content")).to_have_text("Original")
    expect(chat.locator("#send")).to_be_disabled()  # nothing else starts meanwhile
    notice.get_by_role("button", name="Cancel").click()
    expect(notice).to_be_hidden()
    expect(box).to_be_focused()
    expect(box).to_have_value("Edited, not sent")
    assert len(seen) == 1
    box.press("Escape")
    expect(question.locator(".content")).to_have_text("Original")


# -- interrupted ----------------------------------------------------------------------------------

def sse(event: str, event_id: int, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n"


def code_points(text: str) -> int:
    return len(text)  # Python counts code points, as the server does


STORED = "Hello 👋 there, here is the first part"
LOST = " and then words that did not survive."


def interrupt(page: Page, how: Literal["end", "resume"]) -> list[str]:
    """The stream shows STORED + LOST, then ends `interrupted` where STORED ends: in the same
    response ("end"), or in the answer to the browser's reconnect ("resume"). The API has
    the answer as it was stored."""
    start = sse("start", 0, {"message_id": "x", "model": "fake-gpt"})
    shown = (sse("message", code_points(STORED[:10]), {"text": STORED[:10]})
             + sse("message", code_points(STORED + LOST), {"text": STORED[10:] + LOST}))
    end = sse("end", code_points(STORED), {"status": "interrupted", "usage": None})
    streams: list[str] = []

    def stream(route: Route) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:
            body = "retry: 200\n" + start + shown + (end if how == "end" else "")
        else:
            body = end
        route.fulfill(status=200, content_type="text/event-stream", body=body)

    def conversation(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        if body["messages"]:
            body["messages"][-1].update(content=STORED, status="interrupted")
        route.fulfill(response=response, json=body)

    page.route(STREAM_URL, stream)
    page.route(CONVERSATION_URL, conversation)
    return streams


@pytest.mark.parametrize("how", ["end", "resume"])
def test_an_interrupted_answer_shows_exactly_what_was_stored(
        chat: Page, site: LiveServer, how: Literal["end", "resume"]) -> None:
    chat.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    streams = interrupt(chat, how)
    ask(chat, "Tell me everything")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "interrupted")
    expect(answer.locator(".content")).to_have_text(STORED)
    expect(answer.locator(".note")).to_have_text(
        "Interrupted: the answer was cut off, and the part after this point was lost.")
    expect(answer.get_by_role("button", name="Retry")).to_be_visible()
    expect(answer.get_by_role("button", name="Copy")).to_be_visible()
    assert len(streams) == (1 if how == "end" else 2), streams
    chat.unroute_all()

    # To the character (a cut by UTF-16 units would lose the end or split the emoji): what
    # Copy takes is the answer's text itself. Retry answers again as usual.
    answer.get_by_role("button", name="Copy").click()
    assert chat.evaluate("navigator.clipboard.readText()") == STORED
    assert answer.locator(".content").inner_text() == STORED
    answer.get_by_role("button", name="Retry").click()
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    expect(last_answer(chat).locator(".content")).to_have_text("Hello from the fake model.")
    expect(chat.locator(ANSWERS)).to_have_count(1)


# -- accessibility --------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_busy_and_interrupted_are_axe_clean(chat: Page, site: LiveServer,
                                            scheme: Literal["light", "dark"]) -> None:
    assert AXE.exists(), "run scripts/vendor.sh: tests/vendor/axe.min.js is missing"
    chat.emulate_media(color_scheme=scheme)
    serve_axe(chat, site)
    interrupt(chat, "end")
    ask(chat, "Tell me everything")
    expect(last_answer(chat).locator(".note")).to_be_visible()
    expect(last_answer(chat).locator(".content")).to_have_text(STORED)
    assert axe_violations(chat, site) == []

    refuse(chat, "30", [])
    ask(chat, "And now while busy")
    expect(chat.locator("#busy")).to_be_visible()
    expect(busy_status(chat)).to_contain_text("Brook is busy right now")
    assert axe_violations(chat, site) == []
    chat.locator("#busy-cancel").focus()
    assert axe_violations(chat, site) == []
