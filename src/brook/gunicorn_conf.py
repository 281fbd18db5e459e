"""gunicorn settings for Brook: gevent workers that hold thousands of open streams.

`brook serve` applies these; the repository's `gunicorn.conf.py` re-exports them for anyone
running `gunicorn 'brook:create_app()'` directly. The variables of `ServingSettings` (HOST,
PORT, WEB_CONCURRENCY, GUNICORN_WORKER_CONNECTIONS, SHUTDOWN_GRACE_SECONDS) set them.
"""

from __future__ import annotations

import _socket
import gc
import select
import signal
import types
from typing import Any

import gevent

from .config import load_serving_settings

# Only the serving settings: the app's own (database, model) are each worker's to read.
_serving = load_serving_settings()

bind = f"{_serving.host}:{_serving.port}"
workers = _serving.web_concurrency
worker_class = "gevent"
# Each open stream is one greenlet and one socket; a worker holds this many at once.
worker_connections = _serving.worker_connections
# A gevent worker keeps notifying the master while it streams, so `timeout` only catches a
# worker that is truly stuck; no answer, however long, runs into it.
timeout = 120
# SIGTERM: answers get SHUTDOWN_GRACE_SECONDS to finish (see post_worker_init), then the
# worker closes its streams; readers reconnect to another instance and resume.
graceful_timeout = int(_serving.shutdown_grace) + 5
# Browsers and App Service's front end reuse connections between requests.
keepalive = 75
accesslog = "-"
errorlog = "-"
control_socket_disable = True


def probe_idle_connections_without_yielding() -> None:
    """Let the model client's connection pool check its idle connections with the operating
    system's `poll`, not gevent's.

    Whenever a request starts or ends, httpcore checks that each idle connection in the pool
    is still open, with a zero-timeout `poll` of its socket. gevent's `poll` yields to the
    event loop even for a zero timeout, so each check waited a full turn of the loop, with
    the pool's lock held: under load, starting or ending an answer waited as many turns as
    the pool had idle connections, and every other answer's start waited behind it. The
    check never blocks, so the blocking `poll` is right for it; every other use of `select`
    stays cooperative.
    """
    import httpcore2._utils
    from gevent.monkey import get_original, is_module_patched

    if is_module_patched("select"):
        probe = types.SimpleNamespace(poll=get_original("select", "poll"),
                                      select=get_original("select", "select"),
                                      POLLIN=select.POLLIN)
        httpcore2._utils.select = probe  # type: ignore[attr-defined,assignment]


class _AddressesInPlace:
    """A gevent resolver that resolves IP addresses itself and hands names to `inner`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,
                    proto: int = 0, flags: int = 0) -> Any:
        try:  # AI_NUMERICHOST: an address is parsed, a name is refused; nothing is looked up
            return _socket.getaddrinfo(host, port, family, type, proto,
                                       flags | _socket.AI_NUMERICHOST)
        except _socket.gaierror:
            return self.inner.getaddrinfo(host, port, family, type, proto, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def resolve_addresses_in_place() -> None:
    """Resolve a host that is already an IP address (a model server at `127.0.0.1` or on a
    private network's address) without gevent's thread pool.

    gevent's default resolver runs every `getaddrinfo` in a thread of its pool, so each new
    connection to the model paid a hand-off to that thread and back (about 0.35 ms of the
    worker's CPU per answer that opens one, a tenth of storing a turn and opening its
    request). For an address the answer needs no lookup and never blocks; names still go
    to the thread pool, so a slow DNS server never holds up the event loop.
    """
    hub = gevent.get_hub()
    if not isinstance(hub.resolver, _AddressesInPlace):
        hub.resolver = _AddressesInPlace(hub.resolver)


def freeze_start_up_objects() -> None:
    """Move what the worker made while starting (modules, the app, its settings and
    clients: about 170,000 objects) out of the garbage collector's generations.

    They live as long as the worker, yet each full collection walked them all: about
    100 ms in which no stream moved (once or more in a burst of 100 answers on a 2-vCPU
    machine). Frozen, they are never walked again (the same collection then takes about
    1 ms); what answers allocate is collected as before.
    """
    gc.collect()
    gc.freeze()


def post_worker_init(worker: Any) -> None:
    """Open the database pool's connections; let the model client's pool check its idle
    connections without yielding, resolve IP addresses in place and freeze the start-up
    objects (above); on SIGTERM, drain
    answers in the background while gunicorn stops taking requests."""
    from .database import fill_pool

    probe_idle_connections_without_yielding()
    resolve_addresses_in_place()
    freeze_start_up_objects()

    gevent.spawn(fill_pool, worker.wsgi.extensions["brook.engine"])
    previous = signal.getsignal(signal.SIGTERM)
    chat = worker.wsgi.extensions["brook.chat"]

    def on_term(signum: int, frame: Any) -> None:
        # A signal handler runs in gevent's hub, where nothing may block: spawn, don't wait.
        gevent.spawn(chat.drain, chat.settings.shutdown_grace)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
