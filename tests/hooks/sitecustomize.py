"""Test-only start-up hook: lets a test saturate a `brook serve` worker's event loop.

Python imports `sitecustomize` at start-up from the PYTHONPATH the test gives `brook serve`.
With BROOK_TEST_SATURATE set to a file path, each forked worker starts an OS thread that
waits for that file. When it appears, holding a number of seconds, the thread has the
worker's gevent hub run a CPU-bound loop for that long: nothing else in the event loop runs
meanwhile (no request, no greenlet), as when a worker is flooded, while other OS threads
still get the interpreter every few milliseconds. The worker then writes `<path>.<pid>`,
and waits for the file to go before it can be triggered again.
"""

from __future__ import annotations

import os

_PATH = os.environ.get("BROOK_TEST_SATURATE")


def _after_fork() -> None:
    import gevent
    from gevent import monkey

    hub = gevent.get_hub()  # the worker's main thread's hub: this runs in that thread
    sleep = monkey.get_original("time", "sleep")
    start_thread = monkey.get_original("_thread", "start_new_thread")
    assert _PATH is not None
    path = _PATH

    def burn(seconds: float) -> None:
        import time

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sum(range(1000))
        with open(f"{path}.{os.getpid()}", "w") as done:
            done.write(str(seconds))

    def watch() -> None:
        while True:
            sleep(0.05)
            try:
                with open(path) as trigger:
                    seconds = float(trigger.read())
            except (OSError, ValueError):
                continue
            hub.loop.run_callback_threadsafe(burn, seconds)
            while os.path.exists(path):
                sleep(0.05)

    start_thread(watch, ())


if _PATH:
    os.register_at_fork(after_in_child=_after_fork)
