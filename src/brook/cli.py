"""The `brook` command: `brook serve [--dev]`, `brook db upgrade`, and Flask's own commands."""

from __future__ import annotations

import os
from typing import Any

import click
from dotenv import load_dotenv
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy.orm import sessionmaker

from . import azure_credential, create_app, db
from .config import ConfigError, load_settings


def _settings_from_env() -> Any:
    load_dotenv(".env")
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


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
    db.upgrade(settings.database_url, azure_credential(settings)
               if settings.database_entra_auth else None)
    click.echo("Database is up to date.")


@main.command("serve", with_appcontext=False)
@click.option("--dev", is_flag=True, help="Flask's reloading development server.")
@click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"),
              show_default="HOST or 127.0.0.1")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8000")),
              show_default="PORT or 8000")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", "1")),
              show_default="WEB_CONCURRENCY or 1")
def serve(dev: bool, host: str, port: int, workers: int) -> None:
    """Serve Brook: gunicorn with gevent workers, or the dev server with --dev."""
    settings = _settings_from_env()
    # Answers left `streaming` by the previous run of this server cannot continue.
    credential = azure_credential(settings) if settings.database_entra_auth else None
    if settings.database_url.startswith("sqlite:"):
        db.upgrade(settings.database_url)
    engine = db.make_engine(settings.database_url, credential)
    count = db.mark_interrupted(sessionmaker(engine))
    engine.dispose()  # before gunicorn forks: workers open their own connections
    if count:
        click.echo(f"Marked {count} unfinished answer(s) from the last run as interrupted.")
    if dev:
        from werkzeug.serving import run_simple

        # Flask's app.run() refuses to run under the flask CLI; werkzeug's is what it calls.
        run_simple(host, port, _cli_app(), use_reloader=True, use_debugger=True,
                   threaded=True)
        return
    from .serving import run_gunicorn

    run_gunicorn(host, port, workers)
