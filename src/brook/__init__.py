"""Brook: a Flask app that streams a language model's answers over server-sent events."""

from __future__ import annotations

import atexit
import logging
import os
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from azure.core.credentials import TokenCredential
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import assets, database, db, errors
from .chat.bus import LocalBus
from .chat.redis_bus import RedisBus
from .chat.service import ChatService
from .chat.tokens import TokenCounter, cached_encoding
from .config import Settings, load_settings
from .providers import build_models
from .telemetry import init_telemetry, instrument

__all__ = ["create_app"]


def create_app(env: Mapping[str, str] | None = None, *,
               credential: TokenCredential | None = None) -> Flask:
    """The app factory.

    `env` replaces the process environment for Brook's settings (tests pass their own);
    without it Brook reads the process environment, after loading `.env` from the working
    directory if there is one (see config.py).
    `credential` signs in to Azure (Entra ID) where keyless access is configured; by default
    a `DefaultAzureCredential` (managed identity in Azure, developer sign-in locally).
    """
    settings = load_settings(env)
    instance = settings.instance_path
    _configure_logging(settings)
    credential = credential or azure_credential(settings)
    telemetry = init_telemetry(settings,
                               credential if settings.appinsights_entra_auth else None)
    # Static files under /static/<hash of their bytes>/: see assets.py.
    app = Flask(__name__, instance_path=str(instance),
                static_url_path=f"/static/{assets.static_version()}")
    if telemetry:
        instrument(app)
    app.config.update(
        BROOK_SETTINGS=settings,
        SECRET_KEY=settings.secret_key or _instance_secret(Path(app.instance_path)),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="brook_session",
        PERMANENT_SESSION_LIFETIME=timedelta(days=365),
        MAX_CONTENT_LENGTH=settings.max_message_chars * 4 + 64 * 1024,
        JSON_SORT_KEYS=False,
    )
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    db_credential = credential if settings.database_entra_auth else None
    engine = database.make_engine(settings.database_url, db_credential,
                                  settings.database_pool_timeout, settings.database_pool_size)
    try:
        database.ensure_schema(engine)
    except Exception:
        engine.dispose()
        raise
    sessions = db.init_app(app, engine)
    errors.init_app(app)
    assets.init_app(app)

    # The heartbeat's own connection: it renews from an OS thread (chat/liveness.py).
    heartbeat_engine = database.make_engine(settings.database_url, db_credential, pool_size=1)
    chat = ChatService(sessions, build_models(settings, credential), settings,
                       TokenCounter(cached_encoding()), make_bus(settings), heartbeat_engine)
    chat.start()
    app.extensions["brook.chat"] = chat
    atexit.register(chat.close)

    from . import admin, api, web

    app.register_blueprint(api.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(admin.bp)
    if settings.auth_mode == "oidc":
        # Only here: Authlib brings requests and cryptography, 360 modules and a seventh
        # more objects for every garbage collection to walk.
        from . import auth

        auth.init_app(app, settings)
    return app


def azure_credential(settings: Settings) -> TokenCredential | None:
    """One Entra ID credential for the app, when something signs in without a key."""
    keyless_openai = any(spec.provider == "azure" and not spec.api_key
                         for spec in settings.model_specs)
    if not (keyless_openai or settings.database_entra_auth or settings.appinsights_entra_auth):
        return None
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    atexit.register(credential.close)
    return credential


def make_bus(settings: Settings) -> LocalBus:
    """The stream bus: Redis Streams when REDIS_URL is set, else this process's memory."""
    if settings.redis_url:
        return RedisBus(settings.redis_url, settings.stream_coalesce,
                        settings.stream_keepalive, settings.stream_expire)
    return LocalBus(settings.stream_coalesce, settings.stream_keepalive)


def _instance_secret(instance: Path) -> str:
    """A random secret kept in the instance folder, for installs that set no SECRET_KEY."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _configure_logging(settings: Settings) -> None:
    logging.getLogger("brook").setLevel(settings.log_level)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
