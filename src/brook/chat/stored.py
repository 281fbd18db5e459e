"""Answers read from the database: finished ones, and live ones the bus does not carry."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from .. import sse
from ..models import Message, usage_of
from .bus import Events, final_events, start_event, text_events


def stored_events(sessions: sessionmaker[Session], message: Message, after: int | None,
                  poll: float, keepalive: float) -> Events:
    """The answer's SSE events from `after`, from its row (its reasoning, then its content:
    the offsets of the bus, chat/live.py).

    A row still `streaming` is written by another process with no shared bus: it is
    followed as that process flushes it, every `poll` seconds, until it ends (the lease
    sweep ends it if that process dies) or is deleted.
    """
    offset = after or 0
    if after is None:
        yield start_event(message.id, message.model)
    waited = 0.0
    while True:
        text = message.reasoning + message.content
        if len(text) > offset:
            yield text_events(text[offset:], offset, len(message.reasoning))
            offset = len(text)
        if message.status != "streaming":
            # The end's id is where the answer ends: below `offset` only for an answer
            # interrupted after the reader had read text that did not survive its writer.
            yield final_events(message.status, usage_of(message), message.error, len(text))
            return None
        time.sleep(poll)
        waited += poll
        if waited >= keepalive:
            waited = 0.0
            yield sse.KEEPALIVE
        with sessions() as session:
            fresh = session.get(Message, message.id)
        if fresh is None:  # deleted with its conversation
            yield deleted_event(offset)
            return None
        message = fresh


def deleted_event(offset: int) -> str:
    return final_events("error", None, {"code": "deleted",
                                        "message": "This conversation was deleted."}, offset)

