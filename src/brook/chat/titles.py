"""Titles written by the model: after a conversation's first answer, a short request asks
the conversation's model for a title of a few words.

Until it comes (and if it fails) the title stays the first message's first words. The
conversation's `title_source` tells the page where it stands: `message` (the first words),
`pending` (asked), `model` (written), `user` (renamed: never overwritten, also not by a
title that arrives after the rename). A pending title records the process that asked for
it; if that process dies first, the sweep gives the title back to the first words
(`give_back_orphaned`), as if the model had not answered.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import cast

from sqlalchemy import ColumnElement, Connection, Table, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..messages import ChatMessage
from ..models import TITLE_CHARS, Conversation
from ..providers import Provider, ProviderError
from .liveness import gone

log = logging.getLogger(__name__)

CONVERSATIONS = cast(Table, Conversation.__table__)

PROMPT = ("Write a short title, of at most six words, for a conversation that begins with "
          "the exchange below. Reply with the title alone: no quotes, no Markdown, no "
          "punctuation at the end, in the language of the question.")
EXCERPT = 2_000  # characters of the question and of the answer that the model is shown
ENOUGH = 200  # characters of reply read before the rest is left unread
_QUOTES = "*_\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"  # and typographic quotes
_NOISE = re.compile(rf"^(?:#+\s*|title\s*:\s*|[{_QUOTES}]+)+", re.IGNORECASE)
_TAIL = re.compile(rf"[\s{_QUOTES}.:;!,]+$")


def prompt(question: str, answer: str) -> list[ChatMessage]:
    return [{"role": "system", "content": PROMPT},
            {"role": "user", "content": f"Question:\n{question[:EXCERPT]}\n\n"
                                        f"Answer:\n{answer[:EXCERPT]}"}]


def cleaned(reply: str) -> str | None:
    """The title in a model's reply: its first line without quotes, Markdown or a
    "Title:" label, cut to a title's length; None if nothing is left."""
    line = next((line for line in reply.splitlines() if line.strip()), "")
    title = " ".join(_TAIL.sub("", _NOISE.sub("", line.strip())).split())
    if not title:
        return None
    return title if len(title) <= TITLE_CHARS else title[:TITLE_CHARS - 1].rstrip() + "…"


def _moved(connection: Connection, conversation_id: uuid.UUID, source: str,
           **values: str | None) -> bool:
    """Set the title's fields where its source is still `source`; whether it was."""
    result = connection.execute(update(CONVERSATIONS)
                                .where(CONVERSATIONS.c.id == conversation_id,
                                       CONVERSATIONS.c.title_source == source)
                                .values(**values))
    return bool(result.rowcount)


def ask(connection: Connection, conversation_id: uuid.UUID, worker: str) -> bool:
    """Mark the title `pending` for `worker` (this process), if it is still the first
    message's words; whether it was. Done before the answer's end reaches its readers, so
    that a page which then reloads the list sees the title coming."""
    return _moved(connection, conversation_id, "message", title_source="pending",
                  title_worker=worker)


def give_back_orphaned(session: Session, me: str) -> int:
    """Give the titles left `pending` by processes that are gone back to the first
    message's words; how many. Without it, a page would wait for them for ever."""
    pending = CONVERSATIONS.c.title_source == "pending"
    workers = set(session.scalars(select(CONVERSATIONS.c.title_worker).where(pending)))
    dead = [worker for worker in workers if worker != me and gone(session, worker)]
    if not dead:
        return 0
    held_by_dead: ColumnElement[bool] = CONVERSATIONS.c.title_worker.in_(
        [worker for worker in dead if worker is not None])
    if None in dead:  # pending before 0008 recorded who asked
        held_by_dead = or_(held_by_dead, CONVERSATIONS.c.title_worker.is_(None))
    result = session.execute(update(CONVERSATIONS).where(pending, held_by_dead)
                             .values(title_source="message", title_worker=None))
    return cast(int, result.rowcount)  # type: ignore[attr-defined]


def write_title(sessions: sessionmaker[Session], provider: Provider,
                conversation_id: uuid.UUID, question: str, answer: str) -> None:
    """Ask the model for the title (marked `pending` by `ask`) and store it, unless the
    conversation was renamed meanwhile."""
    reply = ""
    try:
        stream = provider.stream(prompt(question, answer), temperature=None)
        try:
            for item in stream:
                if isinstance(item, str):
                    reply += item
                    if len(reply) >= ENOUGH or "\n" in reply.strip():
                        break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the rest of a long reply is not read
    except ProviderError as exc:
        log.info("no title for %s: %s", conversation_id, exc.code)
    except Exception:
        log.warning("no title for %s", conversation_id, exc_info=True)
    title = cleaned(reply)
    with sessions.begin() as session:
        connection = session.connection()
        if title is None:
            stored = _moved(connection, conversation_id, "pending", title_source="message",
                            title_worker=None)
        else:
            stored = _moved(connection, conversation_id, "pending", title=title,
                            title_source="model", title_worker=None)
    if not stored:
        log.info("the title of %s came after a rename (or its deletion): not stored",
                 conversation_id)
