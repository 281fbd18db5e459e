"""Work that runs on after the request that started it, and work that must keep its pace."""

from __future__ import annotations

import sys
import threading
import time
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


def os_thread(target: Callable[[], None], name: str) -> None:
    """Run `target` on an operating-system thread of its own, even under gevent.

    Under gevent, `threading.Thread` is a greenlet: it runs only when the event loop gets to
    it, which a saturated loop does late. An OS thread gets the interpreter every few
    milliseconds however busy the loop is. Blocking calls in it (sockets, the database
    driver) wait on that thread's own gevent hub; it must share no gevent lock or event
    with the loop's greenlets, so it sleeps with `os_sleep` and stops on a plain flag.
    """
    if patched():
        from gevent import monkey

        monkey.get_original("_thread", "start_new_thread")(target, ())
    else:
        threading.Thread(target=target, daemon=True, name=name).start()


def os_sleep(seconds: float) -> None:
    """Block the calling OS thread (not a greenlet) for `seconds`."""
    if patched():
        from gevent import monkey

        monkey.get_original("time", "sleep")(seconds)
    else:
        time.sleep(seconds)
