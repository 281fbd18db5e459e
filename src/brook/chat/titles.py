"""Titles written by the model: after a conversation's first answer, a short request asks
the conversation's model for a title of a few words.

Until it comes (and if it fails) the title stays the first message's first words. The
conversation's `title_source` tells the page where it stands: `message` (the first words),
`pending` (asked), `model` (written), `user` (renamed: never overwritten, also not by a
title that arrives after the rename).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import cast

from sqlalchemy import Connection, Table, update
from sqlalchemy.orm import Session, sessionmaker

from ..messages import ChatMessage
from ..models import TITLE_CHARS, Conversation
from ..providers import Provider, ProviderError

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
           **values: str) -> bool:
    """Set the title's fields where its source is still `source`; whether it was."""
    result = connection.execute(update(CONVERSATIONS)
                                .where(CONVERSATIONS.c.id == conversation_id,
                                       CONVERSATIONS.c.title_source == source)
                                .values(**values))
    return bool(result.rowcount)


def ask(connection: Connection, conversation_id: uuid.UUID) -> bool:
    """Mark the title `pending`, if it is still the first message's words; whether it was.
    Done before the answer's end reaches its readers, so that a page which then reloads
    the list sees the title coming."""
    return _moved(connection, conversation_id, "message", title_source="pending")


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
            stored = _moved(connection, conversation_id, "pending", title_source="message")
        else:
            stored = _moved(connection, conversation_id, "pending", title=title,
                            title_source="model")
    if not stored:
        log.info("the title of %s came after a rename (or its deletion): not stored",
                 conversation_id)
