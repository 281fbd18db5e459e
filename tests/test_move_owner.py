"""database.move_owner: an anonymous owner's conversations and usage go to the owner its
browser signs in as (tests/test_oidc.py drives it through the sign-in itself)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import event, select

from brook import database
from brook.models import Conversation, Usage

from .conftest import AppFactory

TODAY = date(2026, 3, 14)
NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
OLD, NEW = "anon:old", "oidc:example.test:ann"


def usage(owner: str, day: date, answers: int, tokens: int, conversations: int,
          minute: datetime | None, minute_answers: int) -> Usage:
    return Usage(owner=owner, day=day, answers=answers, tokens=tokens,
                 conversations=conversations, minute=minute, minute_answers=minute_answers)


def rows(db: Any, owner: str) -> dict[date, tuple[Any, ...]]:
    """An owner's usage, day by day: (answers, tokens, conversations, minute, its answers)."""
    found = {}
    for row in db.scalars(select(Usage).where(Usage.owner == owner)):
        minute = row.minute
        if minute is not None and minute.tzinfo is None:  # SQLite's: UTC
            minute = minute.replace(tzinfo=UTC)
        found[row.day] = (row.answers, row.tokens, row.conversations, minute,
                          row.minute_answers)
    return found


def test_move_owner_merges_usage_day_by_day(make_app: AppFactory, database_url: str) -> None:
    app = make_app(database_url)
    sessions = app.extensions["brook.sessions"]
    day = timedelta(days=1)
    later, earlier = NOON + timedelta(minutes=5), NOON - timedelta(minutes=5)
    with sessions() as db:
        db.add_all([
            Conversation(owner=OLD, title="asked anonymously"),
            Conversation(owner=OLD, title="asked anonymously too"),
            Conversation(owner=NEW, title="asked signed in"),
            Conversation(owner="anon:someone-else", title="not theirs"),
            # today: both rows, the old owner's minute the later one
            usage(OLD, TODAY, 3, 300, 2, later, 2),
            usage(NEW, TODAY, 5, 1000, 1, NOON, 4),
            # yesterday: both in the same minute, whose answers add up
            usage(OLD, TODAY - day, 1, 10, 1, NOON - day, 1),
            usage(NEW, TODAY - day, 2, 20, 0, NOON - day, 2),
            # two days ago: the new owner's minute the later one
            usage(OLD, TODAY - 2 * day, 4, 40, 0, earlier - 2 * day, 3),
            usage(NEW, TODAY - 2 * day, 1, 5, 1, NOON - 2 * day, 1),
            # three days ago: only the old owner's row (made for the new owner)
            usage(OLD, TODAY - 3 * day, 7, 70, 2, NOON - 3 * day, 7),
            # four days ago: the new owner's answers were counted with no minute (no limit)
            usage(OLD, TODAY - 4 * day, 1, 1, 0, NOON - 4 * day, 1),
            usage(NEW, TODAY - 4 * day, 6, 60, 0, None, 0),
            # five days ago: the old owner's row has no minute
            usage(OLD, TODAY - 5 * day, 2, 2, 0, None, 0),
            usage(NEW, TODAY - 5 * day, 1, 1, 0, NOON - 5 * day, 1),
            # others', untouched
            usage("anon:someone-else", TODAY, 9, 900, 1, NOON, 9),
            usage("*", TODAY, 0, 5000, 0, None, 0),
        ])
        db.commit()

    with sessions() as db:
        commits: list[None] = []
        event.listen(db, "after_commit", lambda _session: commits.append(None))
        assert database.move_owner(db, OLD, NEW) == 2
        assert len(commits) == 1  # one transaction

    with sessions() as db:
        assert rows(db, OLD) == {}
        assert rows(db, NEW) == {
            TODAY: (8, 1300, 3, later, 2),
            TODAY - day: (3, 30, 1, NOON - day, 3),
            TODAY - 2 * day: (5, 45, 1, NOON - 2 * day, 1),
            TODAY - 3 * day: (7, 70, 2, NOON - 3 * day, 7),
            TODAY - 4 * day: (7, 61, 0, NOON - 4 * day, 1),
            TODAY - 5 * day: (3, 3, 0, NOON - 5 * day, 1),
        }
        assert rows(db, "anon:someone-else") == {TODAY: (9, 900, 1, NOON, 9)}
        assert rows(db, "*") == {TODAY: (0, 5000, 0, None, 0)}
        owners = {c.title: c.owner for c in db.scalars(select(Conversation))}
        assert owners == {"asked anonymously": NEW, "asked anonymously too": NEW,
                          "asked signed in": NEW, "not theirs": "anon:someone-else"}

    with sessions() as db:  # an owner with nothing: nothing moves, nothing fails
        assert database.move_owner(db, "anon:nobody", NEW) == 0
        assert len(rows(db, NEW)) == 6
