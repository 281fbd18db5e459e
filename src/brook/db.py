"""The database: one engine per app, a session per request, migrations with Alembic."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from azure.core.credentials import TokenCredential
from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine, create_engine, event, select, update
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from .config import ConfigError
from .models import Message, utcnow

MIGRATIONS = Path(__file__).parent / "migrations"


PING_AFTER_IDLE_SECONDS = 1.0

POSTGRES_ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


def make_engine(url: str, credential: TokenCredential | None = None,
                pool_timeout: float = 30.0) -> Engine:
    """Create the engine; SQLite gets WAL, a busy timeout and enforced foreign keys.

    A request that finds all 50 pooled connections in use waits up to `pool_timeout`
    seconds for one, then is answered 503 `overloaded` (see errors.py).

    With `credential` (Microsoft Entra ID), each new PostgreSQL connection signs in with a
    fresh access token as its password; the credential caches tokens and renews them before
    they expire, and connections are recycled well within a token's hour.
    """
    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=10, max_overflow=40,
                               pool_timeout=pool_timeout)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=40, pool_recycle=1800,
                           pool_timeout=pool_timeout)
    _ping_after_idle(engine)
    if credential is not None:
        token_source = credential

        @event.listens_for(engine, "do_connect")
        def _entra_password(_dialect: Any, _record: Any, _args: Any,
                            params: dict[str, Any]) -> None:
            params["password"] = token_source.get_token(POSTGRES_ENTRA_SCOPE).token

    return engine


def _ping_after_idle(engine: Engine) -> None:
    """Check a pooled connection that has sat idle before handing it out; replace it if dead.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: a round trip that under load cost
    7 % of the worker's CPU. A server restart takes longer than PING_AFTER_IDLE_SECONDS, so
    a connection it broke has been idle at least that long when it is next checked out, and
    is pinged; one that failed in use meanwhile has already had the pool invalidated.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            # As pre-ping does: replace every connection opened before now, then retry.
            raise InvalidatePoolError(str(exc)) from exc


def upgrade(url: str, credential: TokenCredential | None = None) -> None:
    """Apply every Alembic migration up to head (the same scripts for SQLite and PostgreSQL)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, credential)
    try:
        with engine.begin() as connection:
            _upgrade_on(connection)
    finally:
        engine.dispose()


def _upgrade_on(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def ensure_schema(engine: Engine) -> None:
    """Bring SQLite up to date on start; refuse to start on an outdated PostgreSQL.

    Migrating a shared server is an explicit step (`brook db upgrade`, run by the Azure
    start-up command) so that several instances never race to migrate it.
    """
    script = ScriptDirectory(str(MIGRATIONS))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == script.get_current_head():
        return
    if engine.dialect.name == "sqlite":
        with engine.begin() as connection:
            _upgrade_on(connection)
        return
    raise ConfigError(
        f"The database at DATABASE_URL is at migration {current or 'none'}, not "
        f"{script.get_current_head()}: run `brook db upgrade` first."
    )


def mark_interrupted(sessions: sessionmaker[Session]) -> int:
    """At start-up: mark answers whose generating process is gone as `interrupted`, text kept.

    Gone means its lease ran out, or it ran on this host under a pid that no longer exists
    (a restart of this server). Answers that other live instances are writing are left alone.
    """
    host = socket.gethostname()
    now = utcnow()
    with sessions.begin() as session:
        rows = session.execute(
            select(Message.id, Message.worker, Message.lease_until)
            .where(Message.status == "streaming")
        ).all()
        dead = [message_id for message_id, worker, lease_until in rows
                if lease_until is None or _as_utc(lease_until) < now
                or _dead_here(worker, host)]
        if dead:
            session.execute(
                update(Message)
                .where(Message.id.in_(dead), Message.status == "streaming")
                .values(status="interrupted", updated_at=now, lease_until=None)
            )
        return len(dead)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; Brook stores UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dead_here(worker: str | None, host: str) -> bool:
    if not worker or worker.count(":") < 2:
        return False
    worker_host, pid, _nonce = worker.rsplit(":", 2)
    if worker_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process nobody has reaped yet is a zombie: dead all the same
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def get_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["brook.sessions"]()
    session: Session = g.db_session
    return session


def autocommit(session: Session) -> Session:
    """Run the session's statements each on its own, outside a transaction.

    For work that is one statement, or only reads, this saves a BEGIN and a COMMIT (or
    ROLLBACK): on PostgreSQL two of the three round trips, each of which suspends the
    request's greenlet. Call it before the session's first statement.
    """
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask, engine: Engine) -> sessionmaker[Session]:
    sessions = sessionmaker(engine, expire_on_commit=False)
    app.extensions["brook.engine"] = engine
    app.extensions["brook.sessions"] = sessions
    app.teardown_appcontext(_close_session)
    return sessions
