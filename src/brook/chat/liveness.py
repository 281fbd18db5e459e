"""Liveness: which serving processes are alive, and which answers lost the one writing them.

Each process has a row in `workers` whose `alive_until` its heartbeat pushes a lease ahead
every third of a lease (STREAM_LEASE_SECONDS). The heartbeat runs on an OS thread with a
database connection of its own: a greenlet would renew only when a saturated event loop got
to it, and another process's sweep would then take a busy worker for a dead one and close
answers it is still writing. An OS thread gets the interpreter every few milliseconds, so
only a process that is gone (killed, hung, or cut off from the database) stops beating.

An answer is an orphan when it is `streaming`, its start's grace (`lease_until`) is over, and
its process is gone: that process's heartbeat ran out, it never had one, or it ran on this
host under a pid that no longer exists (then it is known at once, without waiting).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from ..background import os_sleep, os_thread
from ..models import Message, Worker, utcnow
from .bus import Recovered
from .live import split

log = logging.getLogger(__name__)

# Rows of processes gone this long are deleted by the sweep.
FORGET_WORKERS_AFTER = timedelta(hours=1)


def worker_id() -> str:
    """This process, as recorded on the answers it generates: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """This process's `workers` row, renewed from an OS thread of its own.

    `start` writes the first beat before returning, so the row exists before any answer
    names it. The thread owns `engine` (a pool of one connection) and disposes of it;
    `stop` does if the thread was never started.
    """

    def __init__(self, engine: Engine, worker: str, lease: float) -> None:
        self.engine = engine
        self.worker = worker
        self.lease = timedelta(seconds=lease)
        self.every = lease / 3
        self._stopped = False  # a plain flag: the loop's gevent events are not for OS threads
        self._started = False

    def start(self) -> None:
        self.beat()
        self._started = True
        os_thread(self._run, "brook-heartbeat")

    def beat(self) -> None:
        now = utcnow()
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(Worker).where(Worker.id == self.worker)
                .values(alive_until=now + self.lease)).rowcount
            if not renewed:
                connection.execute(insert(Worker).values(
                    id=self.worker, alive_until=now + self.lease, started_at=now))

    def _run(self) -> None:
        try:
            while not self._stopped:
                slept = 0.0
                while slept < self.every and not self._stopped:
                    os_sleep(0.1)
                    slept += 0.1
                if self._stopped:
                    break
                try:
                    self.beat()
                except Exception:
                    log.warning("could not renew this worker's heartbeat; retrying",
                                exc_info=True)
        finally:
            self.engine.dispose()

    def stop(self) -> None:
        self._stopped = True
        if not self._started:
            self.engine.dispose()


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; Brook stores UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def dead_here(worker: str | None, host: str) -> bool:
    """Whether `worker` ran on this host under a pid that no longer exists."""
    if not worker or worker.count(":") < 2:
        return False
    worker_host, pid, _nonce = worker.rsplit(":", 2)
    if worker_host != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process nobody has reaped yet is a zombie: dead all the same
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


def orphans(session: Session, me: str | None = None) -> list[uuid.UUID]:
    """The answers whose process is gone (see the module's docstring).

    `me` is the caller's own worker id: its answers are listed too, and the caller leaves
    out those it is writing or starting (the rest, e.g. a generator that failed to start,
    are orphans).
    """
    now, host = utcnow(), socket.gethostname()
    rows = session.execute(
        select(Message.id, Message.worker, Worker.alive_until)
        .outerjoin(Worker, Worker.id == Message.worker)
        .where(Message.status == "streaming",
               or_(Message.lease_until.is_(None), Message.lease_until < now))
    ).all()
    return [message_id for message_id, worker, alive_until in rows
            if worker == me or alive_until is None or _as_utc(alive_until) < now
            or dead_here(worker, host)]


def gone(session: Session, worker: str | None) -> bool:
    """Whether the process `worker` is gone (no heartbeat, or it ran out, or it died here)."""
    alive_until = session.scalar(select(Worker.alive_until).where(Worker.id == worker))
    return (alive_until is None or _as_utc(alive_until) < utcnow()
            or dead_here(worker, socket.gethostname()))


def forget_old_workers(session: Session) -> None:
    session.execute(delete(Worker).where(Worker.alive_until < utcnow() - FORGET_WORKERS_AFTER))


def surviving_text(stored: str, recovered: tuple[int, str] | None) -> str:
    """The longest text of an answer that survived its writer.

    `stored` is the database's; `recovered` is `(start, text)` from the stream bus, whose
    text begins at character `start` (later than 0 if Redis restarted mid-answer). Both are
    prefixes of the same answer, so where the bus reaches further and joins on, it wins.
    """
    if recovered is None:
        return stored
    start, text = recovered
    if start > len(stored) or start + len(text) <= len(stored):
        return stored
    return stored[:start] + text


def surviving(reasoning: str, content: str, recovered: Recovered | None) -> tuple[str, str]:
    """An answer's reasoning and content that survived its writer: the database's two
    columns, or where the bus reaches further, its text (chat/live.py's one stream)."""
    text = surviving_text(reasoning + content, None if recovered is None else recovered[:2])
    reasoning_end = max(len(reasoning), 0 if recovered is None else recovered[2])
    return split(text, min(reasoning_end, len(text)))
