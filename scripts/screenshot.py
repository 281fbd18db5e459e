"""Take the README's screenshots: Brook against the fake model server, in Debian's chromium.

Writes docs/screenshot-light.png and docs/screenshot-dark.png (desktop, 1200x760) and
docs/screenshot-narrow-light.png and docs/screenshot-narrow-dark.png (a phone, 390x844):
a conversation of a few turns with a table, highlighted code and a model's thinking, a couple
more in the list, with two models to pick from.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
from pathlib import Path
from typing import Literal

from playwright.sync_api import Browser, Page, StorageState, expect, sync_playwright
from werkzeug.serving import make_server

from brook import create_app

# The fake model server lives with the tests (tests/fakemodel.py), outside the brook package;
# run as a script, this one has only scripts/ on its path: add the repository's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakemodel import FakeModelServer
from tests.services import chromium

DOCS = Path(__file__).resolve().parent.parent / "docs"

TURNS: list[tuple[str, str]] = [
    ("What are server-sent events?",
     "Server-sent events are a one-way stream from the server to the browser over plain "
     "HTTP. Brook uses them to show an answer **as it is written**, and the browser's "
     "`EventSource` reconnects on its own if the connection drops."),
    ("How do they compare with WebSockets?",
     """Both keep a connection open, but they differ in a few ways:

| | Server-sent events | WebSockets |
| --- | --- | --- |
| Direction | server → browser | both ways |
| Protocol | plain HTTP | its own, after an upgrade |
| Reconnect | built in, with `Last-Event-ID` | up to you |

For streaming an answer, server-sent events are all you need:

```python
@app.get("/stream")
def stream() -> Response:
    events = (f"id: {i}\\ndata: {w}\\n\\n" for i, w in enumerate(words))
    return Response(events, mimetype="text/event-stream")
```

If the connection drops, the browser sends the last id it saw and the stream **resumes**.
"""),
]

OTHER_CHATS = ["Plan a weekend in Lisbon", "Explain Python's GIL"]

# The thinking the model streams before its second answer (shown in its Thinking block).
THINKING = ("The user knows SSE now and asks about WebSockets: compare direction, protocol "
            "and reconnects, then show the Flask side.")

MODELS = [{"id": "gpt-4.1", "name": "GPT-4.1", "provider": "openai", "model": "fake-gpt",
           "default": True},
          {"id": "o4-mini", "name": "o4-mini (thinks first)", "provider": "openai",
           "model": "fake-thinking"}]


def converse(page: Page, fake: FakeModelServer, turns: list[tuple[str, str]]) -> None:
    for i, (question, answer) in enumerate(turns):
        fake.reply = answer
        fake.reasoning = THINKING if i == 1 else ""
        page.fill("#prompt", question)
        page.press("#prompt", "Enter")
        expect(page.locator('.message[data-role="assistant"]').last
               ).to_have_attribute("data-status", "complete")


def shoot(browser: Browser, url: str, state: StorageState, scheme: Literal["light", "dark"],
          narrow: bool) -> None:
    width, height = (390, 844) if narrow else (1200, 760)
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme=scheme, storage_state=state,
                                  device_scale_factor=2 if narrow else 1)
    page = context.new_page()
    page.goto(url)
    expect(page.locator(".message")).to_have_count(2 * len(TURNS))
    # Code is highlighted in a worker once the page has loaded: wait for its colours.
    expect(page.locator('pre code [class^="hljs-"]').first).to_be_attached()
    if not narrow:  # the model's thinking, opened
        page.locator("details.thinking summary").click()
        expect(page.locator(".thinking-content")).to_contain_text("compare direction")
        page.locator('.message[data-role="user"]').last.evaluate(
            "el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.evaluate("document.querySelector('#jump-latest').hidden = true")
    page.locator("#prompt").fill("Can I send events to the server too?")
    page.locator("#prompt").blur()
    if narrow:
        # The last question at the top, the answer's table and code below it.
        page.locator('.message[data-role="user"]').last.evaluate(
            "el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)  # the scroll settles (messages far away are laid out late)
        page.evaluate("document.querySelector('#jump-latest').hidden = true")
    name = f"screenshot{'-narrow' if narrow else ''}-{scheme}.png"
    page.screenshot(path=str(DOCS / name))
    print(f"wrote {DOCS / name}")
    context.close()


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, FakeModelServer(gap=0.0) as fake:
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/brook.db",
                          "BROOK_INSTANCE_PATH": tmp, "SECRET_KEY": "screenshot",
                          "OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_API_KEY": "fake",
                          "OPENAI_MODEL": "fake-gpt", "MODELS": json.dumps(MODELS),
                          "MODEL_TITLES": "false"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium(),
                                            args=["--no-sandbox", "--disable-gpu"])
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{server.server_port}/")
                for title in OTHER_CHATS:
                    page.click("#new-chat")
                    converse(page, fake, [(title, "Sure.")])
                page.click("#new-chat")
                converse(page, fake, TURNS)
                url = page.url
                # The same browser profile (cookie) sees the same conversations.
                state = context.storage_state()
                context.close()
                for scheme in ("light", "dark"):
                    for narrow in (False, True):
                        shoot(browser, url, state, scheme, narrow)
                browser.close()
        finally:
            server.shutdown()
            app.extensions["brook.chat"].close()


if __name__ == "__main__":
    main()
