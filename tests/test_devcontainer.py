"""The dev container files: they parse, point SQLTools at the databases the app really uses,
and their post-create command works in a fresh virtual environment."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from brook.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEVCONTAINER = ROOT / ".devcontainer"
EXTENSIONS = {
    "ms-python.python", "ms-python.vscode-pylance", "charliermarsh.ruff", "mtxr.sqltools",
    "mtxr.sqltools-driver-sqlite", "mtxr.sqltools-driver-pg", "ms-azuretools.vscode-bicep",
    "ms-azuretools.azure-dev",
}


def read_jsonc(text: str) -> Any:
    """JSON with comments (`//`, `/* */`) and trailing commas, as VS Code reads it."""
    parts: list[tuple[bool, str]] = []  # (is a string literal, text)
    i = 0
    while i < len(text):
        if text[i] == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            parts.append((True, text[i:end + 1]))
            i = end + 1
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif text.startswith("/*", i):
            i = text.index("*/", i + 2) + 2
        else:
            parts.append((False, text[i]))
            i += 1
    out, code = [], ""
    for is_string, piece in [*parts, (True, "")]:
        if is_string:
            out.append(re.sub(r",(\s*[}\]])", r"\1", code) + piece)
            code = ""
        else:
            code += piece
    return json.loads("".join(out))


def test_the_jsonc_reader() -> None:
    text = '{\n  // a comment\n  "url": "http://x//y", /* block\n */ "list": [1, 2,],\n}'
    assert read_jsonc(text) == {"url": "http://x//y", "list": [1, 2]}
    assert read_jsonc('{"a": "comma,}", "b": "\\"//"}') == {"a": "comma,}", "b": '"//'}


def config(path: str) -> dict[str, Any]:
    parsed: dict[str, Any] = read_jsonc((DEVCONTAINER / path).read_text())
    return parsed


def connections(cfg: dict[str, Any], driver: str) -> list[dict[str, Any]]:
    settings = cfg["customizations"]["vscode"]["settings"]
    return [c for c in settings["sqltools.connections"] if c["driver"] == driver]


@pytest.mark.parametrize("path", ["devcontainer.json", "postgres/devcontainer.json"])
def test_both_configurations_have_the_tools(path: str) -> None:
    cfg = config(path)
    assert cfg.get("image", "") == "mcr.microsoft.com/devcontainers/python:3.11" or (
        "dockerComposeFile" in cfg)
    assert any(f.startswith("ghcr.io/devcontainers/features/node:") for f in cfg["features"])
    vscode = cfg["customizations"]["vscode"]
    assert set(vscode["extensions"]) >= EXTENSIONS
    assert vscode["settings"]["sqltools.useNodeRuntime"] is True
    assert 8000 in cfg["forwardPorts"]
    assert cfg["postCreateCommand"] == "bash .devcontainer/post-create.sh"
    assert os.access(DEVCONTAINER / "post-create.sh", os.X_OK)


@pytest.mark.parametrize("path", ["devcontainer.json", "postgres/devcontainer.json"])
def test_both_configurations_have_what_the_tests_need(path: str) -> None:
    """`make test` in the container: redis-server (the Redis tests start their own) and
    Debian's chromium (the browser tests), as CI installs them (.ci/run); PostgreSQL is the
    compose service's or a private server the suite starts (tests/services.py)."""
    features = config(path)["features"]
    (apt,) = [options for feature, options in features.items()
              if feature.startswith("ghcr.io/rocker-org/devcontainer-features/apt-packages:")]
    packages = {name.strip() for name in apt["packages"].split(",")}
    assert {"redis-server", "chromium"} <= packages
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(name in ci for name in ("redis-server", "chromium"))


@pytest.mark.parametrize("path", ["devcontainer.json", "postgres/devcontainer.json"])
def test_sqltools_opens_the_sqlite_file_the_app_uses(path: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # What Brook uses with no DATABASE_URL, started from the workspace (the repository):
    # create_app's instance folder is BROOK_INSTANCE_PATH or ./instance.
    monkeypatch.chdir(ROOT)
    url = load_settings({}, Path("instance").resolve()).database_url
    app_file = Path(url.removeprefix("sqlite:///"))
    (sqlite,) = connections(config(path), "SQLite")
    # SQLTools resolves a relative path against the workspace folder (the repository).
    assert (ROOT / sqlite["database"]).resolve() == app_file
    assert app_file.relative_to(ROOT) == Path("instance/brook.db")


def test_the_postgres_configuration_agrees_with_itself() -> None:
    import yaml
    cfg = config("postgres/devcontainer.json")
    compose_file = DEVCONTAINER / "postgres" / cfg["dockerComposeFile"]
    compose = yaml.safe_load(compose_file.read_text())
    app, postgres = compose["services"][cfg["service"]], compose["services"]["postgres"]

    # The repository is mounted where VS Code opens the workspace.
    source, target = app["volumes"][0].split(":")[:2]
    assert (compose_file.parent / source).resolve() == ROOT
    assert target == cfg["workspaceFolder"]

    # The app's DATABASE_URL, the postgres service and SQLTools' connection: one database.
    url = urlsplit(app["environment"]["DATABASE_URL"])
    env = postgres["environment"]
    assert (url.username, url.password, url.path.lstrip("/")) == (
        env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])
    assert app["network_mode"] == "service:postgres"
    assert url.hostname == "localhost"
    (pg,) = connections(cfg, "PostgreSQL")
    assert (pg["server"], pg["port"], pg["database"], pg["username"], pg["password"]) == (
        url.hostname, url.port, env["POSTGRES_DB"], env["POSTGRES_USER"],
        env["POSTGRES_PASSWORD"])
    assert load_settings({"DATABASE_URL": url.geturl()}, ROOT / "instance").database_url == (
        "postgresql+psycopg://brook:brook@localhost:5432/brook")
    assert 5432 in cfg["forwardPorts"]

    # The tests' PostgreSQL: the same server and user, a database of their own (the suite
    # creates it), so that they never drop the app's tables.
    tests = urlsplit(app["environment"]["BROOK_TEST_POSTGRES_URL"])
    assert tests.scheme == "postgresql+psycopg"
    assert (tests.hostname, tests.port, tests.username, tests.password) == (
        url.hostname, url.port, url.username, url.password)
    assert tests.path.lstrip("/") not in ("", env["POSTGRES_DB"], "postgres")


@pytest.mark.slow  # a new virtual environment, pip
def test_post_create_works_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    """The post-create script, as the container runs it, with a new venv's python on PATH.

    torch comes from pip's configured indexes here (TORCH_INDEX empty): on this machine that is
    the local CPU wheel. The rest installs from the checkout and pip's cache.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    database = tmp_path / "devcontainer.db"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}", PYTHON="python", TORCH_INDEX="",
               DATABASE_URL=f"sqlite:///{database}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(["bash", str(DEVCONTAINER / "post-create.sh")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Database is up to date." in result.stdout
    assert "Added 25 conversation(s)" in result.stdout

    versions = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import brook, torch, transformers, pytest; print(torch.__version__); "
         "print(brook.__file__)"],
        capture_output=True, text=True, check=True).stdout.split()
    assert versions[0].startswith("2.13.0")
    assert Path(versions[1]).is_relative_to(ROOT / "src")  # editable: the checkout itself
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT count(*) FROM conversations").fetchone()
    assert count == 25
