"""One reader of an answer in Redis: where it is, and the events it sends.

A reader starts from the entries it read when it attached, then takes what its process's
reader loop (redis_reader.py) hands it. It tracks its character offset, so it never repeats
or skips text: entries carry the offset where their text ends, and text before the reader's
offset is trimmed. A next entry that starts after that offset means Redis lost text (it
restarted): the reader returns its offset and the database serves the rest from there.
"""

from __future__ import annotations

import json
import logging
import uuid

from .. import sse
from .bus import Events, final_events, progress_event, start_event
from .redis_keys import FAILURES, Entry, EntryId, format_id, parse_id
from .redis_reader import Mailbox, ReadLoop

log = logging.getLogger(__name__)

PROGRESS = "id: 0\nevent: progress\n"


class Position:
    """Where one reader is: its character offset and the last entry id it took."""

    def __init__(self, message_id: uuid.UUID, offset: int, cursor: EntryId) -> None:
        self.message_id = message_id
        self.offset = offset
        self.cursor = cursor

    def take(self, entries: list[Entry]) -> tuple[list[str], bool, bool]:
        """The events for `entries` past this position; whether the answer ended, and
        whether text is missing before them (Redis lost it)."""
        events: list[str] = []
        pieces: list[str] = []
        kind = "message"  # of the pieces: `message`, or `reasoning` (an `r` entry's)

        def flush() -> None:
            if pieces:
                events.append(sse.encode(kind, {"text": "".join(pieces)}, self.offset))
                pieces.clear()

        for entry_id, fields in entries:
            parsed = parse_id(entry_id)
            if parsed <= self.cursor:
                continue
            self.cursor = parsed
            end = parsed[0]
            if "t" in fields or "r" in fields:
                text = fields.get("t", fields.get("r", ""))
                start = end - len(text)
                if start > self.offset:
                    flush()
                    return events, False, True
                if end > self.offset:
                    if events and events[-1].startswith(PROGRESS):
                        events.pop()  # the text supersedes it
                    entry_kind = "message" if "t" in fields else "reasoning"
                    if entry_kind != kind:
                        flush()
                        kind = entry_kind
                    pieces.append(text[self.offset - start:])
                    self.offset = end
            elif "e" in fields:
                outcome = json.loads(fields["e"])
                length = int(outcome.get("length", end))
                if length > self.offset:
                    flush()
                    return events, False, True
                flush()
                events.append(final_events(outcome["status"], outcome["usage"],
                                           outcome["error"], length))
                return events, True, False
            elif "m" in fields:
                events.append(start_event(self.message_id, fields["m"] or None))
            elif "p" in fields and not self.offset:
                # Only the latest report of a run of them is worth sending.
                event = progress_event(json.loads(fields["p"]), 0)
                if events and events[-1].startswith(PROGRESS):
                    events[-1] = event
                else:
                    events.append(event)
        flush()
        return events, False, False


def follow(loop: ReadLoop, stream: str, position: Position, first: list[Entry],
           keepalive: float) -> Events:
    """A reader's events: `first` (read when it attached), then what its loop hands it.

    Returns None after the `end`, or the offset from which the database must serve the rest.
    """
    events, ended, gap = position.take(first)
    yield from events
    if ended:
        return None
    if gap:
        return position.offset
    box = Mailbox()
    try:
        ahead = loop.attach(stream, position.cursor, box)
        entries: list[Entry] = []
        if ahead is not None:
            try:
                entries = loop.client().redis.xrange(
                    stream, f"({format_id(position.cursor)}", format_id(ahead))
            except FAILURES:
                log.warning("lost Redis while joining %s", stream)
                return position.offset
        lost = False
        while True:
            if entries or lost:
                events, ended, gap = position.take(entries)
                yield from events
                if ended:
                    return None
                if gap or lost:
                    return position.offset
            entries, lost = box.get(keepalive)
            if not entries and not lost:
                yield sse.KEEPALIVE
    finally:
        loop.detach(stream, box)
