"""Fixtures: a real SQLite file or PostgreSQL, the fake model server over real HTTP, and a
live Brook server on 127.0.0.1 that tests talk to with httpx."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from brook import create_app, database, sse

from . import services
from .fakemodel import FakeModelServer
from .redis_servers import RedisServer
from .redis_servers import redis_cluster as redis_cluster
from .redis_servers import redis_server as redis_server

# -- markers: what a test needs beyond this process (README, Testing) --------------------------

# A test that uses one of these fixtures, itself or through another fixture, gets its markers.
NEEDS = {
    "postgres_url": ("postgres",),
    "postgres_schema": ("postgres",),
    "pg_url": ("postgres",),
    "redis_server": ("redis",),
    "redis_cluster": ("redis",),
    "cluster": ("postgres", "redis", "slow"),  # two `brook serve` processes
    "browser": ("browser",),
    "page": ("browser",),
    "tiny_model": ("slow",),  # test_local.py: loads torch and builds a model
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the services it needs, from the fixtures it uses: `postgres` also
    for a fixture parametrized "postgresql" (`database_url`). Tests that need a service or a
    server process without such a fixture are marked by hand (`pytestmark`)."""
    for item in items:
        needs = {mark for name in getattr(item, "fixturenames", ())
                 for mark in NEEDS.get(name, ())}
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "postgresql" in callspec.params.values():
            needs.add("postgres")
        for mark in sorted(needs):
            item.add_marker(mark)


def pytest_sessionfinish() -> None:
    services.stop()  # the private PostgreSQL server, if the session started one


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the session used: which PostgreSQL (found or started), which browser."""
    if services.NOTES:
        terminalreporter.section("services")
        for note in services.NOTES:
            terminalreporter.write_line(note)


RUNNING: list[pytest.Item] = []  # the test running now


@pytest.fixture(autouse=True)
def _running(request: pytest.FixtureRequest) -> Iterator[None]:
    RUNNING.append(request.node)
    yield
    RUNNING.pop()


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeModelServer]:
    with FakeModelServer(reply="Hello from the fake model.") as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeModelServer) -> FakeModelServer:
    """The shared fake model server, reset to quick defaults for each test."""
    fake_server.ttft, fake_server.gap, fake_server.tokens = 0.0, 0.0, 32
    fake_server.reply, fake_server.api_key = "Hello from the fake model.", None
    fake_server.reasoning = ""
    fake_server.requests.clear()
    return fake_server


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The session's PostgreSQL (tests/services.py): the server at BROOK_TEST_POSTGRES_URL, or
    a private one the suite starts when nothing answers there. Its user is a superuser."""
    return services.postgres_url()


@pytest.fixture(scope="session")
def postgres_schema(postgres_url: str) -> str:
    """A freshly migrated PostgreSQL database (the session's server)."""
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text(
            "DROP TABLE IF EXISTS messages, conversations, workers, usage, alembic_version"))
    engine.dispose()
    database.upgrade(postgres_url)
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'brook.db'}"
    url: str = request.getfixturevalue("postgres_schema")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE messages, conversations, usage"))
    engine.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'brook.db'}"


AppFactory = Callable[..., Flask]

# The per-owner limits (chat/limits.py) are off in tests that do not test them: most tests
# start many answers as one owner. tests/test_limits.py turns them on.
NO_LIMITS = dict.fromkeys((
    "LIMIT_ANSWERS_PER_MINUTE", "LIMIT_CONCURRENT_ANSWERS", "LIMIT_TOKENS_PER_DAY",
    "LIMIT_CONVERSATIONS_PER_DAY", "LIMIT_STORED_CONVERSATIONS", "BUDGET_TOKENS_PER_DAY"), "0")
# Tests turn the limits and the model's titles off unless they test them: a title's request
# to the fake model would come between the requests a test counts.
TEST_DEFAULTS = {**NO_LIMITS, "MODEL_TITLES": "false"}


def app_env(fake: FakeModelServer, database_url: str, path: Path) -> dict[str, str]:
    """The environment of a test app: the fake model, quick flushes, no retries."""
    return {
        "DATABASE_URL": database_url,
        "BROOK_INSTANCE_PATH": str(path / "instance"),
        "SECRET_KEY": "test-secret",
        "OPENAI_BASE_URL": fake.url + "/v1",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_MODEL": "fake-gpt",
        "MODEL_MAX_RETRIES": "0",
        "MODEL_TIMEOUT": "5",
        "FLUSH_INTERVAL_MS": "50",
        **TEST_DEFAULTS,
    }


@pytest.fixture
def make_app(fake: FakeModelServer, tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[AppFactory]:
    apps: list[Flask] = []

    def factory(database_url: str | None = None, **overrides: str) -> Flask:
        env = app_env(fake, database_url or f"sqlite:///{tmp_path / 'brook.db'}", tmp_path)
        env.update(overrides)
        env = {k: v for k, v in env.items() if v != ""}
        app = create_app(env)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["brook.chat"].close()
        app.extensions["brook.engine"].dispose()


class LiveServer:
    """A Flask app served by werkzeug's threaded server on a free port of 127.0.0.1."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # `stop` waits for the loop to look at its flag: every 0.5 s by default.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def client(self) -> httpx.Client:
        """A new browser-like client: its own cookie jar, so its own anonymous owner."""
        return httpx.Client(base_url=self.url, timeout=20)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], LiveServer]]:
    servers: list[LiveServer] = []

    def start(app: Flask) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live(make_app: AppFactory, serve: Callable[[Flask], LiveServer],
         database_url: str) -> LiveServer:
    return serve(make_app(database_url))


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


# -- brook serve, for real ----------------------------------------------------------------------

BROOK = str(Path(sys.executable).with_name("brook"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`brook serve` (gunicorn + gevent; `args=["--dev"]`: the development server) in its own
    process group."""

    def __init__(self, cwd: Path, env: dict[str, str], name: str = "server",
                 args: Sequence[str] = ()) -> None:
        self.cwd, self.env, self.args = cwd, {**TEST_DEFAULTS, **env}, list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = cwd / f"{name}.log"

    def start(self) -> None:
        assert not RUNNING or RUNNING[-1].get_closest_marker("slow"), (
            "this test starts `brook serve`: mark it @pytest.mark.slow")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [BROOK, "serve", *self.args, "--port", str(self.port)], cwd=self.cwd, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("brook serve did not start:\n" + self.log.read_text())

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


# -- several instances on a real Redis and PostgreSQL ---------------------------------------------

@pytest.fixture
def pg_url(postgres_schema: str) -> str:
    engine = create_engine(postgres_schema)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE messages, conversations, workers, usage"))
    engine.dispose()
    return postgres_schema


def cluster_env(fake: FakeModelServer, database_url: str, redis_url: str,
                **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "SECRET_KEY": "cluster",
        "OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "fake-gpt",
        "FLUSH_INTERVAL_MS": "100", "STREAM_LEASE_SECONDS": "2", **extra,
    }


@pytest.fixture
def cluster(tmp_path: Path, fake: FakeModelServer, pg_url: str,
            redis_server: RedisServer) -> Iterator[tuple[Server, Server]]:
    """Two `brook serve` processes sharing a Redis and a PostgreSQL, with no affinity."""
    yield from two_servers(tmp_path, cluster_env(fake, pg_url, redis_server.url))


def two_servers(path: Path, env: dict[str, str]) -> Iterator[tuple[Server, Server]]:
    """Two `brook serve` processes, "a" and "b", with one environment (for a fixture)."""
    a, b = Server(path, env, "a"), Server(path, env, "b")
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


@contextlib.contextmanager
def clients(a: Server, b: Server) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """One browser (one owner cookie) talking to both instances."""
    with httpx.Client(base_url=a.url, timeout=20) as ca:
        ca.get("/api/conversations")  # the owner cookie
        with httpx.Client(base_url=b.url, timeout=20, cookies=ca.cookies) as cb:
            yield ca, cb


# -- the browser ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread, which
    # must be gone before other modules' tests call asyncio.run().
    # Debian's chromium (or one on PATH), else Playwright's own download (tests/services.py).
    executable = services.chromium()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except PlaywrightError as error:
            if executable is not None or "Executable doesn't exist" not in str(error):
                raise
            missing = True
        else:
            missing = False
        if missing:
            pytest.fail(services.BROWSER_MISSING, pytrace=False)
        services.note_browser(executable, browser.version)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def site(make_app: AppFactory, serve: Any, sqlite_url: str) -> LiveServer:
    live: LiveServer = serve(make_app(sqlite_url))
    return live


@pytest.fixture
def chat(page: Page, site: LiveServer) -> Iterator[Page]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(site.url + "/")
    yield page
    assert errors == []


# -- helpers ----------------------------------------------------------------------------------

def new_conversation(client: httpx.Client) -> str:
    response = client.post("/api/conversations", json={})
    assert response.status_code == 201, response.text
    conversation_id: str = response.json()["id"]
    return conversation_id


def send(client: httpx.Client, conversation_id: str, content: str) -> dict[str, Any]:
    response = client.post(f"/api/conversations/{conversation_id}/messages",
                           json={"content": content})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def read_events(client: httpx.Client, url: str, headers: dict[str, str] | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    """Read SSE events until `end` (or `limit` events, then hang up)."""
    events: list[dict[str, Any]] = []
    buffer = ""
    with client.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                parsed = sse.parse(block + "\n\n")
                events.extend(parsed)
                if (limit is not None and len(events) >= limit) or any(
                        e["event"] == "end" for e in parsed):
                    return events
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["event"] == "message")


def wait_until(condition: Callable[[], object], what: str = "the condition",
               timeout: float = 30, every: float = 0.02) -> None:
    """Wait for an event a test can only observe by asking (a row, a key, a counter): ask
    `condition` until it holds. `timeout` is a ceiling for a hung test, not a speed bound:
    however long the wait took, nothing is asserted about it once the event has happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}, in vain")
        time.sleep(every)


def wait_for_answer(client: httpx.Client, conversation_id: str, message_id: str,
                    timeout: float = 15) -> dict[str, Any]:
    """Poll the conversation until the answer is no longer streaming."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        messages = client.get(f"/api/conversations/{conversation_id}").json()["messages"]
        found[:] = [next(m for m in messages if m["id"] == message_id)]
        return bool(found[0]["status"] != "streaming")

    wait_until(done, f"answer {message_id} to end", timeout, every=0.05)
    return found[0]


def directive(**options: Any) -> str:
    """A per-request instruction for the fake model server, embedded in the user's message."""
    import json

    return "@@fake" + json.dumps(options)
