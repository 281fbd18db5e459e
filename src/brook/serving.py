"""Production serving: gunicorn with gevent workers, configured by brook.gunicorn_conf.

One gevent worker holds thousands of open streams, where a sync worker holds one. The app is
created in each worker after gevent has patched the standard library (no preload), so its
sockets, locks and threads are cooperative.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from . import gunicorn_conf


class BrookGunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name in dir(gunicorn_conf):
            if name in self.cfg.settings:
                self.cfg.set(name, getattr(gunicorn_conf, name))
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from . import create_app

        return create_app()


def run_gunicorn(host: str, port: int, workers: int) -> None:
    BrookGunicorn({"bind": f"{host}:{port}", "workers": workers}).run()
