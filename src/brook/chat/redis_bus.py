"""The Redis Streams bus: any instance serves any reader, live, from any Last-Event-ID.

Each answer is a Redis stream, `brook:answer:<id>`, whose entry ids carry the character
offsets Brook uses as SSE event ids: `0-1` starts it, `<end>-1` holds the text that ends at
character <end>, `<end>-2` ends it. A reader resuming after character N reads from id `N-1`.
Text is published at most once per coalescing window (the first piece at once), by the
generator or by one flusher thread per process. Stop requests travel on a pub/sub channel
to whichever instance is generating. Finished streams expire; the database keeps the answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis

from .. import sse
from .bus import BadOffset, LocalBus, final_events, hold, start_event
from .live import LiveAnswer

log = logging.getLogger(__name__)

STOP_CHANNEL = "brook:stop"


def key(message_id: uuid.UUID) -> str:
    return f"brook:answer:{message_id}"


class PublishedAnswer(LiveAnswer):
    """A live answer that is also published to its Redis stream.

    Only the bus's flusher thread writes to Redis, so entries go out in order: the first
    piece of text at once (the flusher is woken), later ones at most once per coalescing
    window, and the end after the last text. If Redis is away, the text waits here and
    goes out when it is back.
    """

    def __init__(self, bus: RedisBus, message_id: uuid.UUID, model: str | None) -> None:
        super().__init__(message_id, model)
        self.bus = bus
        self.key = key(message_id)
        self._pending: list[str] = []
        self._queued = 0  # characters handed to `_pending` so far
        self._published_at = 0.0
        self._ending: str | None = None  # the end entry's data, once finished
        self._started = False
        self._publish_lock = threading.Lock()

    def append(self, text: str) -> None:
        super().append(text)
        with self._publish_lock:
            self._pending.append(text)
            self._queued += len(text)
        self.bus.mark_dirty(self, urgent=time.monotonic() - self._published_at
                            >= self.bus.coalesce)

    def finish(self, status: str, usage: dict[str, Any] | None,
               error: dict[str, str] | None) -> None:
        super().finish(status, usage, error)
        with self._publish_lock:
            self._ending = json.dumps({"status": status, "usage": usage, "error": error})
        self.bus.mark_dirty(self, urgent=True)

    def queue(self, pipe: Any) -> tuple[int, bool]:
        """Add what is unpublished to `pipe`; return what to `commit` once it went out."""
        with self._publish_lock:
            count, ending = len(self._pending), self._ending
            if not self._started:
                pipe.xadd(self.key, {"m": self.model or ""}, id="0-1")
            if count:
                pipe.xadd(self.key, {"t": "".join(self._pending)}, id=f"{self._queued}-1")
            if ending is not None:
                pipe.xadd(self.key, {"e": ending}, id=f"{self._queued}-2")
                pipe.expire(self.key, self.bus.expire)
            return count, ending is not None

    def commit(self, count: int, ended: bool) -> None:
        with self._publish_lock:
            self._started = True
            del self._pending[:count]
            self._published_at = time.monotonic()
            if ended:
                self._ending = None


class RedisBus(LocalBus):
    def __init__(self, url: str, coalesce: float, keepalive: float, expire: int) -> None:
        super().__init__(coalesce, keepalive)
        # redis-py's types do not follow decode_responses; Any keeps them honest here.
        self.redis: Any = redis.Redis.from_url(url, decode_responses=True,
                                               health_check_interval=30)
        self.expire = expire
        self._dirty: set[PublishedAnswer] = set()
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._stop_handlers: list[Any] = []
        self._threads = [threading.Thread(target=self._flush_loop, daemon=True,
                                          name="brook-bus-flush"),
                         threading.Thread(target=self._stop_loop, daemon=True,
                                          name="brook-bus-stop")]
        for thread in self._threads:
            thread.start()

    # -- writing -------------------------------------------------------------------------

    def open(self, message_id: uuid.UUID, model: str | None) -> LiveAnswer:
        answer = PublishedAnswer(self, message_id, model)
        self.live.add(answer)
        self.mark_dirty(answer, urgent=True)
        return answer

    def mark_dirty(self, answer: PublishedAnswer, urgent: bool) -> None:
        with self._dirty_lock:
            self._dirty.add(answer)
        if urgent:
            self._wake.set()

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.coalesce or 0.025)
            self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        with self._dirty_lock:
            batch, self._dirty = self._dirty, set()
        if not batch:
            return
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                queued = [(answer, *answer.queue(pipe), len(pipe)) for answer in batch]
                results = pipe.execute(raise_on_error=False)
        except redis.RedisError:  # Redis is away: keep everything for the next try
            log.warning("could not publish to Redis; will retry", exc_info=True)
            with self._dirty_lock:
                self._dirty |= batch
            self._closed.wait(0.5)
            return
        start = 0
        for answer, count, ended, end in queued:
            failed = [r for r in results[start:end] if isinstance(r, Exception)]
            start = end
            if failed:
                # Entries another instance already ended (an answer it closed as orphaned)
                # are refused for good: drop them rather than retry them forever.
                log.warning("Redis refused entries for %s: %s", answer.message_id, failed[0])
            answer.commit(count, ended)

    # -- reading -------------------------------------------------------------------------

    def read(self, message_id: uuid.UUID, after: int | None) -> Iterator[str] | None:
        local = super().read(message_id, after)
        if local is not None:
            return local
        stream = key(message_id)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.xrange(stream, count=1)
                pipe.xrevrange(stream, count=1)
                first, last = pipe.execute()
        except redis.RedisError:
            log.warning("Redis is unavailable; serving %s from the database", message_id)
            return None
        if not first:
            return None
        # A Redis that restarted lost the stream's beginning: unless the reader is past the
        # gap, the database serves it (it holds everything flushed, with the same offsets).
        first_id, fields = first[0]
        covered_from = 0 if "m" in fields else int(first_id.split("-")[0]) - len(
            fields.get("t", ""))
        if (after is None and "m" not in fields) or covered_from > (after or 0):
            return None
        length = int(last[0][0].split("-")[0])
        if after is not None and after > length:
            raise BadOffset(after)
        return self._stream_events(message_id, stream, after)

    def _stream_events(self, message_id: uuid.UUID, stream: str, after: int | None
                       ) -> Iterator[str]:
        offset = after or 0
        cursor = "0-0" if after is None else f"{after}-1"
        sent_at = 0.0
        while True:
            hold(sent_at, self.coalesce)
            try:
                reply = self.redis.xread({stream: cursor}, count=10_000,
                                         block=int(self.keepalive * 1000))
            except redis.RedisError:
                # End this response; the browser reconnects with Last-Event-ID and is
                # served from Redis or, while it is away, from the database.
                log.warning("lost Redis while streaming %s", message_id)
                return
            if not reply:
                yield sse.KEEPALIVE
                continue
            pieces: list[str] = []
            for entry_id, fields in reply[0][1]:
                cursor = entry_id
                end = int(entry_id.split("-")[0])
                if "m" in fields:
                    yield start_event(message_id, fields["m"] or None)
                elif "t" in fields:
                    text = fields["t"]
                    start = end - len(text)
                    pieces.append(text[offset - start:] if start < offset else text)
                    offset = end
                elif "e" in fields:
                    if pieces:
                        yield sse.encode("message", {"text": "".join(pieces)}, offset)
                    outcome = json.loads(fields["e"])
                    yield final_events(outcome["status"], outcome["usage"], outcome["error"],
                                       offset)
                    return
            if pieces:
                sent_at = time.monotonic()
                yield sse.encode("message", {"text": "".join(pieces)}, offset)

    # -- stopping and recovering -----------------------------------------------------------

    def on_stop(self, handler: Any) -> None:
        """Call `handler(message_id)` when another instance asks to stop an answer."""
        self._stop_handlers.append(handler)

    def request_stop(self, message_id: uuid.UUID) -> None:
        self.redis.publish(STOP_CHANNEL, str(message_id))

    def _stop_loop(self) -> None:
        while not self._closed.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(STOP_CHANNEL)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    message_id = uuid.UUID(message["data"])
                    if self.live.get(message_id) is not None:
                        for handler in self._stop_handlers:
                            handler(message_id)
                pubsub.close()
            except (redis.RedisError, ValueError):
                log.warning("stop listener lost Redis; reconnecting", exc_info=True)
                self._closed.wait(1.0)

    def recover(self, message_id: uuid.UUID) -> str | None:
        entries = self.redis.xrange(key(message_id))
        if not entries:
            return None
        return "".join(fields.get("t", "") for _id, fields in entries)

    def publish_end(self, message_id: uuid.UUID, status: str, text_length: int) -> None:
        stream = key(message_id)
        try:
            if not self.redis.exists(stream):
                return
            data = json.dumps({"status": status, "usage": None, "error": None})
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, {"e": data}, id=f"{text_length}-2")
                pipe.expire(stream, self.expire)
                pipe.execute()
        except redis.RedisError:
            log.warning("could not publish the end of %s", message_id, exc_info=True)

    def close(self) -> None:
        self._flush()
        self._closed.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.redis.close()
