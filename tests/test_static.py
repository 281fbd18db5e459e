"""Static files under /static/<version>/: cached for a year in production, never in
development, any other version a 404, and the version follows the files' bytes."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from brook.assets import STATIC_FOLDER, static_version

from .conftest import LiveServer, Server
from .fakemodel import FakeModelServer

VERSION = re.compile(r"/static/([0-9a-f]{12})/")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


def static_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def directives(response: httpx.Response) -> set[str]:
    return {d.strip() for d in response.headers.get("cache-control", "").split(",") if d.strip()}


def test_the_version_follows_every_file_s_name_and_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "static"
    shutil.copytree(STATIC_FOLDER, folder)
    first = static_version(folder)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert static_version(folder) == first == static_version(STATIC_FOLDER)

    main = folder / "js" / "main.js"
    original = main.read_bytes()
    main.write_bytes(original.replace(b"import", b"import ", 1))
    edited = static_version(folder)
    assert edited != first
    main.write_bytes(original)
    assert static_version(folder) == first

    (folder / "js" / "main.js").rename(folder / "js" / "main2.js")
    assert static_version(folder) not in (first, edited)
    (folder / "js" / "main2.js").rename(folder / "js" / "main.js")
    (folder / "vendor" / "new.js").write_bytes(b"")
    assert static_version(folder) not in (first, edited)


def test_the_page_names_versioned_files_cached_for_a_year(site: LiveServer) -> None:
    with site.client() as client:
        page = client.get("/")
        assert page.status_code == 200
        # The page itself is not cached, so it always names the current version.
        assert "max-age" not in page.headers.get("cache-control", "")
        urls = static_urls(page.text)
        assert len(urls) >= 20
        assert {VERSION.match(u).group(1) for u in urls} == {static_version()}  # type: ignore[union-attr]
        worker = urls[0].split("/js/")[0] + "/js/highlight-worker.js"
        assert client.cookies  # the browser's owner cookie goes along with each request
        for url in [*urls, worker]:
            response = client.get(url)
            assert response.status_code == 200, url
            assert directives(response) == {"public", "max-age=31536000", "immutable"}, url
            assert response.headers["content-type"].split(";")[0] == TYPES[
                Path(url).suffix], url
            # No owner cookie on a file any cache may keep, and nothing to vary on.
            assert "set-cookie" not in response.headers, url
            assert "cookie" not in response.headers.get("vary", "").lower(), url


def test_an_unknown_or_old_version_is_a_404(site: LiveServer) -> None:
    version = static_version()
    with site.client() as client:
        assert client.get(f"/static/{version}/js/main.js").status_code == 200
        other = "0" * 12 if version != "0" * 12 else "1" * 12
        for url in [f"/static/{other}/js/main.js", "/static/js/main.js",
                    f"/static/{version[:-1]}/js/main.js"]:
            assert client.get(url).status_code == 404, url


def test_a_new_tab_takes_every_static_file_from_the_cache(page: Page, site: LiveServer,
                                                          fake: FakeModelServer) -> None:
    """The second tab of a browser loads no static file over the network, and the
    highlighting module worker loads from the versioned URL."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    workers: list[str] = []
    page.on("worker", lambda w: workers.append(w.url))
    page.goto(site.url + "/")
    fake.reply = "Code:\n\n```js\nconst x = 1;\n```"
    page.locator("#prompt").fill("Some code")
    page.locator("#prompt").press("Enter")
    expect(page.locator('.message[data-role="assistant"] .hljs-keyword').last).to_have_text("const")
    assert workers == [f"{site.url}/static/{static_version()}/js/highlight-worker.js"]

    second = page.context.new_page()
    second.on("pageerror", lambda exc: errors.append(str(exc)))
    second.goto(site.url + "/")
    expect(second.locator("#conversation-list li.conversation-item")).to_have_count(1)
    entries = second.evaluate("""() => performance.getEntriesByType("resource")
      .filter((e) => new URL(e.name).pathname.startsWith("/static/"))
      .map((e) => [new URL(e.name).pathname, e.transferSize, e.decodedBodySize])""")
    assert len(entries) >= 20
    fetched = [(path, size) for path, size, body in entries if size != 0 or body == 0]
    assert fetched == [], fetched
    assert errors == []


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[Server]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'brook.db'}", "SECRET_KEY": "dev-test",
           "MODEL_PROVIDER": "none"}
    server = Server(tmp_path, env, "dev", args=["--dev"])
    yield server
    server.stop()


@pytest.mark.slow  # `brook serve --dev`
def test_brook_serve_dev_never_caches_static_files(dev_server: Server) -> None:
    """In development edited JS and CSS show on reload: no max-age, revalidated by ETag."""
    dev_server.start()
    with httpx.Client(base_url=dev_server.url, timeout=20) as client:
        urls = static_urls(client.get("/").text)
        assert {VERSION.match(u).group(1) for u in urls} == {static_version()}  # type: ignore[union-attr]
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            assert directives(response) == {"no-cache"}, url
            assert response.headers["etag"], url
