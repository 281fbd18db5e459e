"""Production serving: gunicorn with gevent workers.

One gevent worker holds thousands of open streams, where a sync worker holds one. The app is
created in each worker after gevent has patched the standard library (no preload), so its
sockets, locks and threads are cooperative.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class BrookGunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from . import create_app

        return create_app()


def run_gunicorn(host: str, port: int, workers: int) -> None:
    BrookGunicorn({
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gevent",
        "worker_connections": 4000,
        # A gevent worker heartbeats while it streams; `timeout` only catches a stuck worker.
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 75,
        "accesslog": "-",
        "errorlog": "-",
        "control_socket_disable": True,
    }).run()
