"""The database: engines, migrations with Alembic, and sessions outside a transaction.

No Flask here: the chat package uses it too. The request's session is db.py's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from azure.core.credentials import TokenCredential
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from .config import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock every `brook db upgrade` holds while it migrates ("brook").
MIGRATION_LOCK = 0x62726F6F6B
# The one every `brook db setup` holds: concurrent GRANTs on one object fail in PostgreSQL.
SETUP_LOCK = MIGRATION_LOCK + 1


PING_AFTER_IDLE_SECONDS = 1.0

POSTGRES_ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


def make_engine(url: str, credential: TokenCredential | None = None,
                pool_timeout: float = 30.0, pool_size: int = 20) -> Engine:
    """Create the engine; SQLite gets WAL, a busy timeout and enforced foreign keys.

    The pool keeps up to `pool_size` connections open and opens no more: PostgreSQL counts
    every connection of every worker of every instance against its `max_connections` (100
    by default; fewer on Azure's smallest tiers), and a burst that opened dozens at once
    would make the server fork a backend for each. A request that finds them all in use
    waits up to `pool_timeout` seconds for one, then is answered 503 `overloaded`
    (see errors.py).

    With `credential` (Microsoft Entra ID), each new PostgreSQL connection signs in with a
    fresh access token as its password; the credential caches tokens and renews them before
    they expire, and connections are recycled well within a token's hour.
    """
    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=pool_size,
                               max_overflow=0, pool_timeout=pool_timeout)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=0,
                           pool_recycle=1800, pool_timeout=pool_timeout)
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


def fill_pool(engine: Engine) -> None:
    """Open every pooled connection now, so that the first burst of requests finds them open.

    For PostgreSQL, where a new connection is a new server process (several milliseconds of
    CPU each, on a machine Brook may share with the database); run in the background.
    """
    if engine.dialect.name == "sqlite":
        return
    held = []
    try:
        for _ in range(engine.pool.size()):  # type: ignore[attr-defined]
            held.append(engine.connect())
    except Exception:  # the database is away: the pool opens connections as it needs them
        logging.getLogger(__name__).info("could not open the pool's connections ahead",
                                         exc_info=True)
    finally:
        for connection in held:
            connection.close()


def upgrade(url: str, credential: TokenCredential | None = None) -> None:
    """Apply every Alembic migration up to head (the same scripts for SQLite and PostgreSQL).

    Every instance runs this as it starts (the Azure start-up command does), so on
    PostgreSQL it first takes a transaction-scoped advisory lock: one instance migrates, the
    others wait for its commit and then find the schema at head, where two migrating at once
    would both create the same tables and one would fail to start.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, credential)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK})
            _upgrade_on(connection)
    finally:
        engine.dispose()


class SetupError(Exception):
    """`brook db setup` cannot do what it must; the message says why and what to do."""


def setup(url: str, admin_role: str | None = None, credential: TokenCredential | None = None,
          app_object_id: str | None = None) -> list[str]:
    """Give the app at `url` its role and database on a PostgreSQL server, as an administrator.

    Signed in to the server's `postgres` database as `admin_role` (by default `url`'s own
    user, whose password `url` carries; with `credential`, a Microsoft Entra token is the
    password), this creates `url`'s user as an Entra principal with object id
    `app_object_id` if that role is missing, creates `url`'s database if it is missing (the
    administrator owns it), and grants the app's role CONNECT and TEMPORARY on it and USAGE
    and CREATE on its schema `public`. `brook db upgrade`, run as the app's role, then
    creates the tables, and the app's role owns them: it needs no administrator rights.

    Why: on Azure an administrator is a member of `azure_pg_admin`, not a superuser, and
    from PostgreSQL 15 on only the database's owner may create in `public` or grant that
    right. A database made by the service itself belongs to no administrator. It is
    idempotent and holds an advisory lock, so every instance may run it as it starts.
    Returns what it changed, for the console.
    """
    app = make_url(url)
    if app.get_backend_name() != "postgresql":
        raise SetupError("`brook db setup` is for PostgreSQL; DATABASE_URL is "
                         f"{app.get_backend_name()}.")
    app_role, name = app.username, app.database
    if not app_role or not name:
        raise SetupError("DATABASE_URL names no user or no database.")
    admin_role = admin_role or app_role
    admin = app.set(username=admin_role, database="postgres")
    if admin_role != app_role:
        admin = admin.set(password=None)
    done: list[str] = []
    server = make_engine(admin.render_as_string(hide_password=False), credential, pool_size=1)
    try:
        with server.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            quote = connection.dialect.identifier_preparer.quote_identifier
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SETUP_LOCK})
            try:
                if admin_role != app_role and not connection.scalar(
                        text("SELECT 1 FROM pg_roles WHERE rolname = :role"),
                        {"role": app_role}):
                    if not app_object_id:
                        raise SetupError(
                            f"The role {app_role} (DATABASE_URL's user) does not exist: pass "
                            "--app-object-id, the object id of the managed identity it "
                            "stands for, to create it as a Microsoft Entra principal.")
                    connection.execute(text(
                        "SELECT * FROM pgaadauth_create_principal_with_oid("
                        ":role, :object_id, 'service', false, false)"),
                        {"role": app_role, "object_id": app_object_id})
                    done.append(f"Created the role {app_role} for the Microsoft Entra "
                                f"principal {app_object_id}.")
                if not connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                         {"name": name}):
                    connection.execute(text(f"CREATE DATABASE {quote(name)}"))
                    done.append(f"Created the database {name}.")
                if admin_role != app_role:
                    inside = make_engine(admin.set(database=name).render_as_string(
                        hide_password=False), credential, pool_size=1)
                    try:
                        _grant(inside, connection, name, app_role)
                    finally:
                        inside.dispose()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SETUP_LOCK})
    finally:
        server.dispose()
    return done


def _grant(inside: Engine, server: Connection, name: str, role: str) -> None:
    """Grant `role` its rights in database `name`, and check them: a GRANT by a role that
    may not give a right is only a warning in PostgreSQL, not an error."""
    quote = server.dialect.identifier_preparer.quote_identifier
    server.execute(text(f"GRANT CONNECT, TEMPORARY ON DATABASE {quote(name)} TO {quote(role)}"))
    with inside.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"GRANT USAGE, CREATE ON SCHEMA public TO {quote(role)}"))
        granted = connection.scalar(
            # Each privilege apart: with several, has_*_privilege asks for any one of them.
            text("SELECT has_database_privilege(:role, current_database(), 'CONNECT') "
                 "AND has_schema_privilege(:role, 'public', 'USAGE') "
                 "AND has_schema_privilege(:role, 'public', 'CREATE')"), {"role": role})
    if not granted:
        owner = server.scalar(text("SELECT pg_get_userbyid(datdba) FROM pg_database "
                                   "WHERE datname = :name"), {"name": name})
        raise SetupError(
            f"Could not grant {role} its rights in the database {name}, which belongs to "
            f"{owner}: only its owner (or a member of the owner's role) may. If it holds "
            "nothing yet (templates before December 2026 created it empty), delete it "
            "(az postgres flexible-server db delete) and start again: `brook db setup` then "
            "creates it.")


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


def autocommit(session: Session) -> Session:
    """Run the session's statements each on its own, outside a transaction.

    For work that is one statement, or only reads, this saves a BEGIN and a COMMIT (or
    ROLLBACK): on PostgreSQL two of the three round trips, each of which suspends the
    request's greenlet. Call it before the session's first statement.
    """
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


# One day of an old owner's usage (a row DELETE ... RETURNING gave back) added to the new
# owner's row of that day: the counts add up; of the two minute windows the later one is
# kept, and its answers are added when both rows are in the same minute. SQLite (3.35+,
# as for the limits' RETURNING) and PostgreSQL spell this upsert alike.
_MERGE_USAGE = text(
    "INSERT INTO usage (owner, day, answers, tokens, conversations, minute, minute_answers) "
    "VALUES (:new, :day, :answers, :tokens, :conversations, :minute, :minute_answers) "
    "ON CONFLICT (owner, day) DO UPDATE SET "
    "answers = usage.answers + excluded.answers, "
    "tokens = usage.tokens + excluded.tokens, "
    "conversations = usage.conversations + excluded.conversations, "
    "minute = CASE WHEN usage.minute IS NULL OR excluded.minute > usage.minute "
    "THEN excluded.minute ELSE usage.minute END, "
    "minute_answers = CASE WHEN excluded.minute = usage.minute "
    "THEN usage.minute_answers + excluded.minute_answers "
    "WHEN usage.minute IS NULL OR excluded.minute > usage.minute "
    "THEN excluded.minute_answers ELSE usage.minute_answers END")


def move_owner(session: Session, old_owner: str, new_owner: str) -> int:
    """Give everything of `old_owner` to `new_owner` (an anonymous browser's, when its user
    signs in), in one transaction; commits. Returns how many conversations moved.

    The conversations change owner. The old owner's usage (table `usage`: what the limits
    count) is merged into the new owner's, day by day (answers, tokens and conversations
    add up; the later minute window is kept), so signing in neither hides today's usage
    nor resets the limits. The old rows are deleted first and what that DELETE returns is
    merged: a count added to them meanwhile (an answer that ends) is in what moves or, if
    it waited for the rows' lock, stays the old owner's; none is lost between a copy and a
    delete.
    """
    result = session.execute(text("UPDATE conversations SET owner = :new WHERE owner = :old"),
                             {"new": new_owner, "old": old_owner})
    moved = int(getattr(result, "rowcount", 0) or 0)
    days = session.execute(
        text("DELETE FROM usage WHERE owner = :old RETURNING day, answers, tokens, "
             "conversations, minute, minute_answers"), {"old": old_owner}).mappings().all()
    if days:
        session.execute(_MERGE_USAGE, [{**day, "new": new_owner} for day in days])
    session.commit()
    return moved
