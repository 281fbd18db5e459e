"""The Redis Streams bus: any instance serves any reader, live, from any Last-Event-ID.

Each answer is a Redis stream, `brook:{b<n>}:answer:<id>` (`{b<n>}`, n = the id's bucket of
16, keeps the keys of one bucket in one hash slot), whose entry ids carry the character
offsets Brook uses as SSE event ids: `0-1` starts it, `<end>-1` holds the text that ends at
character <end>, `<end>-2` ends it. A reader resuming after character N reads from id `N-1`.

- Writing (redis_publish.py): one flusher thread per process publishes every live answer,
  the first piece of text at once, later ones at most once per coalescing window.
- Reading (redis_reader.py): readers of answers generated elsewhere share one `XREAD BLOCK`
  loop per process, or one per bucket where Redis refuses cross-slot commands. A Redis
  hiccup makes readers wait (with keep-alives) and resume; a reader whose text Redis lost
  returns its offset, and the service serves the rest from the database.
- Connections: one bounded, blocking pool (per node, on a cluster): bursts wait for a
  connection instead of failing, and the count does not grow with the readers.
- Cluster mode is detected, not configured (redis_keys.py): `INFO cluster` reporting
  `cluster_enabled:1` selects redis-py's `RedisCluster`; otherwise a probe `XREAD` across
  two buckets tells whether the server (a clustering proxy such as Azure Managed Redis's
  EnterpriseCluster policy) wants one bucket per command. `cluster=` overrides the first.
- Stop requests travel on the pub/sub channel `brook:stop` (on a cluster, PUBLISH reaches
  every node) to whichever instance is generating.
- Finished streams expire; the database keeps the answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from .bus import BadOffset, Events, LocalBus, Recovered, final_events
from .live import LiveAnswer
from .redis_follow import Position, follow
from .redis_keys import (
    FAILURES,
    SEALED,
    STOP_CHANNEL,
    Client,
    Entry,
    connect,
    disconnect,
    format_id,
    key,
    parse_id,
)
from .redis_publish import ALREADY_THERE, PublishedAnswer, Publisher
from .redis_reader import ReadLoops

log = logging.getLogger(__name__)

__all__ = ["STOP_CHANNEL", "PublishedAnswer", "RedisBus", "key"]


class RedisBus(LocalBus):
    def __init__(self, url: str, coalesce: float, keepalive: float, expire: int, *,
                 max_connections: int = 50, pool_timeout: float = 10.0, block: float = 5.0,
                 cluster: bool | None = None, client_name: str | None = None) -> None:
        """`max_connections` bounds each pool (one per node on a cluster); a command waits
        up to `pool_timeout` seconds for a free connection. Reader loops block in Redis for
        up to `block` seconds at a time. `cluster` skips the detection (None: detect)."""
        super().__init__(coalesce, keepalive)
        self.url = url
        self.expire = expire
        self._connect: Callable[[], Client] = lambda: connect(
            url, cluster=cluster, max_connections=max_connections,
            pool_timeout=pool_timeout, socket_timeout=block + 5.0, client_name=client_name)
        self._client: Client | None = None
        self._connect_lock = threading.Lock()
        self._connect_after = 0.0
        self._quiet_until = 0.0  # log "Redis is unavailable" for readers again after this
        self.publisher = Publisher(self.client, coalesce, expire)
        self.loops = ReadLoops(self.client, coalesce, block)
        self._stop_handlers: list[Callable[[uuid.UUID], object]] = []
        self._closed = threading.Event()
        self.stop_listening = threading.Event()  # subscribed to Stop requests now
        self._stop_thread = threading.Thread(target=self._stop_loop, daemon=True,
                                             name="brook-bus-stop")
        self._stop_thread.start()

    def client(self) -> Client:
        """The Redis client, connecting on first use; raises one of `FAILURES` if Redis
        cannot be reached."""
        client = self._client
        if client is None:
            with self._connect_lock:
                if self._client is None:
                    if time.monotonic() < self._connect_after:  # it failed a moment ago
                        raise redis.ConnectionError("Redis is unreachable; retrying soon")
                    try:
                        self._client = self._connect()
                    except FAILURES:
                        self._connect_after = time.monotonic() + 1.0
                        raise
                client = self._client
        return client

    @property
    def redis(self) -> Any:
        return self.client().redis

    # -- writing -------------------------------------------------------------------------

    def open(self, message_id: uuid.UUID, model: str | None) -> LiveAnswer:
        """A new answer, whose stream exists in Redis when this returns (one round trip).

        The request that starts an answer answers `202` after this, and its reader may come
        to another instance at once: that instance then finds the stream and follows it
        through its reader loop, instead of taking the answer for one Redis does not carry
        and following it in the database, a flush interval at a time. If Redis is away, the
        flusher publishes the start with the first text.
        """
        answer = PublishedAnswer(self.publisher, message_id, model)
        self.live.add(answer)
        try:
            answer.publish_start(self.client().redis)
        except FAILURES:
            self.publisher.mark_dirty(answer, urgent=True)
        return answer

    # -- reading -------------------------------------------------------------------------

    def read(self, message_id: uuid.UUID, after: int | None) -> Events | None:
        local = super().read(message_id, after)
        if local is not None:
            return local
        stream = key(message_id)
        cursor = (0, 0) if after is None else (after, 1)
        try:
            client = self.client()
            with client.redis.pipeline(transaction=False) as pipe:
                pipe.xrange(stream, count=1)
                pipe.xrevrange(stream, count=1)
                pipe.xrange(stream, "-" if after is None else f"({format_id(cursor)}")
                first, last, entries = pipe.execute()
            loop = self.loops.loop(stream)
        except FAILURES as error:
            # Once per outage (many readers may come meanwhile), then quietly.
            level = logging.WARNING if time.monotonic() >= self._quiet_until else logging.DEBUG
            self._quiet_until = time.monotonic() + 10.0
            log.log(level, "Redis is unavailable (%s); serving %s from the database", error,
                    message_id)
            return None
        if not first:
            return None
        # A Redis that restarted lost the stream's beginning: unless the reader is past the
        # gap, the database serves it (it holds everything flushed, with the same offsets).
        if "m" not in first[0][1] and (after is None or covered_from(first[0]) > after):
            return None
        last_id, last_fields = last[0]
        if "e" in last_fields and after is not None:
            outcome = json.loads(last_fields["e"])
            length = int(outcome.get("length", parse_id(last_id)[0]))
            if after > length:
                if outcome["status"] != "interrupted":
                    raise BadOffset(after)
                # The reader had read text that did not survive its writer: it is told
                # where the answer now ends.
                return _only(final_events(outcome["status"], outcome["usage"],
                                          outcome["error"], length))
        if not entries:  # the reader may be ahead of what was published: it waits from
            cursor = parse_id(last_id)  # the top, to see an end below its offset too
        return follow(loop, stream, Position(message_id, after or 0, cursor), entries,
                      self.keepalive)

    # -- stopping ------------------------------------------------------------------------

    def on_stop(self, handler: Callable[[uuid.UUID], object]) -> None:
        """Call `handler(message_id)` when another instance asks to stop an answer of ours."""
        self._stop_handlers.append(handler)

    def request_stop(self, message_id: uuid.UUID) -> None:
        try:
            self.client().redis.publish(STOP_CHANNEL, str(message_id))
        except FAILURES:
            log.warning("could not publish a Stop for %s (the database carries it too)",
                        message_id, exc_info=True)

    def _stop_loop(self) -> None:
        lost = False
        while not self._closed.is_set():
            pubsub: Any = None
            try:
                pubsub = self.client().redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(STOP_CHANNEL)
                self.stop_listening.set()
                if lost:
                    log.warning("stop listener has Redis again")
                    lost = False
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=0.25)
                    if message is not None:
                        self._stop_requested(message["data"])
            except FAILURES as error:
                self.stop_listening.clear()
                if not lost:
                    log.warning("stop listener lost Redis (%s); reconnecting", error)
                lost = True
                self._closed.wait(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except FAILURES:
                        log.debug("could not close the stop listener", exc_info=True)

    def _stop_requested(self, data: Any) -> None:
        try:
            message_id = uuid.UUID(str(data))
        except ValueError:
            log.warning("ignoring a malformed Stop request: %r", data)
            return
        if self.live.get(message_id) is not None:
            for handler in self._stop_handlers:
                handler(message_id)

    # -- recovering ------------------------------------------------------------------------

    def recover(self, message_id: uuid.UUID) -> Recovered | None:
        """`(start, text, reasoning_end)`: the text of the stream's entries, the offset it
        starts at, and where the reasoning in it ends (0: none seen).

        Where Redis lost entries in the middle (a failover), the last unbroken run is
        returned: the most recent text, the part the database is most likely to lack.
        Raises one of `FAILURES` if Redis is away (the sweep tries again later).
        """
        entries: list[Entry] = self.client().redis.xrange(key(message_id))
        if not entries:
            return None
        start = 0 if "m" in entries[0][1] else covered_from(entries[0])
        pieces: list[str] = []
        end, reasoning_end = start, 0
        for entry_id, fields in entries:
            if "t" not in fields and "r" not in fields:
                continue
            text = fields.get("t", fields.get("r", ""))
            entry_end = parse_id(entry_id)[0]
            if "r" in fields:
                reasoning_end = max(reasoning_end, entry_end)
            entry_start = entry_end - len(text)
            if entry_start > end:  # a gap: start over from here
                start, pieces, end = entry_start, [], entry_start
            if entry_end > end:  # text sent again after a lost reply overlaps: trimmed
                pieces.append(text[end - entry_start:])
                end = entry_end
        return start, "".join(pieces), reasoning_end

    def publish_end(self, message_id: uuid.UUID, status: str, text_length: int) -> None:
        """End a stream whose writer died (if it is there and has no end yet)."""
        stream = key(message_id)
        try:
            client = self.client().redis
            last = client.xrevrange(stream, count=1)
            if not last:
                return
            top_id, fields = last[0]
            if "e" in fields:
                return
            data: dict[str, Any] = {"status": status, "usage": None, "error": None}
            end = (text_length, 2)
            top = parse_id(top_id)
            if top >= end:
                # Redis holds text past the stored end: the end entry goes after it and
                # names the stored length, where its readers end.
                log.warning("%s: Redis holds text up to %d, past the %d characters stored",
                            message_id, top[0], text_length)
                end, data["length"] = (top[0], top[1] + 1), text_length
            with client.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, {"e": json.dumps(data)}, id=format_id(end))
                pipe.execute_command("XSETID", stream, SEALED)  # the writer can add nothing
                pipe.expire(stream, self.expire)
                pipe.execute()
        except FAILURES as error:
            if ALREADY_THERE in str(error):  # its writer ended it meanwhile: it was alive
                log.debug("%s was ended by its writer meanwhile", message_id)
            else:
                log.warning("could not publish the end of %s", message_id, exc_info=True)

    def close(self) -> None:
        self.publisher.close()
        self._closed.set()
        self.loops.close()
        self._stop_thread.join(timeout=2)
        if self._client is not None:
            disconnect(self._client.redis)


def covered_from(entry: Entry) -> int:
    """The offset at which a stream that lost its beginning starts: its first entry's."""
    entry_id, fields = entry
    end = parse_id(entry_id)[0]
    if "e" in fields:
        return int(json.loads(fields["e"]).get("length", end))
    return end - len(fields.get("t", ""))


def _only(event: str) -> Events:
    yield event
    return None
