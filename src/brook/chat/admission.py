"""Admission: a worker takes a new answer only while it can serve the ones it has on time.

Two measures refuse a new answer, before anything is stored: the answers this process is
writing (at most MAX_ANSWERS_PER_WORKER), and how late its event loop runs (at most
MAX_EVENT_LOOP_LAG_MS). The lag comes from a probe that asks to wake every PROBE_SECONDS
and notes how late it woke. A probe that is overdue right now counts too, so a burst that
floods the loop is seen while it floods it, not only once the probe gets to run.

A refused request is answered `503 overloaded` with `Retry-After`; behind a load balancer the
retry may land on another instance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PROBE_SECONDS = 0.05


class Overloaded(Exception):
    """This worker is at capacity; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"overloaded; retry after {retry_after} s")
        self.retry_after = retry_after


class Admission:
    def __init__(self, max_answers: int, max_lag: float, in_flight: Callable[[], int],
                 spawn: Callable[[Callable[[], None]], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_answers = max_answers
        self.max_lag = max_lag
        self.in_flight = in_flight
        self.clock = clock
        self.spawn = spawn
        self.lag = 0.0  # how late the probe woke last time
        self.reserved = 0  # answers admitted whose generation has not started yet
        self._due = math.inf  # when the probe should wake next: never, until `start`
        self._closed = False

    def start(self) -> None:
        """Start the probe (ChatService.start does). Until then no lag is measured."""
        self._due = self.clock() + PROBE_SECONDS
        self.spawn(self._probe)

    def _probe(self) -> None:
        while not self._closed:
            self._due = self.clock() + PROBE_SECONDS
            time.sleep(PROBE_SECONDS)
            self.lag = max(0.0, self.clock() - self._due)

    def current_lag(self) -> float:
        """How late the event loop runs: the last probe's lateness, or more if overdue now."""
        return max(self.lag, self.clock() - self._due)

    def check(self) -> None:
        """Raise `Overloaded` unless this worker can take another answer now."""
        if self.in_flight() + self.reserved >= self.max_answers:
            raise Overloaded(2)
        lag = self.current_lag()
        if lag > self.max_lag:
            raise Overloaded(max(1, math.ceil(lag)))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Admit one answer, holding its place until the block ends (its turn stored, or
        refused): requests that wait on the database meanwhile cannot all be admitted into
        the same last place. The caller makes the answer live right after the block, before
        anything else runs, so it is counted once throughout."""
        self.check()
        self.reserved += 1
        try:
            yield
        finally:
            self.reserved -= 1

    def close(self) -> None:
        self._closed = True
