"""OS threads for CPU-bound work (the local model), under gevent or not.

Generation is CPU-bound and holds no socket, so it runs in real OS threads (`Worker`s), also
under gunicorn's gevent worker, where a `threading.Thread` is a greenlet that would stop
every other stream while torch computes. Results come back through a `Channel`: a deque the
worker appends to, plus a wake-up the reader waits on: a `threading.Event` in plain threads,
and under gevent a `gevent.event.Event` set by an `async_` watcher of the reader's hub, which
any thread may `send()`. A `Gate` bounds how many jobs run and wait.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..background import patched
from ..messages import ChatMessage
from .base import ProviderError

log = logging.getLogger(__name__)


def closed_error() -> ProviderError:
    return ProviderError("shutting_down", "Brook is shutting down. Please try again in a moment.")


def real(module: str, name: str) -> Any:
    """The standard library's own `module.name`, even where gevent has replaced it."""
    if patched():
        from gevent import monkey

        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


def start_os_thread(target: Callable[[], None]) -> None:
    # Not threading.Thread: under gevent even the original class starts a greenlet, since it
    # calls the patched `_thread.start_new_thread`. The original of that starts an OS thread.
    real("_thread", "start_new_thread")(target, ())


class Channel:
    """Items from any OS thread to the one thread (or greenlet) that reads them.

    The reader's wake-up is bound where it first reads. Under gevent it is an `async_` watcher
    of that thread's hub: `send()` is safe from any thread, and while the watcher is started it
    keeps the loop alive, so a reader waiting on it is never taken for a deadlock. Elsewhere it
    is a `threading.Event`. No polling: a waiting reader costs nothing.
    """

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._ready: Any = None
        self._watcher: Any = None
        self._wake: Callable[[], None] = lambda: None

    def put(self, item: object) -> None:
        """Any thread: a deque append is atomic, and the wake-up is thread-safe."""
        self._items.append(item)
        self._wake()

    def get(self) -> object:
        if self._ready is None:
            self._bind()
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                pass
            self._ready.wait()
            self._ready.clear()  # then look again: a put after this sets it anew

    def _bind(self) -> None:
        # The wake-up is in place before the first look at the deque: an item put before
        # that is found by the look, one put after it wakes the reader.
        if patched():
            import gevent
            from gevent.event import Event

            self._ready = Event()
            self._watcher = gevent.get_hub().loop.async_()  # this thread's hub
            self._watcher.start(self._ready.set)
            self._wake = self._watcher.send
        else:
            self._ready = threading.Event()
            self._wake = self._ready.set

    def close(self) -> None:
        """The reader's side, when it is done. A `send()` racing with this is harmless (libev
        allows it on a stopped watcher), so the watcher is only stopped, never freed here."""
        if self._watcher is not None:
            self._watcher.stop()


@dataclass(eq=False)
class Job:
    messages: list[ChatMessage]
    channel: Channel = field(default_factory=Channel)  # to the reader: text, Usage, errors
    temperature: float | None = None  # the conversation's; None: the model's own sampling
    cancelled: bool = False  # set by the reader, read by the generating thread


STOP = Job([])


class Worker:
    """One OS thread that generates answers, one at a time, from its inbox.

    Long-lived on purpose: under gevent, the libraries running here (transformers' weight
    loading pool, tqdm's monitor) start "threads" that are greenlets of this thread's hub.
    Between answers this thread waits in that hub, so those greenlets run and finish instead
    of being stranded, which would hang the process at exit.
    """

    def __init__(self, run: Callable[[Job], None], done: Callable[[Worker], None]) -> None:
        self.inbox = Channel()
        self._run, self._done = run, done
        self.alive = real("_thread", "allocate_lock")()  # held while the thread runs
        self.alive.acquire()
        start_os_thread(self._main)

    def _main(self) -> None:
        try:
            while True:
                job = self.inbox.get()
                if job is STOP:
                    self.inbox.close()
                    return
                assert isinstance(job, Job)
                try:
                    self._run(job)  # never raises: failures go to the job's reader
                finally:
                    self._done(self)
        finally:
            self.alive.release()

    def join(self, timeout: float) -> bool:
        if self.alive.acquire(timeout=max(timeout, 0)):
            self.alive.release()
            return True
        return False


class Gate:
    """At most `slots` answers generate (one per worker); up to `queue` wait; beyond that,
    `model_busy`. A real lock guards it, held for a few instructions only."""

    def __init__(self, slots: int, queue: int, run: Callable[[Job], None]) -> None:
        self.slots, self.queue, self._run = slots, queue, run
        self.running = 0
        self.closed = False
        self.workers: list[Worker] = []
        self._idle: list[Worker] = []
        self._waiting: deque[Channel] = deque()
        self._lock = real("_thread", "allocate_lock")()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def enter(self) -> Worker | Channel:
        """A worker to use now, or a channel that will carry one when it is this one's turn."""
        with self._lock:
            if self.closed:
                raise closed_error()
            if self.running < self.slots:
                self.running += 1
                if self._idle:
                    return self._idle.pop()
                self.workers.append(Worker(self._run, self.leave))
                return self.workers[-1]
            if len(self._waiting) >= self.queue:
                raise ProviderError(
                    "model_busy",
                    "The local model is busy with other answers right now. Please try again "
                    "in a moment.",
                )
            turn = Channel()
            self._waiting.append(turn)
            return turn

    def leave(self, worker: Worker) -> None:
        """From any thread: hand the worker to the first waiter, or let it idle."""
        with self._lock:
            if self._waiting and not self.closed:
                self._waiting.popleft().put(worker)
            else:
                self.running -= 1
                self._idle.append(worker)

    def abandon(self, turn: Channel) -> None:
        """A waiter gave up: leave the queue, or pass on the worker it was just handed (its
        channel may carry other items before it: the local model's progress)."""
        with self._lock:
            if turn in self._waiting:
                self._waiting.remove(turn)
                return
        while True:  # the worker, or the error that the gate closed (past any other item)
            item = turn.get()
            if isinstance(item, Worker):
                self.leave(item)
                return
            if isinstance(item, ProviderError):
                return

    def close(self, timeout: float) -> None:
        """Stop the workers and wait for them: a thread still freeing tensors while Python
        shuts down is killed inside torch's C++ code, and the process aborts."""
        with self._lock:
            self.closed = True
            workers, self.workers, self._idle = self.workers, [], []
            waiting, self._waiting = self._waiting, deque()
        for turn in waiting:
            turn.put(closed_error())
        for worker in workers:
            worker.inbox.put(STOP)
        deadline = time.monotonic() + timeout
        for worker in workers:
            if not worker.join(deadline - time.monotonic()):
                log.warning("a local model thread is still busy (loading the model?)")
