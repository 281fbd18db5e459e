"""Azure pieces that run here: Entra ID sign-in to PostgreSQL, and telemetry export."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from brook import create_app
from brook.config import ConfigError
from brook.database import POSTGRES_ENTRA_SCOPE


class RecordingCredential:
    """A TokenCredential standing in for Entra ID: hands out tokens and records the asks."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(time.time()) + 3600)


def test_postgres_entra_auth_signs_in_with_tokens(postgres_schema: str, tmp_path: Path) -> None:
    credential = RecordingCredential()
    app = create_app({"DATABASE_URL": postgres_schema, "DATABASE_ENTRA_AUTH": "true",
                      "BROOK_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x"},
                     credential=credential)
    try:
        response = app.test_client().get("/api/conversations")
        assert response.status_code == 200
        assert credential.scopes
        assert all(scopes == (POSTGRES_ENTRA_SCOPE,) for scopes in credential.scopes)
    finally:
        app.extensions["brook.chat"].close()
        app.extensions["brook.engine"].dispose()


def test_entra_auth_needs_postgres(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DATABASE_ENTRA_AUTH"):
        create_app({"DATABASE_ENTRA_AUTH": "true", "BROOK_INSTANCE_PATH": str(tmp_path)})


@pytest.fixture
def ingestion() -> Iterator[tuple[str, list[Any]]]:
    """A stand-in for Application Insights' ingestion endpoint, recording what arrives."""
    received: list[Any] = []

    @Request.application
    def app(request: Request) -> Response:
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        items = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line]
        received.extend(items)
        return Response(json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}),
                        mimetype="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", received
    server.shutdown()


SCRIPT = """
import sys
from opentelemetry import trace
from brook import create_app
app = create_app({"APPLICATIONINSIGHTS_CONNECTION_STRING": sys.argv[1],
                  "BROOK_INSTANCE_PATH": sys.argv[2], "SECRET_KEY": "x",
                  "MODEL_PROVIDER": "none"})
client = app.test_client()
assert client.get("/api/conversations").status_code == 200
conversation = client.post("/api/conversations", json={}).get_json()["id"]
client.post(f"/api/conversations/{conversation}/messages",
            json={"content": "my secret prompt text"})
for _ in range(3):  # a busy machine can time an export out; it is retried
    if trace.get_tracer_provider().force_flush(10_000):
        break
app.extensions["brook.chat"].close()
"""


@pytest.mark.slow  # a Python process
def test_telemetry_reaches_application_insights_without_prompts(
        ingestion: tuple[str, list[Any]], tmp_path: Path) -> None:
    endpoint, received = ingestion
    connection = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                  f"IngestionEndpoint={endpoint}")
    # The distro samples at most 5 traces a second from start-up by default, which may drop
    # this single request; keep every trace here.
    env = {**os.environ, "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage",
           "OTEL_TRACES_SAMPLER_ARG": "1.0"}
    subprocess.run([sys.executable, "-c", SCRIPT, connection, str(tmp_path)], check=True, env=env,
                   timeout=60, capture_output=True)
    def request_names() -> list[str]:
        return [item.get("data", {}).get("baseData", {}).get("name", "") for item in received]

    # Logs and traces go out in separate batches: wait for the request's trace itself.
    deadline = time.monotonic() + 15
    while (not any("/api/conversations" in n for n in request_names())
           and time.monotonic() < deadline):
        time.sleep(0.1)
    names = request_names()
    assert any("/api/conversations" in name for name in names), json.dumps(received)[:3000]
    assert "my secret prompt text" not in json.dumps(received)
