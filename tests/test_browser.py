"""The page in a real browser: Debian's chromium driven by Playwright, against a live server
and the fake model server."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from brook import create_app
from brook.assets import static_version

from .conftest import TEST_DEFAULTS, AppFactory, LiveServer, directive
from .fakemodel import FakeModelServer

pytestmark = pytest.mark.browser

ANSWERS = '.message[data-role="assistant"]'
QUESTIONS = '.message[data-role="user"]'


# One live server for the module: each test's browser context has its own cookie, so its
# own anonymous owner, and sees only its own conversations. (Starting a server per test
# costs more than most of these tests take.)

def live_site(fake_server: FakeModelServer, tmp: Path) -> Iterator[LiveServer]:
    app = create_app({
        "DATABASE_URL": f"sqlite:///{tmp / 'brook.db'}", "BROOK_INSTANCE_PATH": str(tmp),
        "SECRET_KEY": "test-secret", "OPENAI_BASE_URL": fake_server.url + "/v1",
        "OPENAI_API_KEY": "test-key", "OPENAI_MODEL": "fake-gpt", "MODEL_MAX_RETRIES": "0",
        "MODEL_TIMEOUT": "5", "FLUSH_INTERVAL_MS": "50", **TEST_DEFAULTS,
    })
    server = LiveServer(app)
    yield server
    server.stop()
    app.extensions["brook.chat"].close()
    app.extensions["brook.engine"].dispose()


def opened(page: Page, site: LiveServer) -> Iterator[Page]:
    """The page opened on the site; fails the test on any page JS error."""
    errors = errors_of(page)
    page.goto(site.url + "/")
    yield page
    assert errors == []


@pytest.fixture(scope="module", name="site")
def site_fixture(fake_server: FakeModelServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_site(fake_server, tmp_path_factory.mktemp("browser"))


@pytest.fixture(name="chat")
def chat_fixture(page: Page, site: LiveServer, fake: FakeModelServer) -> Iterator[Page]:
    """The page on the shared site, with the fake model reset to its quick defaults."""
    yield from opened(page, site)


@pytest.fixture(autouse=True)
def _quick_fake(fake: FakeModelServer) -> None:
    """Every test starts with the fake model's quick defaults (the `fake` fixture)."""


def errors_of(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def ask(page: Page, text: str) -> None:
    page.locator("#prompt").fill(text)
    page.locator("#prompt").press("Enter")


def last_answer(page: Page) -> Locator:
    return page.locator(ANSWERS).last


def answered(page: Page, text: str, count: int | None = None) -> Locator:
    """Ask, and wait until the answer is complete."""
    ask(page, text)
    if count is not None:
        expect(page.locator(ANSWERS)).to_have_count(count)
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    return answer


def conversation_items(page: Page) -> Locator:
    return page.locator("#conversation-list li.conversation-item")


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


# -- sending and streaming ----------------------------------------------------------------------

def test_send_stream_reload(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = "Here is **bold** text and a list:\n\n- one\n- two\n\n`code` end."
    fake.gap = 0.01
    ask(chat, "Hello there")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".content strong")).to_have_text("bold")
    expect(answer.locator(".content li")).to_have_count(2)
    expect(chat.locator('.message[data-role="user"] .content')).to_have_text("Hello there")
    expect(chat.locator("#conversation-list button.conversation")).to_have_text(["Hello there"])
    expect(chat.locator("#conversation-title")).to_have_text("Hello there")
    expect(chat).to_have_title("Hello there · Brook")

    chat.reload()
    expect(chat.locator(".message")).to_have_count(2)
    expect(last_answer(chat).locator(".content strong")).to_have_text("bold")


def test_streaming_keeps_finished_blocks_and_is_announced_once(chat: Page,
                                                                fake: FakeModelServer) -> None:
    """Finished Markdown blocks keep their DOM while the answer grows; the log is a
    role=log region and the answer is aria-busy until it is finished."""
    paragraphs = [f"Paragraph {i}: " + words(12) for i in range(6)]
    fake.reply = "\n\n".join(paragraphs)
    fake.gap = 0.02
    expect(chat.locator("#messages")).to_have_attribute("role", "log")
    ask(chat, "Write some paragraphs")
    answer = last_answer(chat)
    first = answer.locator(".content p").first
    expect(answer.locator(".content p").nth(1)).to_be_attached()
    expect(answer).to_have_attribute("aria-busy", "true")
    expect(answer).to_have_attribute("data-status", "streaming")
    handle = first.element_handle()
    expect(chat.locator("#stop")).to_be_visible()
    expect(chat.locator("#send")).to_be_hidden()

    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer).not_to_have_attribute("aria-busy", "true")
    expect(answer.locator(".content p")).to_have_count(6)
    # The first paragraph's element was rendered once and kept, not re-created per token.
    assert handle.evaluate("el => el.isConnected")
    assert handle.inner_text() == paragraphs[0]
    expect(chat.locator("#stop")).to_be_hidden()
    expect(chat.locator("#send")).to_be_visible()


def test_long_blocks_grow_a_piece_at_a_time_and_end_as_a_whole_render(
        chat: Page, fake: FakeModelServer) -> None:
    """A long open list, table or code block is rendered an item, a row or some text at a
    time (finished pieces keep their elements), and ends up the same as the answer
    rendered whole after a reload."""
    items = "".join(f"{i + 3}. Item {i} with **bold** and `code`, {words(8)}\n" for i in range(60))
    rows = "".join(f"| r{i} | {i * 7} | *x{i}* and {words(3)} |\n" for i in range(90))
    code = "".join(f"def f{i}(x):\n    return x * {i}  # {words(3)}\n" for i in range(60))
    fake.reply = (f"Intro.\n\n{items}\nBetween.\n\n| name | n | note |\n|:---|---:|---|\n{rows}"
                  f"\n```python\n{code}```\n\n- loose\n\n- list\n\nEnd.")
    fake.gap = 0.002
    ask(chat, "Long blocks" + directive(chunk=7))  # fences and rows split across pieces
    answer = last_answer(chat)
    first_item = answer.locator(".content ol > li").first
    expect(answer.locator(".content ol > li").nth(30)).to_be_attached()  # a long list by now
    handle = first_item.element_handle()
    expect(answer).to_have_attribute("data-status", "complete", timeout=30_000)
    assert handle.evaluate("el => el.isConnected")  # rendered once, kept
    content = answer.locator(".content")
    expect(content.locator("ol > li")).to_have_count(60)
    expect(content.locator("tbody > tr")).to_have_count(90)
    expect(content.locator("code.language-python .hljs-title")).to_have_count(60)
    streamed = content.inner_html()

    chat.reload()
    content = last_answer(chat).locator(".content")
    expect(content.locator("code.language-python .hljs-title")).to_have_count(60)
    assert content.inner_html() == streamed


GROWING = """
Intro with a [link](https://example.com/a).

{items}
| name | n | note |
|:---|---:|---|
{rows}
```python
{code}```

~~~
{plain}~~~

- a
- b

  continued

1. last
"""


@pytest.mark.parametrize("step", [1, 7, 64])
def test_markdown_view_fed_in_pieces_renders_what_a_whole_render_does(chat: Page,
                                                                    step: int) -> None:
    """The block-wise renderer (markdown.js) fed a long answer a few characters at a time,
    rendering after each piece, as a stream would: long blocks grow a piece at a time, a
    closing fence arrives a backtick at a time, and the end result is the same DOM as the
    whole text rendered at once."""
    text = GROWING.format(
        items="".join(f"- item {i} with `code` and *emphasis*, {words(10)}\n" for i in range(40)),
        rows="".join(f"| r{i} | {i} | {words(6)} |\n" for i in range(80)),
        code="".join(f"def f{i}(x):\n    return x * {i}  # {words(4)}\n" for i in range(50)),
        plain="".join(f"line {i}: {words(12)}\n" for i in range(40)))
    assert len(text) > 9_000
    same = chat.evaluate("""async ([text, step, module]) => {
      const { MarkdownView } = await import(module);
      const box = () => document.body.appendChild(document.createElement("div"));
      const a = box();
      const pieces = new MarkdownView(a);
      for (let i = 0; i < text.length; i += step) {
        pieces.append(text.slice(i, i + step));
        pieces.render(false);
      }
      pieces.render(true);
      const b = box();
      const whole = new MarkdownView(b);
      whole.setText(text);
      whole.render(true);
      // Both are highlighted by the worker: wait until they have settled.
      for (let n = 0; n < 100; n += 1) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        if (a.innerHTML === b.innerHTML) return true;
      }
      return [a.innerHTML, b.innerHTML];
    }""", [text, step, f"/static/{static_version()}/js/markdown.js"])
    assert same is True, same


def test_reload_reattaches_to_a_streaming_answer(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = words(120)
    fake.gap = 0.015
    ask(chat, "Count for me")
    answer = last_answer(chat)
    expect(answer.locator(".content")).to_contain_text("w10")
    chat.reload()
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(answer.locator(".content")).to_have_text(fake.reply)


@pytest.mark.parametrize("refused", [False, True], ids=["reconnect", "refused-once"])
def test_a_dropped_connection_resumes_where_it_left_off(chat: Page, fake: FakeModelServer,
                                                        refused: bool) -> None:
    """The stream is cut after a few words. The browser reconnects with Last-Event-ID and
    the server resumes there; if that reconnect is refused, the page asks the API and
    reopens the stream with ?after=. Either way no word is lost or doubled."""
    fake.reply = words(80)
    fake.gap = 0.015
    head = "w0 w1 w2 "
    seen: list[str] = []

    def flaky(route: Route) -> None:
        seen.append(route.request.url)
        if len(seen) == 1:  # a few words, then the connection drops
            start = json.dumps({"message_id": "x", "model": "fake-gpt"})
            route.fulfill(status=200, content_type="text/event-stream", body=(
                f"retry: 300\nid: 0\nevent: start\ndata: {start}\n\n"
                f"id: {len(head)}\nevent: message\ndata: {json.dumps({'text': head})}\n\n"))
        elif len(seen) == 2 and refused:  # the browser gives up on an HTTP error
            route.fulfill(status=503, content_type="application/json",
                          body='{"error": {"code": "unavailable", "message": "Try again."}}')
        else:
            route.continue_()

    chat.route(re.compile(r".*/api/messages/[^/]+/stream.*"), flaky)
    ask(chat, "Count through a bad connection")
    answer = last_answer(chat)
    if refused:
        expect(answer.locator(".connection")).to_have_text("Connection lost, reconnecting…")
    expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(answer.locator(".content")).to_have_text(fake.reply)
    expect(answer.locator(".connection")).to_have_count(0)
    # (Playwright does not show the Last-Event-ID header Chromium adds; the text shows
    # that the server resumed after it.)
    assert seen[1].endswith("/stream"), seen
    assert all(url.endswith(f"/stream?after={len(head)}") for url in seen[2:]), seen
    assert len(seen) == (3 if refused else 2), seen
    chat.unroute_all()


def test_two_tabs_show_the_same_answer_growing(page: Page, site: LiveServer,
                                               fake: FakeModelServer) -> None:
    first = page
    errors = errors_of(first)
    first.goto(site.url + "/")
    answered(first, "First question")
    second = first.context.new_page()
    errors += errors_of(second)
    second.goto(first.url)
    expect(second.locator(".message")).to_have_count(2)

    fake.reply = words(80)
    fake.gap = 0.015
    ask(first, "Count in both tabs")
    theirs = last_answer(second)
    expect(second.locator(ANSWERS)).to_have_count(2)
    expect(theirs.locator(".content")).to_contain_text("w5")
    expect(theirs).to_have_attribute("data-status", "streaming")
    expect(last_answer(first)).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(theirs).to_have_attribute("data-status", "complete")
    expect(theirs.locator(".content")).to_have_text(fake.reply)
    expect(last_answer(first).locator(".content")).to_have_text(fake.reply)
    assert errors == []


def test_stop_keeps_partial_answer(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = words(400)
    fake.gap = 0.02
    ask(chat, "Go on and on")
    answer = last_answer(chat)
    expect(answer.locator(".content")).to_contain_text("w5")
    chat.locator("#stop").click()
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.locator(".note")).to_contain_text("Stopped")
    expect(chat.locator("#stop")).to_be_hidden()
    kept = answer.locator(".content").inner_text()
    assert "w399" not in kept
    chat.reload()
    expect(last_answer(chat)).to_have_attribute("data-status", "stopped")
    expect(last_answer(chat).get_by_role("button", name="Regenerate")).to_be_visible()


def test_composer_is_disabled_while_sending(chat: Page, fake: FakeModelServer) -> None:
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    chat.route(re.compile(r".*/api/conversations/[^/]+/messages$"), hold)
    ask(chat, "Hold on")
    for _ in range(500):  # until the request is held (Python-side: expect cannot see it)
        if held:
            break
        chat.wait_for_timeout(10)
    assert len(held) == 1
    expect(chat.locator("#composer")).to_have_attribute("data-state", "sending")
    expect(chat.locator("#send")).to_be_disabled()
    expect(chat.locator("#prompt")).not_to_be_editable()
    chat.locator("#prompt").press("Enter")  # a second Enter sends nothing more
    held[0].continue_()
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    expect(chat.locator("#composer")).to_have_attribute("data-state", "idle")
    expect(chat.locator("#prompt")).to_be_editable()
    expect(chat.locator("#prompt")).to_have_value("")
    expect(chat.locator(QUESTIONS)).to_have_count(1)
    chat.unroute_all()


def test_enter_sends_and_shift_enter_breaks_the_line(chat: Page) -> None:
    prompt = chat.locator("#prompt")
    prompt.click()
    height = prompt.bounding_box()["height"]  # type: ignore[index]
    prompt.press_sequentially("line one")
    prompt.press("Shift+Enter")
    prompt.press_sequentially("line two")
    prompt.press("Shift+Enter")
    prompt.press_sequentially("line three")
    expect(prompt).to_have_value("line one\nline two\nline three")
    expect(chat.locator(QUESTIONS)).to_have_count(0)
    assert prompt.bounding_box()["height"] > height  # type: ignore[index]  # it grew
    prompt.press("Enter")
    expect(chat.locator(f"{QUESTIONS} .content")).to_have_text("line one\nline two\nline three")
    expect(prompt).to_have_value("")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")


def test_counter_near_the_limit(page: Page, make_app: AppFactory, serve: Any,
                                sqlite_url: str) -> None:
    site = serve(make_app(sqlite_url, MAX_MESSAGE_CHARS="50"))
    page.goto(site.url + "/")
    expect(page.locator("body")).to_have_attribute("data-max-message-chars", "50")
    counter = page.locator("#char-count")
    prompt = page.locator("#prompt")
    prompt.fill("x" * 30)
    expect(counter).to_be_hidden()
    prompt.fill("x" * 45)
    expect(counter).to_be_visible()
    expect(counter).to_have_text("45 / 50 characters")
    prompt.fill("😀" * 50)  # characters, not UTF-16 units
    expect(counter).to_have_text("50 / 50 characters")
    prompt.fill("x" * 53)
    expect(counter).to_have_text("3 characters over the limit of 50")
    expect(counter).to_have_attribute("data-over", "true")
    expect(prompt).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#send")).to_be_disabled()
    prompt.press("Enter")
    expect(page.locator(QUESTIONS)).to_have_count(0)
    prompt.press("Backspace")
    prompt.press("Backspace")
    prompt.press("Backspace")
    expect(page.locator("#send")).to_be_enabled()
    prompt.press("Enter")
    expect(page.locator(QUESTIONS)).to_have_count(1)
    expect(counter).to_be_hidden()


def test_draft_is_kept_per_conversation_across_reloads(chat: Page) -> None:
    answered(chat, "Conversation one")
    one = chat.url
    chat.locator("#new-chat").click()
    answered(chat, "Conversation two")
    prompt = chat.locator("#prompt")
    prompt.fill("a draft for two")
    chat.locator("#conversation-list button.conversation", has_text="Conversation one").click()
    expect(chat).to_have_url(one)
    expect(prompt).to_have_value("")
    prompt.fill("a draft for one")
    chat.locator("#new-chat").click()
    expect(prompt).to_have_value("")
    prompt.fill("a draft for a new chat")
    chat.reload()
    expect(prompt).to_have_value("a draft for a new chat")
    chat.locator("#conversation-list button.conversation", has_text="Conversation two").click()
    expect(prompt).to_have_value("a draft for two")
    chat.goto(one)
    chat.reload()
    expect(prompt).to_have_value("a draft for one")
    prompt.press("Enter")  # sending clears the draft
    expect(chat.locator(QUESTIONS)).to_have_count(2)
    expect(prompt).to_have_value("")
    chat.reload()
    expect(chat.locator(QUESTIONS)).to_have_count(2)
    expect(prompt).to_have_value("")


def test_jump_to_latest(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = "\n\n".join(f"Line {i} " + words(8) for i in range(60))
    fake.gap = 0.003
    ask(chat, "A long one, please")
    answer = last_answer(chat)
    messages = chat.locator("#messages")
    jump = chat.locator("#jump-latest")
    expect(answer.locator(".content p").nth(25)).to_be_attached()
    # While the reader is at the bottom, the view follows the answer.
    assert messages.evaluate("m => m.scrollHeight - m.scrollTop - m.clientHeight") < 60
    expect(jump).to_be_hidden()
    messages.evaluate("m => { m.scrollTop = 0; }")
    expect(jump).to_be_visible()
    expect(answer.locator(".content p").nth(40)).to_be_attached()
    assert messages.evaluate("m => m.scrollTop") < 5  # it no longer follows
    jump.click()
    expect(jump).to_be_hidden()
    assert messages.evaluate("m => m.scrollHeight - m.scrollTop - m.clientHeight") < 60
    expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    assert messages.evaluate("m => m.scrollHeight - m.scrollTop - m.clientHeight") < 60


# -- actions ------------------------------------------------------------------------------------

def test_regenerate_the_last_answer(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = "First take."
    answered(chat, "Tell me something")
    answered(chat, "And again")
    first = chat.locator(ANSWERS).first
    expect(first.get_by_role("button", name="Regenerate")).to_be_hidden()
    old_id = last_answer(chat).get_attribute("data-id")
    fake.reply = "Second take."
    last_answer(chat).get_by_role("button", name="Regenerate").click()
    expect(chat.locator(ANSWERS)).to_have_count(2)
    answer = last_answer(chat)
    expect(answer).not_to_have_attribute("data-id", old_id or "")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".content")).to_have_text("Second take.")
    chat.reload()
    expect(chat.locator(".message")).to_have_count(4)
    expect(last_answer(chat).locator(".content")).to_have_text("Second take.")


def test_edit_and_resend_replaces_later_turns(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = "Answer one."
    answered(chat, "Question one")
    answered(chat, "Question two")
    expect(chat.locator(".message")).to_have_count(4)
    first = chat.locator(QUESTIONS).first
    first.get_by_role("button", name="Edit").click()
    box = first.get_by_role("textbox", name="Edit your message")
    expect(box).to_be_focused()
    expect(box).to_have_value("Question one")
    box.press("Escape")  # cancel: nothing changes
    expect(box).to_be_hidden()
    expect(first.locator(".content")).to_have_text("Question one")

    fake.reply = "A new answer."
    first.get_by_role("button", name="Edit").click()
    box.fill("Question one, edited")
    box.press("Enter")
    expect(chat.locator(".message")).to_have_count(2)
    expect(first.locator(".content")).to_have_text("Question one, edited")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    expect(last_answer(chat).locator(".content")).to_have_text("A new answer.")
    chat.reload()
    expect(chat.locator(".message")).to_have_count(2)
    expect(chat.locator(f"{QUESTIONS} .content")).to_have_text("Question one, edited")


def test_error_is_shown_in_plain_words_with_retry(chat: Page, fake: FakeModelServer) -> None:
    fail_once = directive(fault="status", status=500, times=1, key=str(uuid.uuid4()))
    ask(chat, f"Please fail {fail_once}")
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "error")
    error = answer.locator(".error")
    expect(error).to_be_visible()
    assert "Traceback" not in error.inner_text()
    assert "500" not in error.inner_text()
    assert len(error.inner_text()) > 10
    fake.reply = "Better now."
    answer.get_by_role("button", name="Retry").click()
    expect(chat.locator(ANSWERS)).to_have_count(1)
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    expect(last_answer(chat).locator(".content")).to_have_text("Better now.")
    expect(last_answer(chat).locator(".error")).to_have_count(0)


def test_interrupted_answer_says_so_and_offers_retry(chat: Page, fake: FakeModelServer) -> None:
    """An answer cut off by a server restart (status `interrupted`, shown here by rewriting
    the API's answer, since only a dying server makes one) keeps its text, says what
    happened, and offers Retry."""
    fake.reply = "The beginning of an answer"
    answered(chat, "Tell me a long story")

    def interrupted(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["messages"][-1]["status"] = "interrupted"
        route.fulfill(response=response, json=body)

    chat.route(re.compile(r".*/api/conversations/[0-9a-f-]+$"), interrupted)
    chat.reload()
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "interrupted")
    expect(answer.locator(".content")).to_have_text("The beginning of an answer")
    expect(answer.locator(".note")).to_have_text(
        "Interrupted: the answer was cut off, and the part after this point was lost.")
    chat.unroute_all()
    fake.reply = "The whole story."
    answer.get_by_role("button", name="Retry").click()
    expect(last_answer(chat).locator(".content")).to_have_text("The whole story.")
    expect(last_answer(chat)).to_have_attribute("data-status", "complete")
    expect(chat.locator(ANSWERS)).to_have_count(1)


def test_copy_buttons_and_highlighted_code(chat: Page, site: LiveServer,
                                           fake: FakeModelServer) -> None:
    chat.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    code = 'def greet(name):\n    return f"Hello, {name}!"'
    fake.reply = f"Here you go:\n\n```python\n{code}\n```\n\nThat is all."
    answer = answered(chat, "Some Python please")
    block = answer.locator(".code-block")
    expect(block.locator(".code-lang")).to_have_text("python")
    expect(block.locator("pre code.hljs.language-python")).to_be_visible()
    expect(block.locator(".hljs-keyword").first).to_have_text("def")
    expect(block.locator(".hljs-string")).to_have_count(1)
    block.get_by_role("button", name="Copy code").click()
    expect(block.get_by_role("button", name="Copied")).to_be_visible()
    assert chat.evaluate("navigator.clipboard.readText()") == code
    answer.get_by_role("button", name="Copy", exact=True).click()
    expect(answer.locator("button[data-action=copy-answer]")).to_have_text("Copied")
    assert chat.evaluate("navigator.clipboard.readText()") == fake.reply


def test_code_is_highlighted_off_the_page_while_written_and_when_finished(
        chat: Page, fake: FakeModelServer) -> None:
    """highlight.js runs in a worker: the code block being written is coloured as it grows,
    every finished block is highlighted in full (unlabeled code gets its language guessed
    and named in its header), and what the worker returns is sanitized like the rest."""
    python = "".join(f"def step_{i}(x):\n    return x + {i}\n" for i in range(40))
    unlabeled = ("import os\n\n\ndef walk(root):\n    for name in os.listdir(root):\n"
                 "        if name.startswith(\".\"):\n            continue\n"
                 "        elif name is None:\n            pass\n"
                 "        print(f\"{root}/{name}\")\n\n\n"
                 "if __name__ == \"__main__\":\n    walk(\".\")\n")
    html = '<img src=x onerror="window.__xss=1">\n<p>hello</p>'
    fake.reply = (f"```python\n{python}```\n\nUnlabeled:\n\n```\n{unlabeled}```\n\n"
                  f"```html\n{html}\n```\n\nDone.")
    fake.gap = 0.02
    ask(chat, "Code please")
    answer = last_answer(chat)
    first = answer.locator(".code-block").first
    expect(first.locator(".hljs-keyword").first).to_have_text("def")
    assert answer.get_attribute("data-status") == "streaming"  # coloured while written
    expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)

    blocks = answer.locator(".code-block")
    expect(blocks).to_have_count(3)
    expect(blocks.nth(0).locator("code.hljs.language-python")).to_be_attached()
    expect(blocks.nth(0).locator(".hljs-title.function_")).to_have_count(40)
    expect(blocks.nth(1).locator("code.language-python")).to_be_attached()  # guessed
    expect(blocks.nth(1).locator(".code-lang")).to_have_text("python")
    expect(blocks.nth(2).locator("code.language-html .hljs-tag").first).to_be_attached()
    assert blocks.nth(0).locator("pre").text_content() == python.rstrip("\n")
    assert blocks.nth(1).locator("pre").text_content() == unlabeled.rstrip("\n")
    assert blocks.nth(2).locator("pre").text_content() == html
    assert answer.locator(".content img, .content p:has-text('hello')").count() == 0
    assert chat.evaluate("window.__xss") is None


def test_links_open_in_a_new_tab_and_external_images_are_not_loaded(
        chat: Page, fake: FakeModelServer) -> None:
    fake.reply = ("See [the docs](https://example.com/docs) and a picture: "
                  "![a cat](https://images.example/cat.png) and an inline one "
                  "![dot](data:image/gif;base64,R0lGODlhAQABAAAAACw=).\n\n"
                  "| a | b |\n|---|---|\n| 1 | 2 |")
    requests: list[str] = []
    chat.on("request", lambda r: requests.append(r.url))
    answer = answered(chat, "Links and images")
    link = answer.get_by_role("link", name="the docs")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    blocked = answer.locator(".blocked-image")
    expect(blocked).to_have_text("Image not loaded: “a cat” from images.example")
    expect(answer.locator('img[alt="dot"]')).to_have_count(1)
    expect(answer.locator(".content table td")).to_have_text(["1", "2"])
    assert answer.locator("img[src*='images.example']").count() == 0
    assert not [u for u in requests if "example" in u]


def test_images_on_brooks_own_site_are_not_fetched_either(chat: Page, site: LiveServer,
                                                          fake: FakeModelServer) -> None:
    """A GET to Brook carries the user's cookies (think /.auth/logout): answers fetch nothing."""
    fake.reply = ("![x](/api/conversations?from=answer) ![y](relative.png) "
                  f"![z]({site.url}/healthz?from=answer)")
    requests: list[str] = []
    chat.on("request", lambda r: requests.append(r.url))
    answer = answered(chat, "Same-site images")
    expect(answer.locator(".blocked-image")).to_have_count(3)
    assert answer.locator(".content img").count() == 0
    chat.reload()
    expect(last_answer(chat).locator(".blocked-image")).to_have_count(3)
    assert not [u for u in requests if "from=answer" in u or "relative.png" in u]


def test_raw_html_block_keeps_its_lines(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = "Before.\n\n<div>\n<b>one</b>\n<i>two</i>\n</div>\n\nAfter **bold**."
    answer = answered(chat, "Raw HTML block")
    raw = answer.locator(".content p.raw-html")
    expect(raw).to_have_text("<div>\n<b>one</b>\n<i>two</i>\n</div>")
    expect(answer.locator(".content strong")).to_have_text("bold")


XSS = (
    "Look: <img src=x onerror=\"window.__xss='img'\"> and "
    "<script>window.__xss='script'</script> and "
    "<svg onload=\"window.__xss='svg'\"></svg> and "
    "[link](javascript:window.__xss='link') and "
    "![pic](https://evil.example/steal.png) done."
)


def test_model_html_renders_as_inert_text(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = XSS
    requests: list[str] = []
    chat.on("request", lambda r: requests.append(r.url))
    ask(chat, "Say something nasty " + '@@fake{"chunk": 7}')
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "complete")
    content = answer.locator(".content")
    expect(content).to_contain_text("<img src=x onerror=")
    expect(content).to_contain_text("<script>window.__xss='script'</script>")
    assert content.locator("img[onerror], script, svg, iframe").count() == 0
    assert content.locator('a[href^="javascript"]').count() == 0
    chat.reload()
    expect(last_answer(chat).locator(".content")).to_contain_text("<script>")
    assert chat.evaluate("window.__xss") is None
    assert not [u for u in requests if "evil.example" in u]


# -- conversations ------------------------------------------------------------------------------

def test_switch_conversations_newest_first(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = "About apples."
    answered(chat, "Apples")
    apples = chat.url
    chat.locator("#new-chat").click()
    expect(chat.locator(".message")).to_have_count(0)
    expect(chat.locator("#conversation-title")).to_have_text("New chat")
    expect(chat.locator("#prompt")).to_be_focused()
    fake.reply = "About pears."
    answered(chat, "Pears")
    titles = chat.locator("#conversation-list button.conversation")
    expect(titles).to_have_text(["Pears", "Apples"])
    expect(titles.first).to_have_attribute("aria-current", "page")

    titles.nth(1).click()
    expect(chat).to_have_url(apples)
    expect(chat.locator(".message .content")).to_have_text(["Apples", "About apples."])
    expect(chat.locator("#conversation-title")).to_have_text("Apples")
    expect(titles.nth(1)).to_have_attribute("aria-current", "page")
    fake.reply = "More apples."
    answered(chat, "Apples again", count=2)
    expect(titles).to_have_text(["Apples", "Pears"])  # the newest first
    chat.go_back()
    expect(chat.locator(".message .content").first).to_have_text("Pears")


def test_rename_in_place(chat: Page) -> None:
    answered(chat, "Old name")
    item = conversation_items(chat).first
    item.get_by_role("button", name="Rename").click()
    field = item.get_by_role("textbox", name="Conversation title")
    expect(field).to_be_focused()
    expect(field).to_have_value("Old name")
    field.fill("Not this one")
    field.press("Escape")
    expect(item.locator("button.conversation")).to_have_text("Old name")
    expect(item.locator("button.conversation")).to_be_focused()

    item.get_by_role("button", name="Rename").click()
    field.fill("A better name")
    field.press("Enter")
    expect(item.locator("button.conversation")).to_have_text("A better name")
    expect(chat.locator("#conversation-title")).to_have_text("A better name")
    expect(chat).to_have_title("A better name · Brook")
    chat.reload()
    expect(conversation_items(chat).locator("button.conversation")).to_have_text(["A better name"])


def test_delete_asks_first(chat: Page) -> None:
    answered(chat, "Keep me")
    chat.locator("#new-chat").click()
    answered(chat, "Delete me")
    dialog = chat.locator("#confirm-delete")
    target = conversation_items(chat).filter(has_text="Delete me")
    delete = target.get_by_role("button", name="Delete “Delete me”")
    delete.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete me")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(conversation_items(chat)).to_have_count(2)

    expect(delete).to_be_focused()
    delete.click()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(conversation_items(chat)).to_have_count(1)
    expect(conversation_items(chat)).to_have_text(["Keep me"])
    expect(chat.locator(".message")).to_have_count(0)  # it was the open one
    expect(chat.locator("#conversation-title")).to_have_text("New chat")
    assert "#c=" not in chat.url
    chat.reload()
    expect(conversation_items(chat)).to_have_count(1)


def test_a_long_conversation_opens_with_every_answer_rendered(chat: Page, site: LiveServer,
                                                              fake: FakeModelServer) -> None:
    """Older answers of a long conversation are rendered after the newest ones (plain text
    first): in the end every one is Markdown, and the log is no longer busy."""
    expect(chat.locator("#conversation-empty")).to_be_visible()  # the owner cookie is set
    api = chat.request
    conversation = api.post(site.url + "/api/conversations", data={}).json()["id"]
    fake.reply = ("Answer with **bold** text.\n\n```python\n" + "x = 1\n" * 40 + "```\n\n"
                  + "\n\n".join(words(60) for _ in range(8)))
    turns = 24
    for i in range(turns):
        sent = api.post(f"{site.url}/api/conversations/{conversation}/messages",
                        data={"content": f"Question {i}"}).json()
        for _ in range(200):
            messages = api.get(f"{site.url}/api/conversations/{conversation}").json()["messages"]
            if messages[-1]["status"] != "streaming":
                break
            chat.wait_for_timeout(10)
        assert messages[-1]["id"] == sent["assistant_message"]["id"]
    chat.goto(f"{site.url}/#c={conversation}")
    expect(chat.locator("#messages > .message")).to_have_count(2 * turns)
    expect(chat.locator(".message.pending")).to_have_count(0)
    expect(chat.locator(f"{ANSWERS} .content strong")).to_have_count(turns)
    expect(chat.locator(f"{ANSWERS} .code-block")).to_have_count(turns)
    expect(chat.locator("#messages")).not_to_have_attribute("aria-busy", "true")
    expect(chat.locator("#jump-latest")).to_be_hidden()  # still at the newest message
    messages_box = chat.locator("#messages")
    assert messages_box.evaluate("m => m.scrollHeight - m.scrollTop - m.clientHeight") < 60


def test_narrow_screen_sidebar_is_a_drawer(browser: Browser, site: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  reduced_motion="reduce")  # no drawer animation to wait for
    page = context.new_page()
    errors = errors_of(page)
    page.goto(site.url + "/")
    answered(page, "On a phone")
    sidebar = page.locator("#sidebar")
    toggle = page.get_by_role("button", name="Show conversations")
    expect(sidebar).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#new-chat")).to_be_focused()
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(toggle).to_be_focused()
    toggle.click()
    page.locator("#new-chat").click()
    expect(sidebar).to_be_hidden()
    expect(page.locator(".message")).to_have_count(0)
    toggle.click()
    page.locator("#conversation-list button.conversation").first.click()
    expect(sidebar).to_be_hidden()
    expect(page.locator(".message")).to_have_count(2)
    expect(page.locator("#prompt")).to_be_focused()
    context.close()
    assert errors == []


def test_no_model_configured_says_what_to_set(page: Page, make_app: AppFactory, serve: Any,
                                              sqlite_url: str) -> None:
    # MODEL_PROVIDER=none: with the local model extra installed, `auto` would pick it.
    site = serve(make_app(sqlite_url, OPENAI_BASE_URL="", OPENAI_API_KEY="",
                          MODEL_PROVIDER="none"))
    page.goto(site.url + "/")
    expect(page.locator("#model-warning")).to_contain_text("OPENAI_API_KEY")
    ask(page, "hello")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "error")
    expect(answer.locator(".error")).to_contain_text("AZURE_OPENAI_ENDPOINT")


RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`), true);
"""


def test_every_asset_comes_from_the_app_within_its_csp(page: Page, site: LiveServer,
                                                       fake: FakeModelServer) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    page.add_init_script(RECORD_CSP)
    page.goto(site.url + "/")
    fake.reply = "Code:\n\n```js\nconst x = 1;\n```\n\n| a |\n|---|\n| b |"
    answer = answered(page, "Everything at once")
    expect(answer.locator(".hljs-keyword")).to_have_text("const")
    page.get_by_role("button", name="Rename").first.click()
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 390, "height": 700})
    page.get_by_role("button", name="Show conversations").click()
    page.wait_for_load_state("networkidle")
    assert all(u.startswith(site.url + "/") for u in requests), requests
    assert any("/vendor/highlight/" in u for u in requests)
    # Every module of the page is preloaded from its head, so none waits for its importer;
    # highlight.js is loaded by the highlighting worker only, never by the page itself.
    modules = {u.removeprefix(site.url) for u in requests if u.endswith((".js", ".mjs"))}
    static = site.app.static_url_path
    worker = {f"{static}/js/highlight-worker.js", f"{static}/vendor/highlight/common.js",
              f"{static}/vendor/highlight/core.min.js"}
    assert worker <= modules
    preloaded = set(page.eval_on_selector_all(
        "link[rel=modulepreload], script[src]", "els => els.map(e => e.getAttribute("
        "e.tagName === 'LINK' ? 'href' : 'src'))"))
    assert modules - worker <= preloaded, modules - worker - preloaded
    assert not any("/vendor/highlight/" in u for u in preloaded)
    assert page.evaluate("window.__csp") == []
    assert console == []

