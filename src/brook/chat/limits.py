"""Per-owner limits and the deployment's daily token budget, counted in the database.

A check runs in the transaction that stores what it admits (a turn, a conversation), after
one statement that counts it in the owner's row of `usage` for today and so locks the row
(an upsert returning the counts): one owner's parallel requests take turns there, so no
count is overshot, and a refusal rolls the count back with nothing stored. The counts are
rows, so they hold across workers and instances and survive any restart. (They are kept in
the database also where REDIS_URL is set: a count and what it admits then commit together,
or neither does.)

Tokens are added when an answer ends: what the model reported, or an estimate where it
reported none (a stopped answer, a model that does not say). An owner's answers already
streaming may therefore take them past LIMIT_TOKENS_PER_DAY, by those answers and no more;
the next answer is refused. Days and minutes are UTC; the minute is a fixed window.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, case, func, literal, select, union_all
from sqlalchemy.dialects import postgresql, sqlite

from ..config import Settings
from ..models import Conversation, Message, Usage

USAGE = cast(Table, Usage.__table__)
EVERYONE = "*"  # the owner whose row holds the whole deployment's tokens
BUSY_RETRY = 5  # seconds: when an owner's streaming answers may be done (a guess)


@dataclass(frozen=True)
class Quota:
    """One kind of owner's limits; 0 is no limit."""

    answers_per_minute: int
    concurrent_answers: int
    tokens_per_day: int
    conversations_per_day: int
    stored_conversations: int


class LimitExceeded(Exception):
    """A request over a limit: which one, its value, and when it resets (None: when the
    owner's own answers end, or they delete a conversation)."""

    def __init__(self, limit: str, value: int, resets_at: datetime | None, message: str,
                 now: datetime) -> None:
        super().__init__(f"{limit}: {message}")
        self.limit, self.value, self.resets_at, self.message = limit, value, resets_at, message
        wait = BUSY_RETRY if resets_at is None else (resets_at - now).total_seconds()
        self.retry_after = max(1, math.ceil(wait))


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they are UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _check(limit: str, value: int, used: Callable[[], int], resets_at: datetime | None,
           now: datetime, message: str) -> None:
    """Raise `LimitExceeded` if the limit is on (`value` not 0) and `used()` has reached it;
    `used` is asked only then (it may be a query)."""
    if value and used() >= value:
        raise LimitExceeded(limit, value, resets_at, message, now)


def tomorrow(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)


def _upsert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _count_answer_statement(dialect: str, with_budget: bool) -> Any:
    """Count an answer in its owner's row of today (made if missing, then locked until the
    transaction ends), returning the counts with it: the checks come after, and a refusal
    rolls the count back. With `with_budget`, also the deployment's tokens today."""
    minute = bindparam("b_minute", type_=USAGE.c.minute.type)
    statement = _upsert(dialect)(USAGE).values(
        owner=bindparam("b_owner"), day=bindparam("b_day"), answers=1, tokens=0,
        conversations=0, minute=minute, minute_answers=1)
    statement = statement.on_conflict_do_update(
        index_elements=[USAGE.c.owner, USAGE.c.day],
        set_={"answers": USAGE.c.answers + 1, "minute": minute,
              "minute_answers": case((USAGE.c.minute == minute, USAGE.c.minute_answers + 1),
                                     else_=1)})
    returned: list[Any] = [USAGE.c.tokens, USAGE.c.minute_answers]
    if with_budget:  # a read, not a lock: the budget may be passed by answers in flight
        everyone = USAGE.alias("everyone")
        returned.append(select(everyone.c.tokens)
                        .where(everyone.c.owner == EVERYONE, everyone.c.day == bindparam("b_day"))
                        .scalar_subquery().label("everyone"))
    return statement.returning(*returned)


def _count_conversation_statement(dialect: str) -> Any:
    """Count a conversation in its owner's row of today, as above, returning today's."""
    statement = _upsert(dialect)(USAGE).values(
        owner=bindparam("b_owner"), day=bindparam("b_day"), answers=0, tokens=0,
        conversations=1, minute_answers=0)
    return statement.on_conflict_do_update(
        index_elements=[USAGE.c.owner, USAGE.c.day],
        set_={"conversations": USAGE.c.conversations + 1},
    ).returning(USAGE.c.conversations)


def _add_tokens_statement(dialect: str, with_budget: bool) -> Any:
    """Add tokens to the row of an answer's owner (found from the answer) and, with
    `with_budget`, to the row of everyone: one statement either way."""
    owner = (select(Conversation.owner).join(Message, Message.conversation_id == Conversation.id)
             .where(Message.id == bindparam("b_message")).scalar_subquery())

    def row(who: Any) -> Any:  # none for an answer deleted with its conversation meanwhile
        return select(who.label("owner"), bindparam("b_day"), literal(0), bindparam("b_tokens"),
                      literal(0), literal(0)).where(who.is_not(None))

    rows: Any = union_all(row(owner), row(literal(EVERYONE))) if with_budget else row(owner)
    statement = _upsert(dialect)(USAGE).from_select(
        ["owner", "day", "answers", "tokens", "conversations", "minute_answers"], rows)
    return statement.on_conflict_do_update(
        index_elements=[USAGE.c.owner, USAGE.c.day],
        set_={"tokens": USAGE.c.tokens + statement.excluded.tokens})


_STATEMENTS: dict[tuple[str, str, bool], Any] = {}  # built once per dialect and budget


def _statement(name: str, connection: Connection, with_budget: bool = False) -> Any:
    dialect = connection.dialect.name
    statement = _STATEMENTS.get((name, dialect, with_budget))
    if statement is None:
        if name == "answer":
            statement = _count_answer_statement(dialect, with_budget)
        elif name == "tokens":
            statement = _add_tokens_statement(dialect, with_budget)
        else:
            statement = _count_conversation_statement(dialect)
        _STATEMENTS[(name, dialect, with_budget)] = statement
    return statement


STREAMING = (select(func.count()).select_from(Message)
             .join(Conversation, Message.conversation_id == Conversation.id)
             .where(Conversation.owner == bindparam("b_owner"), Message.status == "streaming"))
STORED = select(func.count()).select_from(Conversation).where(
    Conversation.owner == bindparam("b_owner"))
EVERYONES_TOKENS = select(USAGE.c.tokens).where(USAGE.c.owner == EVERYONE,
                                                USAGE.c.day == bindparam("b_day"))


class Limits:
    """The limits of anonymous and signed-in owners, and the budget, from the settings."""

    def __init__(self, settings: Settings) -> None:
        s = settings
        self.everyone = Quota(s.limit_answers_per_minute, s.limit_concurrent_answers,
                              s.limit_tokens_per_day, s.limit_conversations_per_day,
                              s.limit_stored_conversations)

        def signed_in(value: int | None, default: int) -> int:
            return default if value is None else value

        self.signed_in = Quota(
            signed_in(s.signed_in_limit_answers_per_minute, s.limit_answers_per_minute),
            signed_in(s.signed_in_limit_concurrent_answers, s.limit_concurrent_answers),
            signed_in(s.signed_in_limit_tokens_per_day, s.limit_tokens_per_day),
            signed_in(s.signed_in_limit_conversations_per_day, s.limit_conversations_per_day),
            signed_in(s.signed_in_limit_stored_conversations, s.limit_stored_conversations))
        self.budget = s.budget_tokens_per_day

    def quota(self, signed_in: bool, admin: bool) -> Quota | None:
        """An owner's limits; None for an admin, who has none (the budget included)."""
        if admin:
            return None
        return self.signed_in if signed_in else self.everyone

    def count_answer(self, connection: Connection, owner: str, now: datetime,
                     with_budget: bool = False) -> Any:
        """Count a new answer of `owner`'s, after their other requests in flight (the row's
        lock); today's row after it, as `_count_answer_statement` returns it."""
        return connection.execute(_statement("answer", connection, with_budget),
                                  {"b_owner": owner, "b_day": now.date(),
                                   "b_minute": now.replace(second=0, microsecond=0)}).one()

    def admit_answer(self, connection: Connection, owner: str, quota: Quota | None,
                     now: datetime) -> None:
        """Count a new answer of `owner`'s, or raise `LimitExceeded` (roll back then)."""
        if quota is None:
            return
        row = self.count_answer(connection, owner, now, with_budget=bool(self.budget))
        minute = now.replace(second=0, microsecond=0)
        _check("answers_per_minute", quota.answers_per_minute, lambda: row.minute_answers - 1,
               minute + timedelta(minutes=1), now,
               f"You may start {_count(quota.answers_per_minute, 'answer')} a minute, and "
               "this minute's are used.")
        _check("tokens_per_day", quota.tokens_per_day, lambda: row.tokens, tomorrow(now), now,
               f"You have used today's {quota.tokens_per_day:,} tokens.")
        _check("budget_tokens_per_day", self.budget, lambda: row.everyone or 0,
               tomorrow(now), now, "This Brook has used all the tokens it may use today.")
        # A statement of its own, after the row's lock: on PostgreSQL it then sees the
        # answers that the owner's earlier requests committed while this one waited (a
        # subquery of the locking statement would see the database as it was before).
        _check("concurrent_answers", quota.concurrent_answers,
               lambda: connection.execute(STREAMING, {"b_owner": owner}).scalar_one(), None,
               now, f"You may have {_count(quota.concurrent_answers, 'answer')} written at "
               "once: wait for one to finish.")

    def admit_conversation(self, connection: Connection, owner: str, quota: Quota | None,
                           now: datetime) -> None:
        """Count a new conversation of `owner`'s, or raise `LimitExceeded`."""
        if quota is None:
            return
        counted = connection.execute(_statement("conversation", connection),
                                     {"b_owner": owner, "b_day": now.date()}).scalar_one()
        _check("conversations_per_day", quota.conversations_per_day, lambda: counted - 1,
               tomorrow(now), now,
               f"You may start {_count(quota.conversations_per_day, 'conversation')} a day, "
               "and today's are used.")
        _check("stored_conversations", quota.stored_conversations,
               lambda: connection.execute(STORED, {"b_owner": owner}).scalar_one(), None, now,
               f"You may keep {_count(quota.stored_conversations, 'conversation')}: delete "
               "one to start another.")

    def add_tokens(self, connection: Connection, message_id: uuid.UUID, tokens: int,
                   day: date) -> None:
        """Add an ended answer's tokens to its owner's day, and to the deployment's where
        there is a budget (one row that every answer would update otherwise)."""
        if tokens <= 0:
            return
        connection.execute(_statement("tokens", connection, bool(self.budget)),
                           {"b_message": message_id, "b_tokens": tokens, "b_day": day})

    def usage(self, connection: Connection, owner: str, quota: Quota | None,
              now: datetime) -> dict[str, Any]:
        """An owner's use of each limit today (the API's `GET /api/usage`)."""
        day = now.date()
        row = connection.execute(select(USAGE).where(USAGE.c.owner == owner,
                                                     USAGE.c.day == day)).first()
        minute = now.replace(second=0, microsecond=0)
        in_minute = row.minute_answers if row and _aware(row.minute) == minute else 0
        used = {
            "answers_per_minute": in_minute,
            "concurrent_answers": connection.execute(STREAMING, {"b_owner": owner}).scalar_one(),
            "tokens_per_day": row.tokens if row else 0,
            "conversations_per_day": row.conversations if row else 0,
            "stored_conversations": connection.execute(STORED, {"b_owner": owner}).scalar_one(),
        }
        resets = {"answers_per_minute": minute + timedelta(minutes=1),
                  "tokens_per_day": tomorrow(now), "conversations_per_day": tomorrow(now)}
        limits: dict[str, Any] = {}
        for name, count in used.items():
            value = None if quota is None else getattr(quota, name) or None
            limits[name] = {"limit": value, "used": count,
                            "remaining": None if value is None else max(0, value - count),
                            "resets_at": resets.get(name)}
        budget = self.budget if quota is not None and self.budget else None
        everyone = connection.execute(EVERYONES_TOKENS, {"b_day": day}).scalar() or 0
        limits["budget_tokens_per_day"] = {
            "limit": budget, "used": everyone if budget else None,
            "remaining": None if budget is None else max(0, budget - everyone),
            "resets_at": tomorrow(now)}
        return {"day": day, "answers_today": row.answers if row else 0,
                "tokens_today": row.tokens if row else 0, "limits": limits}


def per_owner(connection: Connection, since: date) -> list[dict[str, Any]]:
    """Each owner's answers, tokens and conversations per day since `since` (the admins'
    view), newest day first, most tokens first; the deployment's row is left out."""
    rows = connection.execute(
        select(USAGE.c.day, USAGE.c.owner, USAGE.c.answers, USAGE.c.tokens,
               USAGE.c.conversations)
        .where(USAGE.c.day >= since, USAGE.c.owner != EVERYONE)
        .order_by(USAGE.c.day.desc(), USAGE.c.tokens.desc(), USAGE.c.owner))
    return [dict(row._mapping) for row in rows]
