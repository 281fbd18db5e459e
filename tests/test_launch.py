"""The `brook` command: gevent patches the standard library before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from .conftest import Server

pytestmark = pytest.mark.slow  # `brook serve`

def test_brook_serve_patches_before_ssl_is_imported(tmp_path: Path) -> None:
    """gevent warns when ssl was imported before it patched: every TLS connection (model,
    PostgreSQL, Redis) would then block the worker. `brook serve` must print no such warning."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'brook.db'}", "MODEL_PROVIDER": "none",
           "SECRET_KEY": "launch-test"}
    server = Server(tmp_path, env)
    server.start()
    try:
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Booting worker" in log  # gunicorn's gevent worker, not the development server
    assert "MonkeyPatchWarning" not in log
    assert "ssl after ssl has already been imported" not in log
