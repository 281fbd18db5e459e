"""`brook db setup` against the real PostgreSQL, with roles shaped like Azure's.

On Azure Database for PostgreSQL an administrator is not a superuser: it is a login with
CREATEDB and CREATEROLE that is a member of `azure_pg_admin`, and it owns nothing it did
not create. Entra principals are created by `pgaadauth_create_principal_with_oid`, a
function of the service that runs with its rights. Each test builds that shape here, under
names of its own: a NOLOGIN `azure_pg_admin` stand-in, an administrator login in it, and the
function (SECURITY DEFINER, executable by the administrators only) in the `postgres`
database, where it records the object id as the role's comment. Everything is dropped after.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from brook import database
from brook.cli import main

STAND_IN = """
CREATE OR REPLACE FUNCTION public.pgaadauth_create_principal_with_oid(
    role_name text, object_id text, object_type text, is_admin boolean, is_mfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    EXECUTE format('CREATE ROLE %I LOGIN', role_name);
    EXECUTE format('COMMENT ON ROLE %I IS %L', role_name, object_type || ':' || object_id);
    RETURN 'Created role for "' || role_name || '"';
END $$
"""


@dataclass
class Server:
    """The names of one test's Azure-shaped server, and a superuser engine to look with."""

    admin: str  # an administrator: CREATEDB, CREATEROLE, member of pg_admin
    pg_admin: str  # stands for azure_pg_admin
    app: str  # the app's role, named like a managed identity
    database: str
    object_id: str
    base: str  # the session's PostgreSQL URL: its server, as a superuser
    superuser: Engine

    def url(self, user: str) -> str:
        return make_url(self.base).set(username=user, database=self.database) \
            .render_as_string(hide_password=False)

    def scalar(self, sql: str, database: str = "postgres", **params: object) -> object:
        engine = create_engine(make_url(self.base).set(database=database))
        try:
            with engine.connect() as connection:
                return connection.scalar(text(sql), params)
        finally:
            engine.dispose()


@pytest.fixture
def server(postgres_url: str) -> Iterator[Server]:
    suffix = uuid.uuid4().hex[:8]
    names = Server(admin=f"t_admin_{suffix}", pg_admin=f"t_pg_admin_{suffix}",
                   app=f"id-web-{suffix}", database=f"t_brook_{suffix}",
                   object_id=str(uuid.uuid4()), base=postgres_url,
                   superuser=create_engine(make_url(postgres_url).set(database="postgres"),
                                           isolation_level="AUTOCOMMIT"))
    with names.superuser.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{names.pg_admin}" NOLOGIN'))
        connection.execute(text(f'CREATE ROLE "{names.admin}" LOGIN CREATEDB CREATEROLE '
                                f'NOSUPERUSER IN ROLE "{names.pg_admin}"'))
        connection.execute(text(STAND_IN))
        connection.execute(text("REVOKE ALL ON FUNCTION public.pgaadauth_create_principal_"
                                "with_oid FROM PUBLIC"))
        connection.execute(text("GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal_"
                                f'with_oid TO "{names.pg_admin}"'))
    yield names
    with names.superuser.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{names.database}" WITH (FORCE)'))
        connection.execute(text("DROP FUNCTION IF EXISTS public.pgaadauth_create_principal_"
                                "with_oid"))
        for role in (names.app, names.admin, names.pg_admin):
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    names.superuser.dispose()


def made_by_the_service(server: Server) -> None:
    """The database as ARM creates it: by the service's own superuser, owned by it."""
    with server.superuser.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{server.database}"'))


@pytest.mark.postgres
def test_an_administrator_cannot_create_tables_in_a_database_the_service_made(
        server: Server) -> None:
    """The defect: the app as an administrator (the old templates) in the database ARM made."""
    made_by_the_service(server)
    with server.superuser.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{server.app}" LOGIN CREATEDB CREATEROLE '
                                f'IN ROLE "{server.pg_admin}"'))
    with pytest.raises(ProgrammingError, match="permission denied for schema public"):
        database.upgrade(server.url(server.app))


@pytest.mark.postgres
def test_setup_gives_a_least_privileged_role_its_database_and_the_app_works_in_it(
        server: Server) -> None:
    done = database.setup(server.url(server.app), server.admin, None, server.object_id)
    assert done == [f"Created the role {server.app} for the Microsoft Entra principal "
                    f"{server.object_id}.", f"Created the database {server.database}."]

    database.upgrade(server.url(server.app))  # as the app's role

    assert server.scalar("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles "
                         "WHERE rolname = :r", r=server.app) == f"service:{server.object_id}"
    assert server.scalar("SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls "
                         "FROM pg_roles WHERE rolname = :r", r=server.app) is False
    assert server.scalar("SELECT pg_has_role(:r, :a, 'MEMBER')",
                         r=server.app, a=server.pg_admin) is False
    assert server.scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d",
                         d=server.database) == server.admin
    owners = server.scalar("SELECT array_agg(DISTINCT tableowner) FROM pg_tables "
                           "WHERE schemaname = 'public'", database=server.database)
    assert owners == [server.app]
    app = create_engine(server.url(server.app))
    try:
        with app.begin() as connection:
            connection.execute(text("INSERT INTO conversations (id, owner, title, created_at, "
                                    "updated_at) VALUES (gen_random_uuid(), 'o', 't', now(), "
                                    "now())"))
            assert connection.scalar(text("SELECT count(*) FROM conversations")) == 1
        with app.connect() as connection, pytest.raises(
                ProgrammingError, match="permission denied to create role"):
            connection.execute(text('CREATE ROLE "someone_else"'))
    finally:
        app.dispose()


@pytest.mark.postgres
def test_setup_run_by_several_instances_at_once_and_again_changes_nothing_more(
        server: Server) -> None:
    gate = threading.Barrier(4)
    failures: list[BaseException] = []
    results: list[list[str]] = []

    def one() -> None:
        try:
            gate.wait()
            results.append(database.setup(server.url(server.app), server.admin, None,
                                          server.object_id))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(map(len, results)) == [0, 0, 0, 2]  # one created both; the rest found them
    assert database.setup(server.url(server.app), server.admin, None, server.object_id) == []
    database.upgrade(server.url(server.app))


@pytest.mark.postgres
def test_setup_in_a_database_it_cannot_grant_in_says_whose_it_is_and_what_to_do(
        server: Server) -> None:
    made_by_the_service(server)
    with pytest.raises(database.SetupError) as caught:
        database.setup(server.url(server.app), server.admin, None, server.object_id)
    message = str(caught.value)
    assert f"belongs to {make_url(server.base).username}" in message
    assert "delete it" in message


@pytest.mark.postgres
def test_setup_without_the_app_role_or_its_object_id_changes_nothing(server: Server) -> None:
    with pytest.raises(database.SetupError, match="--app-object-id"):
        database.setup(server.url(server.app), server.admin)
    assert server.scalar("SELECT count(*) FROM pg_roles WHERE rolname = :r", r=server.app) == 0
    assert server.scalar("SELECT count(*) FROM pg_database WHERE datname = :d",
                         d=server.database) == 0


@pytest.mark.postgres
def test_password_mode_the_administrator_is_the_app_and_owns_its_database(
        server: Server) -> None:
    url = server.url(server.admin)
    assert database.setup(url) == [f"Created the database {server.database}."]
    database.upgrade(url)
    assert database.setup(url) == []


@pytest.mark.postgres
def test_the_command_sets_up_the_database_named_by_database_url(server: Server) -> None:
    result = CliRunner().invoke(
        main, ["db", "setup", "--admin-role", server.admin, "--app-object-id", server.object_id],
        env={"DATABASE_URL": server.url(server.app), "DATABASE_ENTRA_AUTH": "false"})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "The database is set up."
    again = CliRunner().invoke(main, ["db", "setup", "--admin-role", server.admin],
                               env={"DATABASE_URL": server.url(server.app)})
    assert again.output == "The database is set up.\n"


def test_setup_is_for_postgresql_only(tmp_path: object) -> None:
    with pytest.raises(database.SetupError, match="for PostgreSQL"):
        database.setup("sqlite:///brook.db")


@pytest.mark.parametrize("command", [["db", "setup"], ["db", "upgrade"]])
def test_a_database_out_of_reach_is_one_plain_line(command: list[str]) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = CliRunner().invoke(main, command, env={
        "DATABASE_URL": f"postgresql://brook:s3cret-pw@127.0.0.1:{port}/brook"})
    assert result.exit_code == 1
    assert "Could not use the database at DATABASE_URL:" in result.output
    assert f"port {port}" in result.output
    assert "Traceback" not in result.output
    assert "s3cret-pw" not in result.output
