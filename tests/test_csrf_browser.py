"""CSRF in a real browser: another site's form and fetch cannot change anything in Brook."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from brook.models import Conversation

from .conftest import LiveServer, new_conversation

ATTACK = """<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{brook}/api/conversations">
<input name='{{"title": "pwned", "x": "' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
document.getElementById("f").target = "sink";
fetch("{brook}/api/conversations", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"title": "pwned"}}'}})
  .finally(() => {{ document.getElementById("f").submit(); document.title = "sent"; }});
</script></body></html>"""


@pytest.fixture
def evil_site(site: LiveServer) -> Iterator[str]:
    """A page on another origin (localhost vs 127.0.0.1 are different sites)."""
    page = ATTACK.format(brook=site.url)

    @Request.application
    def app(_request: Request) -> Response:
        return Response(page, mimetype="text/html")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}/"
    server.shutdown()


def test_another_sites_form_and_fetch_change_nothing(page: Page, site: LiveServer,
                                                      evil_site: str) -> None:
    page.goto(site.url + "/")
    cookies = page.context.cookies()
    with site.client() as client:
        for cookie in cookies:
            client.cookies.set(cookie["name"], cookie["value"])
        new_conversation(client)
        before = client.get("/api/conversations").json()["conversations"]
        page.goto(evil_site)
        page.wait_for_function("document.title === 'sent'")
        page.wait_for_timeout(500)  # let the form submission land, if it could
        after = client.get("/api/conversations").json()["conversations"]
    assert after == before
    # Nothing was stored for anyone (the browser sends no SameSite cookie cross-site, so a
    # forged request that got through would create a conversation for a new owner).
    with site.app.extensions["brook.sessions"]() as session:
        titles = session.scalars(select(Conversation.title)).all()
    assert titles == [""]
