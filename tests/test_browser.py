"""The page in a real browser: Debian's chromium driven by Playwright, against a live server
and the fake model server."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from brook.fakemodel import FakeModelServer

from .conftest import AppFactory

pytestmark = pytest.mark.browser


def ask(page: Page, text: str) -> None:
    page.locator("#prompt").fill(text)
    page.locator("#prompt").press("Enter")


def last_answer(page: Page) -> Any:
    return page.locator('.message[data-role="assistant"]').last


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

    chat.reload()
    expect(chat.locator(".message")).to_have_count(2)
    expect(last_answer(chat).locator(".content strong")).to_have_text("bold")


def test_reload_reattaches_to_a_streaming_answer(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(150))
    fake.gap = 0.02
    ask(chat, "Count for me")
    answer = last_answer(chat)
    expect(answer.locator(".content")).to_contain_text("w10")
    chat.reload()
    answer = last_answer(chat)
    expect(answer).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(answer.locator(".content")).to_have_text(fake.reply)


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


def test_stop_keeps_partial_answer(chat: Page, fake: FakeModelServer) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(400))
    fake.gap = 0.02
    ask(chat, "Go on and on")
    answer = last_answer(chat)
    expect(answer.locator(".content")).to_contain_text("w5")
    chat.locator("#stop").click()
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(chat.locator("#stop")).to_be_hidden()
    kept = answer.locator(".content").inner_text()
    assert "w399" not in kept
    chat.reload()
    expect(last_answer(chat)).to_have_attribute("data-status", "stopped")


def test_no_model_configured_says_what_to_set(page: Page, make_app: AppFactory, serve: Any,
                                              sqlite_url: str) -> None:
    site = serve(make_app(sqlite_url, OPENAI_BASE_URL="", OPENAI_API_KEY=""))
    page.goto(site.url + "/")
    expect(page.locator("#model-warning")).to_contain_text("OPENAI_API_KEY")
    ask(page, "hello")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "error")
    expect(answer.locator(".error")).to_contain_text("AZURE_OPENAI_ENDPOINT")
