"""Traces and logs to Azure Monitor (Application Insights) through OpenTelemetry.

On when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Requests, their timings and Brook's
own log records are sent; prompts and answers are not (Brook never logs them, and the
Flask instrumentation records paths, not bodies). With APPLICATIONINSIGHTS_ENTRA_AUTH the
exporter signs in with the app's Entra ID credential, as a component with local
authentication off (the Bicep's) requires: the connection string alone is then not enough
to send it anything.
"""

from __future__ import annotations

import threading
from typing import Any

from azure.core.credentials import TokenCredential
from flask import Flask

from .config import Settings

_configured = threading.Lock()
_done = False


def exporter_options(settings: Settings, credential: TokenCredential | None
                     ) -> dict[str, Any]:
    """What `configure_azure_monitor` is given: the credential only with Entra sign-in."""
    options: dict[str, Any] = {"connection_string": settings.appinsights_connection_string,
                               "logger_name": "brook", "enable_live_metrics": False}
    if settings.appinsights_entra_auth:
        if credential is None:
            raise ValueError("APPLICATIONINSIGHTS_ENTRA_AUTH needs a credential")
        options["credential"] = credential
    return options


def init_telemetry(settings: Settings, credential: TokenCredential | None = None) -> bool:
    """Configure the exporter once per process, before the Flask app is created."""
    global _done
    if not settings.appinsights_connection_string:
        return False
    with _configured:
        if not _done:
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(**exporter_options(settings, credential))
            _done = True
    return True


def instrument(app: Flask) -> None:
    """Trace this app's requests (the distro only patches Flask classes made after it)."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]
