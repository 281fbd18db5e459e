"""Traces and logs to Azure Monitor (Application Insights) through OpenTelemetry.

On when APPLICATIONINSIGHTS_CONNECTION_STRING is set. Requests, their timings and Brook's
own log records are sent; prompts and answers are not (Brook never logs them, and the
Flask instrumentation records paths, not bodies).
"""

from __future__ import annotations

import threading

from flask import Flask

from .config import Settings

_configured = threading.Lock()
_done = False


def init_telemetry(settings: Settings) -> bool:
    """Configure the exporter once per process, before the Flask app is created."""
    global _done
    if not settings.appinsights_connection_string:
        return False
    with _configured:
        if not _done:
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(
                connection_string=settings.appinsights_connection_string,
                logger_name="brook",
                enable_live_metrics=False,
            )
            _done = True
    return True


def instrument(app: Flask) -> None:
    """Trace this app's requests (the distro only patches Flask classes made after it)."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]
