"""Publishing answers to their Redis streams: one flusher thread per process.

An answer's stream holds `0-1` (its start, with the model), `0-<n+1>` (the provider's n-th
progress report before any text: the local model's download), `<end>-1` entries (the text
that ends at character <end>: field `r` for reasoning, `t` for the answer; chat/live.py)
and `<end>-2` (its end). The flusher sends every answer that has
something new in one pipeline: the first piece of text at once (it is woken), later ones
with the next round, once per coalescing window, and the end at once, after the last text.
Waking it for later text too (for a token a window after the answer's last publish) woke it
for every second token of every answer at 50 tokens/s, and readers on other instances
with it; on a burst of 1,000 it cost about 5 % more CPU per token. While Redis is away the
text waits in memory and goes out when it is back.

Every end seals its stream (XSETID to the largest id), so nothing can follow it. An entry
Redis refuses as "equal or smaller than the target stream top item" is therefore already
there (a pipeline whose reply was lost, sent again) or the answer was ended by another
instance (the sweep closed it as orphaned): either way there is nothing to retry, so it is
dropped quietly.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from .live import LiveAnswer
from .redis_keys import FAILURES, SEALED, Client, key

log = logging.getLogger(__name__)

ALREADY_THERE = "equal or smaller than the target stream top item"


class PublishedAnswer(LiveAnswer):
    """A live answer that is also published to its Redis stream (by the flusher only).

    The flusher publishes the answer's own text from where it last got to: a token costs
    the live answer's append and a glance at whether the answer is already marked, no copy
    and no lock of its own.
    """

    def __init__(self, publisher: Publisher, message_id: uuid.UUID, model: str | None) -> None:
        super().__init__(message_id, model)
        self.publisher = publisher
        self.key = key(message_id)
        self.published = 0  # characters published so far
        self._ending: str | None = None  # the end entry's data, once finished
        self._progress_published = 0  # the last progress report published
        self._progress_queued = 0  # … and the last one queued in a pipeline
        self._started = False
        self._publish_lock = threading.Lock()

    def append(self, text: str) -> None:
        super().append(text)
        self.publisher.mark_dirty(self, urgent=not self.published or not self.publisher.coalesce)

    def append_reasoning(self, text: str) -> bool:
        added = super().append_reasoning(text)
        if added:
            self.publisher.mark_dirty(self, urgent=not self.published
                                      or not self.publisher.coalesce)
        return added

    def set_progress(self, progress: dict[str, Any]) -> None:
        super().set_progress(progress)
        self.publisher.mark_dirty(self, urgent=True)

    def finish(self, status: str, usage: dict[str, Any] | None,
               error: dict[str, str] | None) -> None:
        super().finish(status, usage, error)
        with self._publish_lock:
            self._ending = json.dumps({"status": status, "usage": usage, "error": error})
        self.publisher.mark_dirty(self, urgent=True)

    def publish_start(self, redis: Any) -> None:
        """Add the stream's start entry now (before the flusher has anything else to add)."""
        with self._publish_lock:
            if not self._started:
                redis.xadd(self.key, {"m": self.model or ""}, id="0-1")
                self._started = True

    def queue(self, pipe: Any) -> tuple[int, bool, int]:
        """Add what is unpublished to `pipe`: what to `commit` once it went out (the length
        published, whether the end went), and the number of commands added.

        An end is read before the length: once finished, an answer's length is final, so
        its last text always goes out before (or with) its end.
        """
        with self._publish_lock:
            ending = self._ending
            length = self.length
            commands = 0
            if not self._started:
                pipe.xadd(self.key, {"m": self.model or ""}, id="0-1")
                commands += 1
            seq, progress = self.progress_seq, self.progress
            if (seq > self._progress_published and progress is not None and not length
                    and not self.published):
                pipe.xadd(self.key, {"p": json.dumps(progress)}, id=f"0-{seq + 1}")
                self._progress_queued = seq
                commands += 1
            if length > self.published:
                text, reasoning_length = self.snapshot()
                start = self.published
                if start < reasoning_length:
                    cut = min(reasoning_length, length)
                    pipe.xadd(self.key, {"r": text[start:cut]}, id=f"{cut}-1")
                    commands += 1
                    start = cut
                if length > start:
                    pipe.xadd(self.key, {"t": text[start:length]}, id=f"{length}-1")
                    commands += 1
            if ending is not None:
                pipe.xadd(self.key, {"e": ending}, id=f"{length}-2")
                pipe.execute_command("XSETID", self.key, SEALED)
                pipe.expire(self.key, self.publisher.expire)
                commands += 3
            return length, ending is not None, commands

    def commit(self, length: int, ended: bool) -> None:
        with self._publish_lock:
            self._started = True
            self.published = max(self.published, length)
            self._progress_published = self._progress_queued
            if ended:
                self._ending = None


class Publisher:
    """The flusher: publishes answers marked dirty, one pipeline per round."""

    def __init__(self, client: Callable[[], Client], coalesce: float, expire: int) -> None:
        self.client = client
        self.coalesce = coalesce
        self.expire = expire
        self._dirty: set[PublishedAnswer] = set()
        self._dirty_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: entries go out in order
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._away = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="brook-bus-flush")
        self._thread.start()

    def mark_dirty(self, answer: PublishedAnswer, urgent: bool) -> None:
        # Read without the lock: an answer seen in the set is in it, or in the batch the
        # flusher just took, which reads the answer's length after taking it.
        if answer not in self._dirty:
            with self._dirty_lock:
                self._dirty.add(answer)
        if urgent:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.coalesce or 0.025)
            self._wake.clear()
            if not self.flush():
                self._closed.wait(0.5)

    def flush(self) -> bool:
        """Publish what is pending; False if Redis is away (everything is kept for later)."""
        with self._flush_lock:
            with self._dirty_lock:
                batch, self._dirty = self._dirty, set()
            if not batch:
                return True
            try:
                with self.client().redis.pipeline(transaction=False) as pipe:
                    queued = [(answer, *answer.queue(pipe)) for answer in batch]
                    results = pipe.execute(raise_on_error=False)
            except FAILURES as error:
                if not self._away:
                    log.warning("could not publish to Redis (%s); will retry", error)
                self._away = True
                with self._dirty_lock:
                    self._dirty |= batch
                return False
            if self._away:
                log.warning("publishing to Redis again")
                self._away = False
            start = 0
            for answer, length, ended, commands in queued:
                self._report(answer, results[start:start + commands])
                start += commands
                answer.commit(length, ended)
            return True

    @staticmethod
    def _report(answer: PublishedAnswer, results: list[Any]) -> None:
        for result in results:
            if not isinstance(result, Exception):
                continue
            if ALREADY_THERE in str(result):
                log.debug("%s: entry already there or the answer was ended elsewhere",
                          answer.message_id)
            else:
                log.warning("Redis refused an entry of %s: %s", answer.message_id, result)

    def close(self) -> None:
        self.flush()
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=2)
