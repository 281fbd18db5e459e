"""Settings: defaults, every variable, and start-up stopping with a message saying what to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from brook import create_app
from brook.cli import main
from brook.config import (
    DEFAULT_LOCAL_MODEL,
    DEFAULT_SYSTEM_PROMPT,
    ConfigError,
    environment_variables,
    library_environment,
    load_serving_settings,
    load_settings,
    local_model_installed,
)


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({}, tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'brook.db'}"
    if local_model_installed():  # the `local` extra: auto picks the in-process model
        assert settings.provider == "local"
        assert settings.model_name == DEFAULT_LOCAL_MODEL
    else:
        assert settings.provider == "none"
        assert settings.model_name is None
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert settings.max_message_chars == 32_000
    assert settings.flush_interval == 0.25
    assert settings.auth_appservice is False
    assert settings.local_model_thinking is False  # until the page shows reasoning (issue 16)


def test_every_variable(tmp_path: Path) -> None:
    settings = load_settings({
        "DATABASE_URL": "postgresql://brook@db.example:5432/brook",
        "SECRET_KEY": "s", "OPENAI_API_KEY": "sk-1", "OPENAI_MODEL": "gpt-x",
        "MODEL_TIMEOUT": "12.5", "MODEL_CONNECT_TIMEOUT": "3", "MODEL_MAX_RETRIES": "0",
        "SYSTEM_PROMPT": "Be brief.", "PROMPT_TOKEN_BUDGET": "900", "MAX_MESSAGE_CHARS": "10",
        "FLUSH_INTERVAL_MS": "100", "FLUSH_CHARS": "50", "WEBSITE_AUTH_ENABLED": "True",
        "TRUSTED_PROXIES": "1", "LOG_LEVEL": "debug", "LOCAL_MODEL_THINKING": "true",
    }, tmp_path)
    assert settings.database_url == "postgresql+psycopg://brook@db.example:5432/brook"
    assert settings.provider == "openai"
    assert settings.model_name == "gpt-x"
    assert (settings.model_timeout, settings.model_connect_timeout) == (12.5, 3.0)
    assert settings.model_max_retries == 0
    assert settings.system_prompt == "Be brief."
    assert (settings.prompt_token_budget, settings.max_message_chars) == (900, 10)
    assert (settings.flush_interval, settings.flush_chars) == (0.1, 50)
    assert settings.auth_appservice is True
    assert settings.trusted_proxies == 1
    assert settings.log_level == "DEBUG"
    assert settings.local_model_thinking is True
    assert "sk-1" not in repr(settings)


def test_providers_chosen_from_variables(tmp_path: Path) -> None:
    base = {"OPENAI_BASE_URL": "http://localhost:11434/v1"}
    assert load_settings(base, tmp_path).provider == "openai"
    azure = {"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
             "AZURE_OPENAI_DEPLOYMENT": "chat"}
    settings = load_settings(azure, tmp_path)
    assert settings.provider == "azure"
    assert settings.model_name == "chat"
    both = {**azure, "OPENAI_API_KEY": "k"}
    assert load_settings({**both, "MODEL_PROVIDER": "azure"}, tmp_path).provider == "azure"
    assert load_settings({**both, "MODEL_PROVIDER": "openai"}, tmp_path).provider == "openai"
    assert load_settings({**both, "MODEL_PROVIDER": "none"}, tmp_path).provider == "none"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "https://x", "OPENAI_API_KEY": "k"}, ["MODEL_PROVIDER"]),
        ({"AZURE_OPENAI_ENDPOINT": "https://x"}, ["AZURE_OPENAI_DEPLOYMENT"]),
        ({"MODEL_PROVIDER": "azure"}, ["AZURE_OPENAI_ENDPOINT"]),
        ({"MODEL_PROVIDER": "openai"}, ["OPENAI_API_KEY", "OPENAI_BASE_URL"]),
        ({"MODEL_PROVIDER": "gemini"}, ["MODEL_PROVIDER"]),
        ({"MODEL_TIMEOUT": "soon"}, ["MODEL_TIMEOUT"]),
        ({"MODEL_TIMEOUT": "0"}, ["MODEL_TIMEOUT"]),
        ({"MODEL_MAX_RETRIES": "-1"}, ["MODEL_MAX_RETRIES"]),
        ({"PROMPT_TOKEN_BUDGET": "lots"}, ["PROMPT_TOKEN_BUDGET"]),
        ({"MAX_MESSAGE_CHARS": "0"}, ["MAX_MESSAGE_CHARS"]),
        ({"FLUSH_INTERVAL_MS": "0.5"}, ["FLUSH_INTERVAL_MS"]),
        ({"WEBSITE_AUTH_ENABLED": "maybe"}, ["WEBSITE_AUTH_ENABLED"]),
        ({"TRUSTED_PROXIES": "x"}, ["TRUSTED_PROXIES"]),
        ({"AUTH_MODE": "sso"}, ["AUTH_MODE"]),
        ({"AUTH_MODE": "appservice"}, ["AUTH_MODE", "WEBSITE_AUTH_ENABLED"]),
        ({"AUTH_MODE": "oidc"}, ["OIDC_ISSUER"]),
        ({"AUTH_MODE": "oidc", "OIDC_ISSUER": "https://id.example"}, ["OIDC_CLIENT_ID"]),
        ({"AUTH_MODE": "oidc", "OIDC_ISSUER": "http://id.example", "OIDC_CLIENT_ID": "c"},
         ["OIDC_ISSUER"]),
        ({"AUTH_MODE": "oidc", "OIDC_ISSUER": "https://id.example", "OIDC_CLIENT_ID": "c",
          "OIDC_SCOPES": "email"}, ["OIDC_SCOPES"]),
        ({"LOG_LEVEL": "LOUD"}, ["LOG_LEVEL"]),
        ({"LOCAL_MODEL_THINKING": "sometimes"}, ["LOCAL_MODEL_THINKING"]),
        ({"DATABASE_URL": "mysql://root@localhost/brook"}, ["DATABASE_URL"]),
        ({"DATABASE_ENTRA_AUTH": "true"}, ["DATABASE_ENTRA_AUTH", "DATABASE_URL"]),
        ({"REDIS_URL": "http://cache:6379"}, ["REDIS_URL"]),
        ({"STREAM_COALESCE_MS": "-1"}, ["STREAM_COALESCE_MS"]),
        ({"MAX_EVENT_LOOP_LAG_MS": "0"}, ["MAX_EVENT_LOOP_LAG_MS"]),
        ({"SHUTDOWN_GRACE_SECONDS": "-5"}, ["SHUTDOWN_GRACE_SECONDS"]),
        ({"PORT": "99999"}, ["PORT"]),
        ({"WEB_CONCURRENCY": "0"}, ["WEB_CONCURRENCY"]),
        ({"GUNICORN_WORKER_CONNECTIONS": "many"}, ["GUNICORN_WORKER_CONNECTIONS"]),
        # App Service passes on a Key Vault reference it could not resolve as its text.
        ({"SECRET_KEY": "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/"
                        "secret-key)"}, ["SECRET_KEY", "Key Vault Secrets User"]),
    ],
)
def test_bad_settings_name_the_variable(tmp_path: Path, env: dict[str, str],
                                        names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, tmp_path)
    message = str(caught.value)
    for name in names:
        assert name in message
    assert "set" in message.lower()


def test_app_factory_stops_on_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_DEPLOYMENT"):
        create_app({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
                    "BROOK_INSTANCE_PATH": str(tmp_path)})


def test_cli_reports_bad_settings_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_TIMEOUT", "soon")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "MODEL_TIMEOUT='soon' is not valid" in result.output
    assert "Traceback" not in result.output


def test_dotenv_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'from-dotenv.db'}\n")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-dotenv.db").exists()
    monkeypatch.delenv("DATABASE_URL", raising=False)  # load_dotenv set it in os.environ


def test_postgres_not_migrated_stops_start_up(tmp_path: Path, postgres_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    engine = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS brook_unmigrated"))
        connection.execute(text("CREATE DATABASE brook_unmigrated"))
    engine.dispose()
    url = server.set(drivername="postgresql", database="brook_unmigrated").render_as_string(
        hide_password=False)
    with pytest.raises(ConfigError, match="brook db upgrade"):
        create_app({"DATABASE_URL": url, "BROOK_INSTANCE_PATH": str(tmp_path)})
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    app = create_app({"DATABASE_URL": url, "BROOK_INSTANCE_PATH": str(tmp_path)})
    app.extensions["brook.chat"].close()
    app.extensions["brook.engine"].dispose()


def test_every_variable_is_documented() -> None:
    """Each variable the settings read is in .env.sample and in the README's table."""
    root = Path(__file__).resolve().parent.parent
    read = environment_variables()
    assert {"DATABASE_URL", "OPENAI_API_KEY", "PORT", "BROOK_INSTANCE_PATH",
            "GUNICORN_WORKER_CONNECTIONS", "TIKTOKEN_CACHE_DIR", "OMP_NUM_THREADS"} <= set(read)
    sample = (root / ".env.sample").read_text()
    readme = (root / "README.md").read_text()
    for name in read:
        assert f"{name}=" in sample, f"{name} is missing from .env.sample"
        assert f"`{name}`" in readme, f"{name} is missing from the README's table"


# Writes, not reads: `brook serve --dev` sets Flask's debug mode for Flask (and the reloader's
# child process) to read, as `flask --debug run` does.
ALLOWED_OUTSIDE_CONFIG = {("cli.py", 'os.environ["FLASK_DEBUG"] = "1"')}


def test_no_settings_are_read_outside_config() -> None:
    """Only config.py reads the environment (or .env): every variable is one of its fields."""
    import re

    package = Path(__file__).resolve().parent.parent / "src" / "brook"
    reads = re.compile(r"\benviron\b|\bgetenv\b|\bputenv\b|dotenv")
    found = set()
    for path in package.rglob("*.py"):
        if path.name == "config.py" and path.parent == package:
            continue
        for line in path.read_text().splitlines():
            if reads.search(line) and not line.lstrip().startswith("#"):
                found.add((str(path.relative_to(package)), line.strip()))
    assert found == ALLOWED_OUTSIDE_CONFIG


def test_serving_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn's configuration reads HOST, PORT and the rest through the settings, and needs
    none of the app's (a DATABASE_URL it could not use is not its concern)."""
    import importlib

    assert load_serving_settings({}).model_dump() == {
        "host": "127.0.0.1", "port": 8000, "web_concurrency": 1,
        "worker_connections": 10_000, "shutdown_grace": 25.0}
    env = {"HOST": "0.0.0.0", "PORT": "9000", "WEB_CONCURRENCY": " 4 ",
           "GUNICORN_WORKER_CONNECTIONS": "500", "SHUTDOWN_GRACE_SECONDS": "2.5",
           "DATABASE_URL": "mysql://root@localhost/brook"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from brook import gunicorn_conf

    conf = importlib.reload(gunicorn_conf)
    assert (conf.bind, conf.workers, conf.worker_connections) == ("0.0.0.0:9000", 4, 500)
    assert conf.graceful_timeout == 7
    for name in env:
        monkeypatch.delenv(name)
    importlib.reload(gunicorn_conf)
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY='none' is not valid"):
        load_serving_settings({"WEB_CONCURRENCY": "none"})
    with pytest.raises(ConfigError, match="PORT='http' is not valid"):
        load_serving_settings({"PORT": "http"})


def test_serve_reports_a_bad_port_plainly(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PORT=eighty\n")
    # load_dotenv puts PORT in os.environ: setting it first has monkeypatch record the
    # original state, so teardown puts that back (a delenv of an absent name records nothing).
    monkeypatch.setenv("PORT", "")
    monkeypatch.delenv("PORT")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert "PORT='eighty' is not valid: set it to a port number" in result.output
    assert "Traceback" not in result.output


def test_library_variables_come_from_the_process(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken and torch read their variables from the process environment, so Brook does
    too, in tiktoken's order, whatever mapping the app's settings came from."""
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "old"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert library_environment().tiktoken_cache_dir == tmp_path / "old"
    assert library_environment().omp_num_threads is None
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "new"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert library_environment().tiktoken_cache_dir == tmp_path / "new"
    assert library_environment().omp_num_threads == "2"


def test_blank_values_take_the_default(tmp_path: Path) -> None:
    settings = load_settings({"SYSTEM_PROMPT": "  ", "MODEL_TIMEOUT": "", "OPENAI_MODEL": " ",
                              "OPENAI_API_KEY": " k "}, tmp_path)
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert settings.model_timeout == 60.0
    assert (settings.openai_model, settings.openai_api_key) == ("gpt-4o-mini", "k")


def test_every_bad_variable_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MODEL_TIMEOUT": "soon", "FLUSH_CHARS": "-1", "LOG_LEVEL": "LOUD"},
                      tmp_path)
    lines = str(caught.value).splitlines()
    assert [line.split("=")[0] for line in lines] == ["MODEL_TIMEOUT", "FLUSH_CHARS",
                                                     "LOG_LEVEL"]


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    settings = load_settings({
        "DATABASE_URL": "postgresql://brook:hunter2@db:5432/brook", "SECRET_KEY": "s3cret",
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d",
        "AZURE_OPENAI_API_KEY": "az-key", "REDIS_URL": "rediss://:redispw@cache:6380/0",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=ikey"}, tmp_path)
    for secret in ("hunter2", "s3cret", "az-key", "redispw", "ikey"):
        assert secret not in repr(settings)


def test_settings_are_frozen(tmp_path: Path) -> None:
    from pydantic import ValidationError

    settings = load_settings({}, tmp_path)
    with pytest.raises(ValidationError):
        settings.max_message_chars = 1


@pytest.mark.slow  # `brook serve --dev`
def test_dev_server_starts(tmp_path: Path) -> None:
    """`brook serve --dev`: Flask's reloading server answers."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    brook = str(Path(sys.executable).with_name("brook"))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MODEL_PROVIDER": "none"}
    process = subprocess.Popen([brook, "serve", "--dev", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the dev server did not start"
                time.sleep(0.2)
        assert page.status_code == 200
        assert "OPENAI_API_KEY" in page.text  # no model configured: the page says what to set
        assert (tmp_path / "instance" / "brook.db").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_auth_settings(tmp_path: Path) -> None:
    assert load_settings({}, tmp_path).auth_mode == "anonymous"
    appservice = load_settings({"WEBSITE_AUTH_ENABLED": "true"}, tmp_path)
    assert (appservice.auth_mode, appservice.auth_appservice) == ("appservice", True)
    settings = load_settings({
        "WEBSITE_AUTH_ENABLED": "true", "AUTH_MODE": "OIDC",
        "OIDC_ISSUER": "https://login.example/tenant/v2.0", "OIDC_CLIENT_ID": "brook",
        "OIDC_CLIENT_SECRET": "oidc-secret-value",
        "AUTH_ALLOWED_EMAILS": "Ann@Example.com, bob@example.org",
        "AUTH_ALLOWED_DOMAINS": "@corp.example, team.example",
        "ADMIN_EMAILS": "ann@example.com"}, tmp_path)
    assert (settings.auth_mode, settings.auth_appservice) == ("oidc", False)
    assert settings.oidc_scopes == "openid email profile"
    assert settings.auth_allowed_emails == {"ann@example.com", "bob@example.org"}
    assert settings.auth_allowed_domains == {"corp.example", "team.example"}
    assert settings.admin_emails == {"ann@example.com"}
    assert "oidc-secret-value" not in repr(settings)
    local = load_settings({"AUTH_MODE": "oidc", "OIDC_ISSUER": "http://localhost:9400",
                           "OIDC_CLIENT_ID": "brook"}, tmp_path)
    assert local.oidc_client_secret is None
