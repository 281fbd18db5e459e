"""Reading answers from Redis: one multiplexed `XREAD BLOCK` loop per process (per bucket).

Each loop follows a set of streams (a `Feed` each, with the id it read up to) plus its wake
stream, in one `XREAD BLOCK` per round, and hands what came to every local reader of each
stream (a `Mailbox` each). The number of Redis connections does not grow with the readers.

- Pacing: after a round that brought text, the loop waits out the rest of the coalescing
  window before reading again, so one `XREAD` carries a window's entries for all streams.
  A new feed ends that wait at once.
- A reader whose stream the loop does not follow yet adds a feed from its own position; a
  blocked loop is woken through its wake stream (`XADD … MAXLEN 1`, at most once per
  round). A reader joining a feed that is ahead of it reads the gap with one `XRANGE`.
- Redis errors: the loop retries with backoff; readers keep sending keep-alives. When it is
  back, streams that are gone make their readers return their offset (the database serves
  the rest from there); so does a stream whose next entry starts after a reader's offset
  (Redis lost entries).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .redis_keys import (
    FAILURES,
    Client,
    Entry,
    EntryId,
    bucket_of,
    entries_of,
    format_id,
    parse_id,
    wake_key,
)

log = logging.getLogger(__name__)


class Mailbox:
    """One local reader's share of what its loop reads."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._entries: list[Entry] = []
        self._lost = False

    def put(self, entries: list[Entry]) -> None:
        with self._cond:
            self._entries.extend(entries)
            self._cond.notify()

    def lose(self) -> None:
        with self._cond:
            self._lost = True
            self._cond.notify()

    def get(self, timeout: float) -> tuple[list[Entry], bool]:
        """The entries since the last call (waiting up to `timeout` for some), and whether
        the stream is gone."""
        with self._cond:
            if not self._entries and not self._lost:
                self._cond.wait(timeout)
            entries, self._entries = self._entries, []
            return entries, self._lost


class Feed:
    def __init__(self, key: str, cursor: EntryId) -> None:
        self.key = key
        self.cursor = cursor
        self.cursor_id = format_id(cursor)  # as XREAD takes it
        self.readers: set[Mailbox] = set()


class ReadLoop:
    """The reader loop of one bucket (or of all of them, where Redis allows)."""

    def __init__(self, client: Callable[[], Client], group: int, token: str, coalesce: float,
                 block: float, closed: threading.Event) -> None:
        self.client = client
        self.coalesce = coalesce
        self.block_ms = max(int(block * 1000), 1)
        self.wake_key = wake_key(group, token)
        self.feeds: dict[str, Feed] = {}
        self._lock = threading.Lock()
        self._nudge = threading.Event()  # a new feed (or closing)
        self._closed = closed
        self._blocked = False
        self._wake_sent = False
        self._wake_cursor = "0-0"
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"brook-bus-read-{group}")
        self._thread.start()

    # -- readers ------------------------------------------------------------------------------

    def attach(self, key: str, cursor: EntryId, box: Mailbox) -> EntryId | None:
        """Follow `key` for `box` from `cursor`; returns the feed's id if it is ahead of
        `cursor` (the reader reads the entries up to it itself)."""
        with self._lock:
            feed = self.feeds.get(key)
            ahead = None
            if feed is None:
                feed = self.feeds[key] = Feed(key, cursor)
                wake = self._blocked and not self._wake_sent
                self._wake_sent = self._wake_sent or wake
                self._nudge.set()
            else:
                wake = False
                if feed.cursor > cursor:
                    ahead = feed.cursor
            feed.readers.add(box)
        if wake:
            self.wake()
        return ahead

    def detach(self, key: str, box: Mailbox) -> None:
        with self._lock:
            feed = self.feeds.get(key)
            if feed is not None:
                feed.readers.discard(box)
                if not feed.readers:
                    del self.feeds[key]

    def wake(self) -> None:
        """End the loop's blocked `XREAD` (best effort: it times out anyway)."""
        try:
            with self.client().redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self.wake_key, {"w": ""}, maxlen=1, approximate=False)
                pipe.expire(self.wake_key, 3600)
                pipe.execute()
        except FAILURES:
            log.debug("could not wake the reader loop", exc_info=True)

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        paced_until = 0.0
        failures = 0
        check = False  # whether to check that the followed streams still exist
        while not self._closed.is_set():
            with self._lock:
                idle = not self.feeds
                if idle:
                    self._nudge.clear()
            if idle:
                self._nudge.wait()
                continue
            wait = paced_until - time.monotonic()
            if wait > 0:
                self._nudge.wait(wait)  # a new reader ends the wait
            with self._lock:
                self._nudge.clear()
                streams = {k: f.cursor_id for k, f in self.feeds.items()}
                streams[self.wake_key] = self._wake_cursor
                self._blocked, self._wake_sent = True, False
            try:
                client = self.client()
                if check:  # back after an error: were streams lost meanwhile?
                    self._check(client, list(streams)[:-1])
                    check = False
                reply = client.redis.xread(streams, block=self.block_ms)
                if not reply:  # a quiet spell: did a stream vanish (expire)?
                    self._check(client, list(streams)[:-1])
            except FAILURES as error:
                with self._lock:
                    self._blocked = False
                failures += 1
                if failures == 1:
                    log.warning("reader loop lost Redis (%s); retrying", error)
                self._wake_cursor, check = "0-0", True
                self._closed.wait(min(0.05 * 2 ** min(failures, 5), 1.0))
                continue
            if failures:
                log.warning("reader loop has Redis again")
                failures = 0
            if self._dispatch(reply):
                paced_until = time.monotonic() + self.coalesce

    def _dispatch(self, reply: Any) -> bool:
        """Hand the entries read to the readers; whether there were any (not only wakes)."""
        got = False
        with self._lock:
            self._blocked = False
            for key, entries in entries_of(reply):
                if not entries:
                    continue
                if key == self.wake_key:
                    self._wake_cursor = entries[-1][0]
                    continue
                feed = self.feeds.get(key)
                if feed is None:
                    continue
                got = True
                last = parse_id(entries[-1][0])
                if last > feed.cursor:
                    feed.cursor, feed.cursor_id = last, entries[-1][0]
                for box in feed.readers:
                    box.put(entries)
                if "e" in entries[-1][1]:  # ended: its readers are done
                    del self.feeds[key]
        return got

    def _check(self, client: Client, keys: list[str]) -> None:
        """Readers of streams that are gone return (the database serves the rest)."""
        if not keys:
            return
        with client.redis.pipeline(transaction=False) as pipe:
            for stream in keys:
                pipe.exists(stream)
            exists = pipe.execute()
        with self._lock:
            for stream, there in zip(keys, exists, strict=True):
                feed = self.feeds.get(stream) if not there else None
                if feed is not None:
                    log.warning("stream %s is gone from Redis", stream)
                    del self.feeds[stream]
                    for box in feed.readers:
                        box.lose()

    def stop(self) -> None:
        self._nudge.set()
        if self._thread.is_alive():
            self.wake()
            self._thread.join(timeout=2)


class ReadLoops:
    """This process's reader loops: one for every stream, or one per bucket when Redis
    refuses cross-slot commands."""

    def __init__(self, client: Callable[[], Client], coalesce: float, block: float) -> None:
        self.client = client
        self.coalesce = coalesce
        self.block = block
        self.token = uuid.uuid4().hex
        self.closed = threading.Event()
        self._loops: dict[int, ReadLoop] = {}
        self._lock = threading.Lock()

    def loop(self, stream: str) -> ReadLoop:
        """The loop for `stream`; raises one of `FAILURES` if Redis cannot be reached yet."""
        group = bucket_of(stream) if self.client().grouped else 0
        with self._lock:
            loop = self._loops.get(group)
            if loop is None:
                loop = self._loops[group] = ReadLoop(self.client, group, self.token,
                                                     self.coalesce, self.block, self.closed)
            return loop

    def close(self) -> None:
        self.closed.set()
        with self._lock:
            loops = list(self._loops.values())
        for loop in loops:
            loop.stop()
