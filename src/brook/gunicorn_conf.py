"""gunicorn settings for Brook: gevent workers that hold thousands of open streams.

`brook serve` applies these; the repository's `gunicorn.conf.py` re-exports them for anyone
running `gunicorn 'brook:create_app()'` directly. Environment variables override each one.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import gevent

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gevent"
# Each open stream is one greenlet and one socket; a worker holds this many at once.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "10000"))
# A gevent worker keeps notifying the master while it streams, so `timeout` only catches a
# worker that is truly stuck; no answer, however long, runs into it.
timeout = 120
# SIGTERM: answers get SHUTDOWN_GRACE_SECONDS to finish (see post_worker_init), then the
# worker closes its streams; readers reconnect to another instance and resume.
graceful_timeout = int(float(os.environ.get("SHUTDOWN_GRACE_SECONDS", "25"))) + 5
# Browsers and App Service's front end reuse connections between requests.
keepalive = 75
accesslog = "-"
errorlog = "-"
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    """Open the database pool's connections; on SIGTERM, drain answers in the background
    while gunicorn stops taking requests."""
    from .database import fill_pool

    gevent.spawn(fill_pool, worker.wsgi.extensions["brook.engine"])
    previous = signal.getsignal(signal.SIGTERM)
    chat = worker.wsgi.extensions["brook.chat"]

    def on_term(signum: int, frame: Any) -> None:
        # A signal handler runs in gevent's hub, where nothing may block: spawn, don't wait.
        gevent.spawn(chat.drain, chat.settings.shutdown_grace)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
