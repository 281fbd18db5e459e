"""`brook db upgrade` on a shared PostgreSQL: every instance runs it as it starts."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from brook import database

pytestmark = pytest.mark.postgres


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database of its own (dropped afterwards)."""
    name = f"brook_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(postgres_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrades_started_at_once_both_succeed(empty_database: str) -> None:
    """Two instances starting together: one migrates, the other waits and finds it done.
    Without the advisory lock they create the same tables at once, and wait on each other
    or fail."""
    gate = threading.Barrier(4)
    failures: list[BaseException] = []

    def upgrade() -> None:
        gate.wait()
        try:
            database.upgrade(empty_database)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), \
        "an upgrade never finished: it waits on another's uncommitted tables"
    assert not failures, failures
    engine = create_engine(empty_database)
    try:
        assert {"conversations", "messages", "alembic_version"} <= set(
            inspect(engine).get_table_names())
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
    finally:
        engine.dispose()
