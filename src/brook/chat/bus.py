"""The stream bus: carries an answer from the process that generates it to its readers.

Two backends share this interface. `LocalBus` (the default) keeps live answers in this
process's memory. `RedisBus` (with REDIS_URL) also publishes them to Redis Streams, so any
instance can serve any reader and a Stop pressed on one instance reaches the one generating.
The database stays the record: a reader the bus cannot serve is served from it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator
from typing import Any

from .. import sse
from .live import LiveAnswer, LiveRegistry

# An answer's SSE events, as a bus serves them. The generator's return value is None when
# it sent the `end`, or the offset from which the database must serve the rest (the bus
# lost text: Redis restarted).
Events = Generator[str, None, int | None]
Recovered = tuple[int, str, int]  # what `recover` finds: start, text, where reasoning ends


class BadOffset(ValueError):
    """A resume offset beyond the answer."""


def hold(sent_at: float, window: float) -> None:
    """Coalescing: wait out the rest of the window since the last event, if any is left.

    Tokens that arrive meanwhile go out together in the next event; the first event, sent
    at once, is never held.
    """
    if window:
        wait = sent_at + window - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def start_event(message_id: uuid.UUID, model: str | None) -> str:
    return f"retry: {sse.RETRY_MS}\n" + sse.encode(
        "start", {"message_id": str(message_id), "model": model}, 0)


INTERNAL_ERROR = {"code": "internal_error",
                  "message": "Something went wrong while writing this answer."}


def progress_event(progress: dict[str, Any], offset: int) -> str:
    return sse.encode("progress", progress, offset)


def text_events(text: str, start: int, reasoning_length: int) -> str:
    """The events of `text`, which begins at character `start` of the answer's text: a
    `reasoning` event for what lies before `reasoning_length`, a `message` for the rest;
    each event's id is the offset where its text ends."""
    end = start + len(text)
    if start >= reasoning_length:
        return sse.encode("message", {"text": text}, end)
    if end <= reasoning_length:
        return sse.encode("reasoning", {"text": text}, end)
    cut = reasoning_length - start
    return (sse.encode("reasoning", {"text": text[:cut]}, reasoning_length)
            + sse.encode("message", {"text": text[cut:]}, end))


def final_events(status: str, usage: dict[str, Any] | None, error: dict[str, Any] | None,
                 offset: int) -> str:
    end = sse.encode("end", {"status": status, "usage": usage}, offset)
    if status == "error":
        return sse.encode("error", error or INTERNAL_ERROR, offset) + end
    return end


class LocalBus:
    """Live answers in this process; readers wait on them directly."""

    def __init__(self, coalesce: float, keepalive: float) -> None:
        self.coalesce = coalesce
        self.keepalive = keepalive
        self.live = LiveRegistry()

    def open(self, message_id: uuid.UUID, model: str | None) -> LiveAnswer:
        answer = LiveAnswer(message_id, model)
        self.live.add(answer)
        return answer

    def get(self, message_id: uuid.UUID) -> LiveAnswer | None:
        return self.live.get(message_id)

    def published(self, answer: LiveAnswer) -> None:
        """The answer is finished and stored: forget it (readers fall back to the database)."""
        self.live.remove(answer.message_id)

    def read(self, message_id: uuid.UUID, after: int | None) -> Events | None:
        """The answer's events after `after`, or None when this bus does not have it."""
        answer = self.live.get(message_id)
        if answer is None:
            return None
        if after is not None and after > answer.length:
            raise BadOffset(after)
        return self._events(answer, after)

    def _events(self, answer: LiveAnswer, after: int | None) -> Events:
        offset = after or 0
        if after is None:
            yield start_event(answer.message_id, answer.model)
        sent_at = 0.0
        progress_seq = 0  # the provider's progress reports seen (before the first text)
        while True:
            hold(sent_at, self.coalesce)
            text, reasoning_length, done = answer.read(offset, self.keepalive, progress_seq)
            if text:
                sent_at = time.monotonic()
                yield text_events(text, offset, reasoning_length)
                offset += len(text)
            elif done:
                yield final_events(answer.status, answer.usage, answer.error, offset)
                return None
            elif progress_seq != answer.progress_seq:
                progress_seq = answer.progress_seq
                if answer.progress is not None and not offset:
                    yield progress_event(answer.progress, offset)
            else:
                yield sse.KEEPALIVE

    def on_stop(self, handler: Callable[[uuid.UUID], object]) -> None:
        """Call `handler(message_id)` when another instance asks to stop an answer of ours
        (never, here: only this process writes and reads this bus)."""

    def request_stop(self, message_id: uuid.UUID) -> None:
        """Ask the instance generating this answer to stop it (only this one, here)."""

    def recover(self, message_id: uuid.UUID) -> Recovered | None:
        """The text a dead generator had published, if the bus kept it: `(start, text,
        reasoning_end)`, the text beginning at character `start`, its reasoning ending at
        `reasoning_end` (chat/live.py)."""
        return None

    def publish_end(self, message_id: uuid.UUID, status: str, text_length: int) -> None:
        """Tell readers elsewhere that an answer ended without its generator (no-op here)."""

    def close(self) -> None:
        pass
