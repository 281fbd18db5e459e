"""The `brook` command: `brook serve [--dev]`, `brook db upgrade`, `brook db seed`, and Flask's
own commands."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from . import azure_credential, create_app, database
from .config import ConfigError, Settings, load_settings


def _settings_from_env() -> Settings:
    """The settings from `.env` and the environment, or a plain error for the console."""
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _reaching_the_database() -> Iterator[None]:
    """A database that cannot be reached (down, wrong host, sign-in refused) as one line on
    the console, not a traceback: psycopg's first line names the host, never a password."""
    try:
        yield
    except OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise click.ClickException(f"Could not use the database at DATABASE_URL: {first}"
                                   ) from None


def _cli_app() -> Flask:
    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=FlaskGroup, create_app=_cli_app, add_default_commands=True)
def main() -> None:
    """Brook: a chat app that streams model answers over server-sent events."""


@main.group("db")
def db_group() -> None:
    """Database commands."""


@db_group.command("upgrade", with_appcontext=False)
def db_upgrade() -> None:
    """Apply the database migrations (SQLite or the PostgreSQL at DATABASE_URL)."""
    settings = _settings_from_env()
    with _reaching_the_database():
        database.upgrade(settings.database_url, azure_credential(settings)
                         if settings.database_entra_auth else None)
    click.echo("Database is up to date.")


@db_group.command("setup", with_appcontext=False)
@click.option("--admin-role", default=None, metavar="ROLE",
              help="The administrator to sign in as (default: DATABASE_URL's user).")
@click.option("--admin-client-id", default=None, metavar="CLIENT_ID",
              help="With DATABASE_ENTRA_AUTH: the client id of the user-assigned managed "
                   "identity that ROLE stands for (default: DefaultAzureCredential).")
@click.option("--app-object-id", default=None, metavar="OBJECT_ID",
              help="The object id of the managed identity DATABASE_URL's user stands for: "
                   "its Microsoft Entra role is created if missing.")
def db_setup(admin_role: str | None, admin_client_id: str | None,
             app_object_id: str | None) -> None:
    """Create DATABASE_URL's role and database on PostgreSQL, as an administrator, and grant
    the role what `brook db upgrade` and Brook need (docs/deploy.md)."""
    settings = _settings_from_env()
    credential = None
    if settings.database_entra_auth:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        credential = (ManagedIdentityCredential(client_id=admin_client_id) if admin_client_id
                      else DefaultAzureCredential())
    try:
        with _reaching_the_database():
            done = database.setup(settings.database_url, admin_role, credential, app_object_id)
    except database.SetupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if credential is not None:
            credential.close()
    for line in done:
        click.echo(line)
    click.echo("The database is set up.")


@db_group.command("seed", with_appcontext=False)
@click.option("--count", type=click.IntRange(1, 100_000), default=25, show_default=True,
              help="Conversations to add.")
@click.option("--seed", "seed_value", type=int, default=None,
              help="Random seed: the same seed makes the same conversations.")
@click.option("--owner", default=None,
              help="Owner id to seed for [default: demo:brook-seed].")
@click.option("--owner-of", "owner_of", default=None, metavar="CONVERSATION_ID",
              help="Seed for the owner of this conversation: open one in your browser and "
                   "copy the id after #c= in the address bar.")
@click.option("--reset", is_flag=True,
              help="First delete the conversations earlier seeds made for this owner.")
def db_seed(count: int, seed_value: int | None, owner: str | None, owner_of: str | None,
            reset: bool) -> None:
    """Fill the database with realistic demo conversations (made up with Faker)."""
    import uuid

    from .models import Conversation
    from .seed import DEMO_OWNER, seed_demo

    if owner and owner_of:
        raise click.UsageError("Give --owner or --owner-of, not both.")
    settings = _settings_from_env()
    engine = database.make_engine(settings.database_url, azure_credential(settings)
                            if settings.database_entra_auth else None)
    try:
        try:
            database.ensure_schema(engine)  # migrates SQLite; PostgreSQL needs `brook db upgrade`
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        with sessionmaker(engine)() as session:
            if owner_of:
                try:
                    conversation = session.get(Conversation, uuid.UUID(owner_of.strip()))
                except ValueError:
                    conversation = None
                if conversation is None:
                    raise click.ClickException(f"No conversation {owner_of} in the database.")
                owner = conversation.owner
            owner = owner or DEMO_OWNER
            result = seed_demo(session, owner=owner, count=count, seed=seed_value,
                               reset=reset)
    finally:
        engine.dispose()
    if result.deleted:
        click.echo(f"Deleted {result.deleted} conversation(s) from earlier seeds.")
    click.echo(f"Added {result.conversations} conversation(s) with {result.messages} "
               f"messages for owner {owner}.")


@main.command("serve", with_appcontext=False)
@click.option("--dev", is_flag=True, help="Flask's reloading development server.")
# The defaults are the settings' (HOST, PORT, WEB_CONCURRENCY, also from `.env`), read after
# the command line is parsed: a bad variable is then reported like any other.
@click.option("--host", default=None, show_default="HOST or 127.0.0.1")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              show_default="PORT or 8000")
@click.option("--workers", type=click.IntRange(1), default=None,
              show_default="WEB_CONCURRENCY or 1")
def serve(dev: bool, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve Brook: gunicorn with gevent workers, or the dev server with --dev."""
    settings = _settings_from_env()
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    workers = settings.web_concurrency if workers is None else workers
    if settings.database_url.startswith("sqlite:"):
        database.upgrade(settings.database_url)
    # Answers the previous run of this server left `streaming` cannot continue: each
    # worker's first sweep marks them `interrupted`, with every word that survived.
    if dev:
        from werkzeug.serving import run_simple

        # Flask's debug mode, as `flask --debug run` sets it (the reloader's child inherits
        # it): templates reload, and static files are not cached (assets.py). A write, for
        # Flask to read: the one place outside config.py that touches the environment.
        os.environ["FLASK_DEBUG"] = "1"
        # Flask's app.run() refuses to run under the flask CLI; werkzeug's is what it calls.
        run_simple(host, port, _cli_app(), use_reloader=True, use_debugger=True,
                   threaded=True)
        return
    from .serving import run_gunicorn

    run_gunicorn(host, port, workers)
