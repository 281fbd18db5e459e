"""What a level left in Brook's database: its messages, read back after the level.

Every client of a level sends a unique message, ``"<level key> #<client>"``, so the level's
conversations are found by their user message, whatever earlier levels, warm-ups or other
runs stored in the same database. For each such user message this reads the assistant
messages of its conversation (id, ``status`` and text), from the SQLite file of the
in-process bus or the PostgreSQL database of the others, with the plain driver (sqlite3,
psycopg): no Brook code, so the count does not depend on what it checks.

``settled`` waits (up to a limit) until none of the level's answers is still ``streaming``
before it counts: a reader may read the ``end`` a moment before the final write commits.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("streaming", "complete", "stopped", "error", "interrupted")

_QUERY = (
    "SELECT u.id, u.content, a.id, a.status, a.content FROM messages u "
    "LEFT JOIN messages a ON a.conversation_id = u.conversation_id AND a.role = 'assistant' "
    "WHERE u.role = 'user' AND u.content LIKE {mark}"
)


@dataclass(frozen=True)
class Answer:
    id: str  # 32 hex digits, as uuid.UUID(...).hex
    status: str
    content: str


@dataclass
class Stored:
    """The level's stored messages: user messages by key, their conversations' answers."""

    users: Counter[str] = field(default_factory=Counter)  # key -> user messages with it
    answers: dict[str, list[Answer]] = field(default_factory=dict)  # key -> its answers
    waited_s: float = 0.0  # how long `settled` waited for the last answers to end

    @property
    def answer_count(self) -> int:
        return sum(len(found) for found in self.answers.values())

    def statuses(self) -> Counter[str]:
        return Counter(a.status for found in self.answers.values() for a in found)

    def answer(self, key: str) -> Answer | None:
        found = self.answers.get(key)
        return found[0] if found and len(found) == 1 else None


def _rows(database: str, pattern: str) -> list[tuple[Any, ...]]:
    if database.startswith("sqlite:///"):
        with sqlite3.connect(database.removeprefix("sqlite:///"), timeout=30) as conn:
            return list(conn.execute(_QUERY.format(mark="?"), (pattern,)))
    import psycopg

    with psycopg.connect(database, autocommit=True) as pg:
        return list(pg.execute(_QUERY.format(mark="%s"), (pattern,)).fetchall())


def read(database: str, level_key: str) -> Stored:
    """The messages stored by the clients whose keys are ``f"{level_key} #<n>"``."""
    prefix = f"{level_key} #"
    stored = Stored()
    users: set[tuple[str, str]] = set()
    answers: set[str] = set()
    for user_id, key, answer_id, status, content in _rows(database, prefix + "%"):
        if not key.startswith(prefix):  # LIKE's _ matches any character
            continue
        if (key, str(user_id)) not in users:
            users.add((key, str(user_id)))
            stored.users[key] += 1
        found = stored.answers.setdefault(key, [])
        if answer_id is not None and (hex_id := uuid.UUID(str(answer_id)).hex) not in answers:
            answers.add(hex_id)
            found.append(Answer(hex_id, status, content or ""))
    return stored


def settled(database: str, level_key: str, timeout: float) -> Stored:
    """`read`, once none of the level's answers is `streaming` (or after `timeout` s)."""
    began = time.monotonic()
    while True:
        stored = read(database, level_key)
        waited = time.monotonic() - began
        if not stored.statuses()["streaming"] or waited >= timeout:
            stored.waited_s = round(waited, 1)
            return stored
        time.sleep(0.5)
