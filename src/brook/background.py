"""Work that runs on after the request that started it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def patched() -> bool:
    """Whether gevent has patched `threading` (gunicorn's gevent worker, `brook serve`)."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("threading"))


def spawn(target: Callable[[], None], name: str = "brook-background") -> None:
    """Run `target` in the background: a greenlet under gevent, else a daemon thread.

    Under gevent, `threading.Thread.start` waits for the new greenlet to run, which puts the
    caller behind every other ready greenlet; `gevent.spawn` only schedules it.
    """
    if patched():
        import gevent

        gevent.spawn(target)
    else:
        threading.Thread(target=target, daemon=True, name=name).start()
