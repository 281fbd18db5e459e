"""Accessibility of the chat page: the main flow by keyboard alone, with a visible focus at
every step, and axe-core (vendored in tests/vendor by scripts/vendor.sh) finding no serious
or critical violation in the light and the dark theme."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from .conftest import LiveServer, directive
from .fakemodel import FakeModelServer
from .test_browser import live_site, opened

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_URL = "/__test__/axe.min.js"  # served by the test itself, so the page's CSP allows it
ANSWERS = '.message[data-role="assistant"]'


@pytest.fixture(scope="module", name="site")
def site_fixture(fake_server: FakeModelServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (each test's browser context is its own owner)."""
    yield from live_site(fake_server, tmp_path_factory.mktemp("a11y"))


@pytest.fixture(name="chat")
def chat_fixture(page: Page, site: LiveServer, fake: FakeModelServer) -> Iterator[Page]:
    yield from opened(page, site)


FOCUS_SHOWN = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return "nothing is focused";
  // The message box shows its focus on the box around it.
  const ring = el.id === "prompt" ? el.closest(".composer-box") : el;
  const style = getComputedStyle(ring);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
  const rect = el.getBoundingClientRect();
  if (rect.width === 0 || rect.height === 0) return `${el.outerHTML.slice(0, 80)} is not visible`;
  if (getComputedStyle(el).opacity === "0") return `${el.outerHTML.slice(0, 80)} is transparent`;
  return outline ? "" : `no visible focus on ${el.outerHTML.slice(0, 80)}`;
}"""


def focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement.outerHTML.slice(0, 120)"))


def tab_to(page: Page, target: Locator, *, backwards: bool = False, limit: int = 80) -> None:
    """Press Tab (or Shift+Tab) until `target` has the focus, checking each stop shows it."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate("document.activeElement === document.body"):
            continue  # wrapped around the document
        problem = page.evaluate(FOCUS_SHOWN)
        assert problem == "", problem
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{key} never reached {target}; the focus is on {focused(page)}")


def test_keyboard_only_walk(chat: Page, fake: FakeModelServer) -> None:
    """New chat, type, send, wait, open a conversation, rename, regenerate: Tab, Enter,
    Escape and typing only."""
    keyboard = chat.keyboard
    prompt = chat.locator("#prompt")
    expect(prompt).to_be_editable()

    # The first stop is a link to the message box.
    keyboard.press("Tab")
    expect(chat.locator(".skip-link")).to_be_focused()
    assert chat.evaluate(FOCUS_SHOWN) == ""
    keyboard.press("Enter")
    expect(prompt).to_be_focused()

    fake.reply = "First answer."
    keyboard.type("First question")
    keyboard.press("Enter")
    expect(chat.locator(ANSWERS).last).to_have_attribute("data-status", "complete")
    expect(prompt).to_be_focused()

    tab_to(chat, chat.locator("#new-chat"), backwards=True)
    keyboard.press("Enter")
    expect(chat.locator(".message")).to_have_count(0)
    expect(prompt).to_be_focused()
    fake.reply = "Second answer."
    keyboard.type("Second question")
    keyboard.press("Enter")
    expect(chat.locator(ANSWERS).last).to_have_attribute("data-status", "complete")

    # Open the first conversation from the list.
    first = chat.locator("#conversation-list button.conversation", has_text="First question")
    tab_to(chat, first, backwards=True)
    keyboard.press("Enter")
    expect(chat.locator(".message .content")).to_have_text(["First question", "First answer."])
    expect(first).to_be_focused()

    # Rename it in place; Escape first cancels, Enter saves.
    item = chat.locator(f'#conversation-list li[data-id="{first.get_attribute("data-id")}"]')
    first = item.locator("button.conversation")
    rename = item.locator("button.rename")
    tab_to(chat, rename)
    keyboard.press("Enter")
    field = item.get_by_role("textbox", name="Conversation title")
    expect(field).to_be_focused()
    keyboard.type("Never mind")
    keyboard.press("Escape")
    expect(first).to_have_text("First question")
    expect(first).to_be_focused()
    tab_to(chat, rename)
    keyboard.press("Enter")
    keyboard.type("Renamed by keyboard")
    keyboard.press("Enter")
    expect(chat.locator("#conversation-title")).to_have_text("Renamed by keyboard")
    expect(first).to_have_text("Renamed by keyboard")
    expect(first).to_be_focused()

    # The delete dialog opens on Cancel and closes with Escape, giving the focus back.
    delete = item.locator("button.delete")
    tab_to(chat, delete)
    keyboard.press("Enter")
    dialog = chat.locator("#confirm-delete")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(delete).to_be_focused()
    expect(chat.locator("#conversation-list li")).to_have_count(2)

    # Edit opens a box that Escape closes again.
    edit = chat.locator('.message[data-role="user"]').get_by_role("button", name="Edit")
    tab_to(chat, edit)
    keyboard.press("Enter")
    expect(chat.get_by_role("textbox", name="Edit your message")).to_be_focused()
    keyboard.press("Escape")
    expect(edit).to_be_focused()

    # Regenerate the answer.
    fake.reply = "A regenerated answer."
    regenerate = chat.locator(ANSWERS).last.get_by_role("button", name="Regenerate")
    tab_to(chat, regenerate)
    keyboard.press("Enter")
    answer = chat.locator(ANSWERS).last
    expect(answer.locator(".content")).to_have_text("A regenerated answer.")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(prompt).to_be_focused()

    # Stop, by keyboard, while an answer streams.
    fake.reply = " ".join(f"w{i}" for i in range(300))
    fake.gap = 0.02
    keyboard.type("Count slowly")
    keyboard.press("Enter")
    expect(chat.locator(ANSWERS).last.locator(".content")).to_contain_text("w3")
    tab_to(chat, chat.locator("#stop"))
    keyboard.press("Enter")
    expect(chat.locator(ANSWERS).last).to_have_attribute("data-status", "stopped")


# -- axe-core -----------------------------------------------------------------------------------

def serve_axe(page: Page, site: LiveServer) -> None:
    def fulfill(route: Route) -> None:
        route.fulfill(path=AXE, content_type="text/javascript")

    page.route(site.url + AXE_URL, fulfill)


def open_page(page: Page, site: LiveServer, scheme: Literal["light", "dark"]) -> list[str]:
    """Open the site's page in `scheme`, with axe at hand; the page's uncaught errors go to
    the list returned."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.emulate_media(color_scheme=scheme)
    serve_axe(page, site)
    page.goto(site.url + "/")
    return errors


def axe_violations(page: Page, site: LiveServer) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(url=site.url + AXE_URL)
    results: dict[str, Any] = page.evaluate(
        """async () => await axe.run(document, {
             runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                             "wcag22aa", "best-practice"]},
             resultTypes: ["violations"],
           })""")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results["violations"] if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations(chat: Page, site: LiveServer, fake: FakeModelServer,
                                         scheme: Literal["light", "dark"]) -> None:
    assert AXE.exists(), "run scripts/vendor.sh: tests/vendor/axe.min.js is missing"
    chat.emulate_media(color_scheme=scheme)
    serve_axe(chat, site)
    assert axe_violations(chat, site) == []  # the empty new chat

    fake.reply = """Here is a comparison, and some code with a [link](https://example.com):

| Language | Typing | Since |
| --- | --- | --- |
| Python | dynamic | 1991 |
| Rust | static | 2015 |

```python
import sys

def main(argv: list[str]) -> int:
    # Print each argument, numbered.
    for i, arg in enumerate(argv, 1):
        print(f"{i}: {arg!r}", file=sys.stderr)
    return 0
```

- a list item with `inline code`
- and **bold** text

> A quote.
"""
    chat.locator("#prompt").fill("Compare two languages")
    chat.locator("#prompt").press("Enter")
    expect(chat.locator(ANSWERS).last).to_have_attribute("data-status", "complete")
    fail = directive(fault="status", status=500, key=str(uuid.uuid4()))
    chat.locator("#prompt").fill(f"And now fail {fail}")
    chat.locator("#prompt").press("Enter")
    expect(chat.locator(ANSWERS).last).to_have_attribute("data-status", "error")
    expect(chat.locator(".code-block .hljs-keyword").first).to_be_visible()
    expect(chat.locator(".content table")).to_be_visible()
    expect(chat.locator(ANSWERS).last.get_by_role("button", name="Retry")).to_be_visible()
    chat.locator("#prompt").fill("A draft")
    chat.locator("#conversation-list button.conversation").first.focus()  # its actions shown
    assert axe_violations(chat, site) == []
    # Scrolled up: what was hidden under the header, and the "Jump to latest" button.
    chat.locator("#messages").evaluate("m => { m.scrollTop = 0; }")
    expect(chat.locator("#jump-latest")).to_be_visible()
    assert axe_violations(chat, site) == []

    # The delete dialog, open.
    chat.locator("#conversation-list button.delete").first.click()
    expect(chat.locator("#confirm-delete")).to_be_visible()
    assert axe_violations(chat, site) == []
    chat.keyboard.press("Escape")

    # A phone, with the conversation drawer open.
    chat.set_viewport_size({"width": 390, "height": 844})
    chat.get_by_role("button", name="Show conversations").click()
    expect(chat.locator("#sidebar")).to_be_visible()
    assert axe_violations(chat, site) == []
