"""Take docs/screenshot.png: Brook against the fake model server, in Debian's chromium."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from brook import create_app
from brook.fakemodel import FakeModelServer

ANSWER = """Server-sent events are a one-way stream from the server to the browser over \
plain HTTP. Brook uses them to show an answer **as it is written**:

1. `POST /api/conversations/<id>/messages` stores your message and starts the answer.
2. The page opens an `EventSource` on the answer's stream.
3. Each `message` event carries the next piece of text.

```python
for delta in provider.stream(messages):
    live.append(delta)
```

If the connection drops, the browser reconnects with `Last-Event-ID` and nothing is lost.
"""


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "docs" / "screenshot.png"
    with tempfile.TemporaryDirectory() as tmp, FakeModelServer(reply=ANSWER, gap=0.0) as fake:
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/brook.db",
                          "BROOK_INSTANCE_PATH": tmp, "SECRET_KEY": "screenshot",
                          "OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "fake-gpt"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.goto(f"http://127.0.0.1:{server.server_port}/")
                for question in ["What are server-sent events?"]:
                    page.fill("#prompt", question)
                    page.press("#prompt", "Enter")
                    expect(page.locator('.message[data-role="assistant"]').last
                           ).to_have_attribute("data-status", "complete")
                page.screenshot(path=str(out))
                browser.close()
        finally:
            server.shutdown()
            app.extensions["brook.chat"].close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
