"""Turn what the load client, the fake server and the database recorded into metrics,
tables, goals and a plot.

The definitions (``docs/performance.md`` explains them):

- accepted: the message POST was answered ``202``; refused: a POST was answered ``503``
  ``overloaded`` (the client stops there; that is not a failure, but it must have stored
  nothing); completed: an accepted client that read the whole answer and an ``end`` with
  status ``complete``, whose text is the stored answer's, byte for byte; failed: the rest;
- cut: a stream that ended (or whose connection was lost) without an ``end`` event, or
  whose text is not whole (the pieces do not join at their event ids, or do not add up to
  the fake model's answer). A reconnecting client's own hang-ups are not cuts: its text is
  assembled from all its streams (``assemble``);
- behind: an ``end`` whose id is below the text the reader already had (the answer was
  ``interrupted``, and the reader had read text that did not survive); counted apart;
- added TTFT: client time from writing the message POST to reading the first ``message``
  event, minus the fake server's configured time to first token (with ``--reconnect``, a
  hang-up before the first token adds the reconnection); POST -> 202: writing the message
  POST to reading its 202 (what a burst's clients wait to be accepted);
- token lateness: for each token after the first, when the client read the event that
  completed it, minus when the fake server wrote it (both ``time.monotonic()``). It is
  the time Brook added to that token: relaying, the coalescing window, queueing;
- relayed tokens: upstream tokens that reached a client whole;
- CPU ratio over the baseline: CPU per relayed token of a setup over that of ``local`` (one
  worker, in-process bus, SQLite) at the same level shape of the same run; "with services"
  adds Redis's and PostgreSQL's CPU to the setup's (the baseline uses neither).
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load_client import ClientResult, Event, parse_stream
from load_store import STATUSES, Stored

GOAL_TTFT_MS = 50.0  # added TTFT p99 at 500 concurrent
GOAL_LATENESS_MS = 50.0  # token lateness p99 at 1,000 concurrent
GOAL_CPU_MS = 20.0  # server CPU per 1,000 relayed tokens
GOAL_KB = 64.0  # server memory per open stream
GOAL_BUS_RATIO = 1.15  # Redis bus + PostgreSQL (and two workers) over the in-process bus
GOAL_BURST_TTFT_MS = 150.0  # added TTFT p99, one worker, 100 clients at once
GOAL_BURST_ACCEPTED = 0.5  # share of clients accepted, 1,000 (or more) at once
BASELINE = "local"
CUT = ("stream ended without end", "incomplete answer")


@dataclass
class LevelRun:
    """Everything recorded for one level (a shape of clients) on one setup."""

    bus: str
    concurrency: int  # clients
    ttft: float
    gap: float
    results: list[ClientResult]
    sends: dict[str, list[float]]
    pieces: list[int]
    setup: str = ""  # the bus, with "x<instances>" for more than one instance
    instances: int = 1
    shape: str = ""  # burst:N, ramp:N/S
    ramp: float = 0.0
    reconnect: bool = False
    stored: Stored | None = None
    wall: float = 0.0
    brook_cpu: float = 0.0
    worker_cpu: float = 0.0
    idle_rss: int = 0
    peak_rss: int = 0
    peak_open: int = 0
    client_cpu: float = 0.0
    upstream_cpu: float = 0.0
    redis_cpu: float = 0.0
    postgres_cpu: float = 0.0
    machine_busy: float = 0.0
    machine_busy_before: float = 0.0  # with Brook idle: what else runs on the machine
    machine_busy_s: float = 0.0  # CPU seconds the whole machine spent during the level
    log: dict[str, int] = field(default_factory=dict)


@dataclass
class Reading:
    """A client's answer as it read it, over all its streams."""

    messages: list[tuple[float, int]] = field(default_factory=list)  # (read at, event id)
    text: str = ""
    end: Event | None = None
    error: Event | None = None
    finished: bool = False  # the last stream's body ended with its last chunk
    joined: bool = True  # every piece began where the text before it ended
    behind: bool = False  # the end's id is below the text read
    streams: int = 0
    hangups: int = 0


def assemble(result: ClientResult) -> Reading:
    """Join the text of a client's streams in order, checking each piece's event id."""
    reading = Reading()
    pieces: list[str] = []
    length = 0
    for segment in result.segments:
        reading.streams += 1
        reading.hangups += segment.hung_up
        events, reading.finished = parse_stream(segment.packets)
        for event in events:
            if event.name == "message":
                piece = event.data.get("text", "")
                if event.id - len(piece) != length:
                    reading.joined = False
                pieces.append(piece)
                length += len(piece)
                reading.messages.append((event.at, event.id))
            elif event.name == "error":
                reading.error = reading.error or event
            elif event.name == "end":
                reading.end = event
                reading.behind = event.id < length
                break
        if reading.end is not None:
            break
    reading.text = "".join(pieces)
    return reading


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linearly interpolated; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(values: list[float], q: float) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value * 1000, 2)


def _outcome(result: ClientResult, reading: Reading, total_chars: int,
             stored: Stored | None) -> str | None:
    """Why an accepted client failed (None if it got the whole answer, as stored)."""
    if result.error:
        return result.error
    if reading.error is not None:
        return f"error event: {reading.error.data.get('code')}"
    if reading.end is None:
        return "stream ended without end" if reading.finished else \
            "no end within the time limit"
    status = reading.end.data.get("status")
    if reading.behind:
        return f"end behind the reader (status {status})"
    if status != "complete":
        return f"end status {status}"
    length = len(reading.text)
    if not reading.joined or length != total_chars or reading.end.id != length:
        return f"incomplete answer ({length} of {total_chars} characters)"
    if stored is not None:
        answer = stored.answer(result.key)
        if answer is None:
            return "answer not stored"
        if answer.content.encode() != reading.text.encode():
            return "text differs from the stored answer"
    return None


def _stored_checks(run: LevelRun, readings: dict[int, Reading]) -> dict[str, Any] | None:
    """What the database holds for the level, against what the clients were told."""
    stored = run.stored
    if stored is None:
        return None
    accepted = {r.key for r in run.results if r.accepted}
    refused = {r.key for r in run.results if r.refused}
    not_complete: Counter[str] = Counter()
    mismatched = 0
    for result in run.results:
        if not result.accepted:
            continue
        answer = stored.answer(result.key)
        if answer is None:
            not_complete["missing" if not stored.answers.get(result.key) else "several"] += 1
            continue
        if answer.status != "complete":
            not_complete[answer.status] += 1
        reading = readings[result.index]
        # A reader that had the end has the whole answer: it must be the stored one.
        if reading.end is not None and not reading.behind and \
                answer.content.encode() != reading.text.encode():
            mismatched += 1
    statuses = stored.statuses()
    return {
        "user_messages": sum(stored.users.values()),
        "assistant_messages": stored.answer_count,
        "by_status": {status: statuses[status] for status in STATUSES if statuses[status]}
        | {status: n for status, n in statuses.items() if status not in STATUSES},
        "accepted_not_complete": dict(not_complete),
        "refused_stored": len(refused & set(stored.users)),
        "unaccepted_stored": len(set(stored.users) - accepted),
        "mismatched": mismatched,
        "waited_s": stored.waited_s,
    }


def level_metrics(run: LevelRun) -> dict[str, Any]:
    ends: list[int] = []
    for size in run.pieces:
        ends.append((ends[-1] if ends else 0) + size)
    total_chars = ends[-1] if ends else 0
    failures: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    retry_after: Counter[str] = Counter()  # 2: the answer cap; 3 and up: the loop's lag
    ttft: list[float] = []
    conversation: list[float] = []
    starts: list[float] = []
    post_202: list[float] = []
    setup: list[float] = []
    first_relay: list[float] = []
    lateness: list[float] = []
    raw_gaps: list[float] = []
    upstream_lag: list[float] = []
    tokens = completed = unrecorded = cut = behind = accepted = no_retry_after = 0
    hangups = streams = 0
    first_token, last_token = float("inf"), 0.0
    readings: dict[int, Reading] = {}
    for result in run.results:
        if result.started:
            starts.append(result.started)
        if result.conversation_done:
            conversation.append(result.conversation_done - result.started)
        if result.refused:
            refused[result.refused] += 1
            no_retry_after += result.retry_after is None
            retry_after[result.retry_after or "none"] += 1
            continue
        reading = readings[result.index] = assemble(result)
        hangups += reading.hangups
        streams += reading.streams
        if result.accepted:
            accepted += 1
            post_202.append(result.post_done - result.post_sent)
        failure = _outcome(result, reading, total_chars, run.stored) if result.accepted \
            else result.error or "not accepted"
        if failure:
            failures[failure.split(" (", 1)[0]] += 1
            cut += result.dropped or failure.startswith(CUT)
            behind += failure.startswith("end behind")
        messages = reading.messages
        if not messages:
            continue
        times = [at for at, _ in messages]
        offsets = [offset for _, offset in messages]
        # When the client had each whole token: the first event whose offset reaches its end.
        got = [times[i] for i in (bisect.bisect_left(offsets, end) for end in ends)
               if i < len(times)]
        tokens += len(got)
        first_token, last_token = min(first_token, got[0] if got else first_token), max(
            last_token, got[-1] if got else last_token)
        if failure:
            continue
        completed += 1
        ttft.append(times[0] - result.post_sent - run.ttft)
        raw_gaps += [b - a for a, b in itertools.pairwise(times)]
        sent = run.sends.get(result.key, [])
        if len(sent) != len(ends) + 3:  # request, head, each token, the end
            unrecorded += 1
            continue
        setup.append(sent[0] - result.post_sent)
        tokens_sent = sent[2:-1]
        first_relay.append(got[0] - tokens_sent[0])
        lateness += [at - when for at, when in zip(got[1:], tokens_sent[1:], strict=True)]
        upstream_lag += [b - a - run.gap for a, b in itertools.pairwise(tokens_sent)]
    span = last_token - first_token if tokens else 0.0
    grown = max(0, run.peak_rss - run.idle_rss)
    services = run.redis_cpu + run.postgres_cpu
    n_refused = sum(refused.values())

    def per_1k(cpu: float) -> float | None:
        return round(cpu * 1e6 / tokens, 2) if tokens else None

    return {
        "bus": run.bus,
        "setup": run.setup or run.bus,
        "instances": run.instances,
        "shape": run.shape or str(run.concurrency),
        "ramp_s": run.ramp,
        "reconnect": run.reconnect,
        "concurrency": run.concurrency,
        "clients": len(run.results),
        "accepted": accepted,
        "refused": n_refused,
        "refused_by": dict(refused),
        "refused_without_retry_after": no_retry_after,
        "refused_retry_after": dict(sorted(retry_after.items())),
        "completed": completed,
        "failed": len(run.results) - completed - n_refused,
        "failures": dict(failures),
        "cut": cut,
        "ended_behind": behind,
        "stored": _stored_checks(run, readings),
        "reconnects": hangups,
        "streams_per_answer": round(streams / accepted, 2) if accepted else None,
        "unrecorded": unrecorded,  # completed, but the fake server has no send times for it
        "added_ttft_ms": {"p50": _ms(ttft, 50), "p99": _ms(ttft, 99), "max": _ms(ttft, 100)},
        # First to last client's connect: about 0 for a burst (one loop tick), else the ramp.
        "start_spread_ms": round((max(starts) - min(starts)) * 1000, 2) if starts else None,
        "create_conversation_ms": {"p50": _ms(conversation, 50), "p99": _ms(conversation, 99)},
        "post_to_202_ms": {"p50": _ms(post_202, 50), "p99": _ms(post_202, 99),
                           "max": _ms(post_202, 100)},
        "post_to_upstream_ms": {"p50": _ms(setup, 50), "p99": _ms(setup, 99)},
        "first_token_relay_ms": {"p50": _ms(first_relay, 50), "p99": _ms(first_relay, 99)},
        "token_lateness_ms": {"p50": _ms(lateness, 50), "p99": _ms(lateness, 99),
                              "max": _ms(lateness, 100)},
        "event_gap_ms": {"p50": _ms(raw_gaps, 50), "p99": _ms(raw_gaps, 99)},
        "upstream_gap_overshoot_ms": {"p50": _ms(upstream_lag, 50),
                                      "p99": _ms(upstream_lag, 99)},
        "relayed_tokens": tokens,
        "tokens_per_s": round(tokens / span) if span > 0 else None,
        "wall_s": round(run.wall, 2),
        "brook_cpu_s": round(run.brook_cpu, 3),
        "worker_cpu_share": round(run.worker_cpu / run.wall, 3) if run.wall else None,
        "cpu_ms_per_1k_tokens": per_1k(run.brook_cpu),
        "idle_rss_mb": round(run.idle_rss / 2**20, 1),
        "peak_rss_mb": round(run.peak_rss / 2**20, 1),
        "peak_open_streams": run.peak_open,
        "kb_per_stream": round(grown / 1024 / run.peak_open, 1) if run.peak_open else None,
        "client_cpu_s": round(run.client_cpu, 2),
        "upstream_cpu_s": round(run.upstream_cpu, 2),
        "redis_cpu_s": round(run.redis_cpu, 3),
        "postgres_cpu_s": round(run.postgres_cpu, 3),
        "redis_postgres_cpu_s": round(services, 2),
        "redis_cpu_ms_per_1k_tokens": per_1k(run.redis_cpu),
        "postgres_cpu_ms_per_1k_tokens": per_1k(run.postgres_cpu),
        "redis_postgres_cpu_ms_per_1k_tokens": per_1k(services),
        "machine_busy": round(run.machine_busy, 3),
        "machine_busy_before": round(run.machine_busy_before, 3),
        # CPU that neither Brook, the client, the fake model, Redis nor PostgreSQL used during
        # the level: other jobs on this shared machine, as a share of all its cores.
        "others_busy": round(max(0.0, run.machine_busy_s - run.brook_cpu - run.client_cpu
                                 - run.upstream_cpu - services)
                             / (run.wall * (os.cpu_count() or 1)), 3) if run.wall else None,
        "brook_log": run.log,
    }


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def _setup(m: dict[str, Any]) -> str:
    return str(m.get("setup") or m["bus"])  # runs before setups had names: the bus


def _shape(m: dict[str, Any]) -> str:
    return str(m.get("shape") or m["concurrency"])


def _render(columns: tuple[tuple[str, int], ...], rows: list[list[str]]) -> str:
    rows = [[name for name, _ in columns], *rows]
    return "\n".join("  ".join(cell.rjust(width) for cell, (_, width) in zip(
        row, columns, strict=True)).rstrip() for row in rows)


COLUMNS = (
    ("setup", 8), ("level", 12), ("ok", 5), ("fail", 4), ("refused", 7), ("cut", 3),
    ("ttft+ p50", 9), ("p99", 7), ("202 p50", 7), ("p99", 7), ("late p50", 8), ("p99", 7),
    ("tok/s", 6), ("cpu ms/1k", 9), ("+svc", 5), ("workers", 7), ("KB/str", 6),
    ("machine", 7), ("others", 6),
)


def table(levels: list[dict[str, Any]]) -> str:
    """A fixed-width table of the headline numbers (times in ms). `+svc`: Redis's and
    PostgreSQL's CPU per 1,000 tokens, on top of Brook's."""
    rows = []
    for m in levels:
        rows.append([
            _setup(m), _shape(m), str(m["completed"]), str(m["failed"]),
            str(m.get("refused", "-")), str(m.get("cut", "-")),
            _fmt(m["added_ttft_ms"]["p50"], 1), _fmt(m["added_ttft_ms"]["p99"], 1),
            _fmt(m.get("post_to_202_ms", {}).get("p50"), 1),
            _fmt(m.get("post_to_202_ms", {}).get("p99"), 1),
            _fmt(m["token_lateness_ms"]["p50"], 1), _fmt(m["token_lateness_ms"]["p99"], 1),
            _fmt(m["tokens_per_s"]), _fmt(m["cpu_ms_per_1k_tokens"], 1),
            _fmt(m.get("redis_postgres_cpu_ms_per_1k_tokens") if m["bus"] != "local" else None,
                 1),
            _pct(m["worker_cpu_share"]),
            _fmt(m["kb_per_stream"], 1), _pct(m["machine_busy"]), _pct(m.get("others_busy")),
        ])
    return _render(COLUMNS, rows)


STORED_COLUMNS = (
    ("setup", 8), ("level", 12), ("202s", 5), ("users", 5), ("answers", 7), ("complete", 8),
    ("streaming", 9), ("stopped", 7), ("error", 5), ("interrupted", 11), ("refused", 7),
    ("ref stored", 10), ("mismatch", 8), ("behind", 6), ("hang-ups", 8), ("log 202", 7),
    ("log 503", 7),
)


def stored_table(levels: list[dict[str, Any]]) -> str:
    """What each level stored: assistant messages by status, against the 202s; refused
    clients whose messages were stored anyway; readers whose text differs from the stored
    answer; ends behind the reader; the client's hang-ups (--reconnect); and Brook's own
    access log's count of 202s and 503s to the message POST (both instances)."""
    rows = []
    for m in levels:
        stored = m.get("stored") or {}
        by_status = stored.get("by_status", {})
        log = m.get("brook_log", {})
        rows.append([
            _setup(m), _shape(m), _fmt(m.get("accepted")), _fmt(stored.get("user_messages")),
            _fmt(stored.get("assistant_messages")),
            *(_fmt(by_status.get(status, 0) if stored else None) for status in (
                "complete", "streaming", "stopped", "error", "interrupted")),
            _fmt(m.get("refused")), _fmt(stored.get("refused_stored")),
            _fmt(stored.get("mismatched")), _fmt(m.get("ended_behind")),
            _fmt(m.get("reconnects")), _fmt(log.get("POST messages 202", 0)),
            _fmt(log.get("POST messages 503", 0) + log.get("POST conversations 503", 0)),
        ])
    return _render(STORED_COLUMNS, rows)


def _at(levels: list[dict[str, Any]], setup: str, shape: str) -> dict[str, Any] | None:
    return next((m for m in levels if _setup(m) == setup and _shape(m) == shape), None)


def _with_n(levels: list[dict[str, Any]], setup: str, n: int) -> dict[str, Any] | None:
    return next((m for m in levels if _setup(m) == setup and m["concurrency"] == n), None)


def _services_cpu(m: dict[str, Any]) -> float:
    if "redis_cpu_s" in m:
        return float(m["redis_cpu_s"]) + float(m["postgres_cpu_s"])
    return float(m.get("redis_postgres_cpu_s") or 0.0)


def cpu_ratios(levels: list[dict[str, Any]], over: str = BASELINE, services: bool = False
               ) -> dict[str, dict[str, float]]:
    """CPU per relayed token of each Redis-bus setup over the `over` setup's at the same
    level shape: {setup: {shape: ratio}}.

    Over `local` (in-process bus, SQLite, one worker) it is the goal's ratio; over
    `postgres` (in-process bus, PostgreSQL) it is the Redis bus's own share, the database
    being the same. With `services`, the Redis setup's CPU includes Redis's and
    PostgreSQL's (the `over` setup's does not: the baseline uses neither).
    """
    ratios: dict[str, dict[str, float]] = {}
    for m in levels:
        if m["bus"] != "redis" or not m["relayed_tokens"]:
            continue
        base = _at(levels, over, _shape(m))
        if not base or not base["cpu_ms_per_1k_tokens"]:
            continue
        cpu = m["brook_cpu_s"] + (_services_cpu(m) if services else 0.0)
        ratio = cpu * 1e6 / m["relayed_tokens"] / base["cpu_ms_per_1k_tokens"]
        ratios.setdefault(_setup(m), {})[_shape(m)] = round(ratio, 2)
    return ratios


def marginal_memory(levels: list[dict[str, Any]]) -> dict[str, float]:
    """KB per extra open stream: the least-squares slope of worker RSS growth over streams,
    by setup (over both instances for two).

    (peak - idle) / N also charges each stream a share of what any load grows once (pools,
    caches); the slope across levels does not.
    """
    slopes = {}
    for setup in sorted({_setup(m) for m in levels}):
        points = [(m["peak_open_streams"], (m["peak_rss_mb"] - m["idle_rss_mb"]) * 1024)
                  for m in levels if _setup(m) == setup and m["peak_open_streams"]]
        if len(points) < 2:
            continue
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        var = sum((x - mean_x) ** 2 for x, _ in points)
        if var:
            slopes[setup] = round(
                sum((x - mean_x) * (y - mean_y) for x, y in points) / var, 1)
    return slopes


def goals(levels: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """Each goal over the run: its words, whether it is met (None: not measured in this run),
    the figures. The burst goals, level by level, are `level_goals`."""
    out: list[tuple[str, bool | None, str]] = []
    setups = sorted({_setup(m) for m in levels})

    def each(n: int, what: str, key: str, limit: float, sub: str | None = None) -> None:
        found = [(setup, _with_n(levels, setup, n)) for setup in setups]
        values = [(setup, (m[key][sub] if sub else m[key])) for setup, m in found if m]
        ok = None if not values else all(v is not None and v < limit for _, v in values)
        out.append((what, ok, ", ".join(f"{setup} {_fmt(v, 1)}" for setup, v in values)))

    found = [(setup, _with_n(levels, setup, 2000)) for setup in setups]
    done = [(setup, m) for setup, m in found if m]
    out.append(("2,000 concurrent answers complete with no failure",
                None if not done else all(m["failed"] == 0 for _, m in done),
                ", ".join(f"{setup} {m['completed']}/{m['clients']}" for setup, m in done)))
    each(500, f"added TTFT p99 < {GOAL_TTFT_MS:.0f} ms at 500", "added_ttft_ms", GOAL_TTFT_MS,
         "p99")
    each(1000, f"added gap (token lateness) p99 < {GOAL_LATENESS_MS:.0f} ms at 1,000",
         "token_lateness_ms", GOAL_LATENESS_MS, "p99")
    cpu = [(_setup(m), _shape(m), m["cpu_ms_per_1k_tokens"]) for m in levels]
    out.append((f"server CPU < {GOAL_CPU_MS:.0f} ms per 1,000 relayed tokens (every level)",
                None if not cpu else all(v is not None and v < GOAL_CPU_MS for *_, v in cpu),
                ", ".join(f"{b} {n}: {_fmt(v, 1)}" for b, n, v in cpu)))
    mem = [(_setup(m), _shape(m), m["kb_per_stream"]) for m in levels]
    out.append((f"server memory < {GOAL_KB:.0f} KB per open stream (every level)",
                None if not mem else all(v is not None and v < GOAL_KB for *_, v in mem),
                ", ".join(f"{b} {n}: {_fmt(v, 1)}" for b, n, v in mem)))
    for services in (False, True):
        ratios = cpu_ratios(levels, services=services)
        flat = [(setup, shape, r) for setup, by in ratios.items() for shape, r in by.items()]
        what = ("Brook's CPU" if not services else
                "Brook's, Redis's and PostgreSQL's CPU (information; the baseline uses "
                "neither)")
        out.append((f"Redis bus on PostgreSQL (one worker, or the production shape's two) "
                    f"at most {GOAL_BUS_RATIO:.2f}x the CPU per relayed token of the baseline "
                    f"(one worker, in-process bus, SQLite), {what}, every level",
                    None if not flat else all(r <= GOAL_BUS_RATIO for *_, r in flat),
                    ", ".join(f"{setup} {shape}: {r:.2f}x" for setup, shape, r in flat)))
    alone = cpu_ratios(levels, over="postgres")
    if alone:  # `--bus all`: the same, with PostgreSQL under the in-process bus too
        flat = [(setup, shape, r) for setup, by in alone.items() for shape, r in by.items()]
        out.append((f"Redis bus < {GOAL_BUS_RATIO:.2f}x the in-process bus's CPU per token, "
                    "both on PostgreSQL (every level)",
                    all(r < GOAL_BUS_RATIO for *_, r in flat),
                    ", ".join(f"{setup} {shape}: {r:.2f}x" for setup, shape, r in flat)))
    return out


def level_goals(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The burst goals, level by level: {"setup", "level", goal: [figure, met or None]}.

    None: the goal does not apply to the level (or was not measured)."""
    rows = []
    brook = cpu_ratios(levels)
    with_services = cpu_ratios(levels, services=True)
    for m in levels:
        setup, shape = _setup(m), _shape(m)
        stored = m.get("stored")
        burst = m.get("ramp_s") == 0
        row: dict[str, Any] = {"setup": setup, "level": shape}
        if stored is not None:
            wrong = sum(stored["accepted_not_complete"].values())
            row["stored other than complete"] = [wrong, wrong == 0]
            right = stored["user_messages"] == m["accepted"] == stored["assistant_messages"]
            row["stored = 202s"] = [f"{stored['user_messages']}/{stored['assistant_messages']}"
                                    f"/{m['accepted']}", right]
            row["mismatched"] = [stored["mismatched"], stored["mismatched"] == 0]
        row["cut"] = [m["cut"], m["cut"] == 0]
        late_503 = sum(n for cause, n in m["failures"].items() if "HTTP 503" in cause)
        clean = (stored is None or stored["refused_stored"] == 0) and late_503 == 0 and \
            m["refused_without_retry_after"] == 0
        after = ",".join(f"{k}s:{n}" for k, n in m.get("refused_retry_after", {}).items())
        row["refusals clean"] = [f"{m['refused']}" + (f" ({late_503} other 503)" if late_503
                                                      else "") + (f" [{after}]" if after else ""),
                                 clean if stored is not None else None]
        share = m["accepted"] / m["clients"] if m["clients"] else 0.0
        row["accepted"] = [f"{share * 100:.0f}%",
                           share >= GOAL_BURST_ACCEPTED if burst and m["clients"] >= 1000
                           and m.get("instances", 1) > 1 else None]
        p99 = m["added_ttft_ms"]["p99"]
        row["ttft+ p99"] = [p99, (p99 is not None and p99 <= GOAL_BURST_TTFT_MS)
                            if burst and m["clients"] == 100 and m.get("instances", 1) == 1
                            else None]
        ratio = brook.get(setup, {}).get(shape)
        row["cpu x base"] = [ratio, None if ratio is None else ratio <= GOAL_BUS_RATIO]
        row["+svc x base"] = [with_services.get(setup, {}).get(shape), None]
        rows.append(row)
    return rows


GOAL_COLUMNS = (
    ("setup", 8), ("level", 12), ("stored other than complete", 13), ("cut", 5),
    ("refusals clean", 22), ("stored = 202s", 16), ("mismatched", 10), ("accepted", 9),
    ("ttft+ p99", 10), ("cpu x base", 10), ("+svc x base", 11),
)
GOAL_HEADS = {"stored other than complete": "not complete", "stored = 202s":
              "users/answ/202"}


def goal_table(rows: list[dict[str, Any]]) -> str:
    """The burst goals, a row per level: each figure, with "ok" or "NO" where it is a goal
    for that level. Goals: 0 accepted answers stored other than complete, 0 streams cut,
    every refusal a 503 before anything was stored (in brackets: how many said which
    Retry-After; 2 s is the answer cap, 3 s and up the event loop's lag), as many user and
    assistant messages stored as 202s, every reader's text the stored one, at least half
    accepted by the production shape at 1,000 (or more) at once, added TTFT p99 at most
    150 ms for one worker at burst:100, and CPU per token at most 1.15x the baseline's
    (+svc: with Redis's and PostgreSQL's; shown only)."""
    def cell(value: list[Any] | None) -> str:
        if value is None:
            return "-"
        figure, met = value
        text = _fmt(figure, 2 if isinstance(figure, float) and figure < 10 else 1)
        return text if met is None else f"{text} {'ok' if met else 'NO'}"

    columns = tuple((GOAL_HEADS.get(name, name), width) for name, width in GOAL_COLUMNS)
    body = [[row["setup"], row["level"], *(cell(row.get(name)) for name, _ in
                                            GOAL_COLUMNS[2:])] for row in rows]
    return _render(columns, body)


def plot(levels: list[dict[str, Any]], path: Path, title: str) -> None:
    """Percentiles, POST -> 202, CPU, memory and outcomes against clients: a line per setup
    and kind of level (ramp: circles, burst: triangles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8), layout="constrained")
    palette = {"local": "tab:blue", "postgres": "tab:green", "redis": "tab:red"}
    extra = iter(("tab:purple", "tab:orange", "tab:brown", "tab:olive", "tab:cyan"))
    names = {"local": "in-process bus, SQLite", "postgres": "in-process bus, PostgreSQL",
             "redis": "Redis bus, PostgreSQL"}
    panels = (
        (axes[0][0], "added time to first token (ms)", "added_ttft_ms", GOAL_TTFT_MS),
        (axes[0][1], "token lateness (ms)", "token_lateness_ms", GOAL_LATENESS_MS),
        (axes[0][2], "message POST -> 202 (ms)", "post_to_202_ms", None),
    )
    colors: dict[str, str] = {}
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in levels:
        kind = "burst" if m.get("ramp_s") == 0 else "ramp"
        series.setdefault((_setup(m), kind), []).append(m)
    for (setup, kind), found in sorted(series.items()):
        rows = sorted(found, key=lambda m: m["concurrency"])
        color = colors.setdefault(setup, palette.get(setup) or next(extra, "black"))
        bus = rows[0]["bus"]
        workers = rows[0].get("instances", 1)
        label = f"{names.get(bus, bus)}{f', {workers} workers' if workers > 1 else ''}, {kind}"
        marker = "^" if kind == "burst" else "o"
        xs = [m["concurrency"] for m in rows]
        for ax, _label, key, _goal in panels:
            for q, style in (("p50", "-"), ("p99", "--")):
                ys = [(m.get(key) or {}).get(q) for m in rows]
                ax.plot(xs, [float("nan") if y is None else max(y, 0.1) for y in ys],
                        style, marker=marker, color=color, label=f"{label} {q}")
        cpu = [m["cpu_ms_per_1k_tokens"] for m in rows]
        axes[1][0].plot(xs, [float("nan") if v is None else v for v in cpu], "-",
                        marker=marker, color=color, label=label)
        for m in rows:  # a level with failures: say how many, by its CPU point
            if m["failed"] and m["cpu_ms_per_1k_tokens"] is not None:
                axes[1][0].annotate(f"{m['failed']} failed", (m["concurrency"],
                                    m["cpu_ms_per_1k_tokens"]), textcoords="offset points",
                                    xytext=(-8, 7 if bus == "redis" else -12), ha="right",
                                    fontsize=7, color=color)
        mem = [m["kb_per_stream"] for m in rows]
        axes[1][1].plot(xs, [float("nan") if v is None else v for v in mem], "-",
                        marker=marker, color=color, label=label)
        for key, style, what in (("completed", "-", "completed"), ("refused", ":", "refused")):
            axes[1][2].plot(xs, [100 * m.get(key, 0) / m["clients"] for m in rows], style,
                            marker=marker, color=color, label=f"{label} {what}")
    for ax, label, _key, goal in panels:
        ax.set_yscale("log")
        ax.set_ylabel(label)
        if goal is not None:
            ax.axhline(goal, color="gray", linestyle=":", label=f"goal {goal:.0f} ms (p99)")
    axes[0][0].axhline(GOAL_BURST_TTFT_MS, color="gray", linestyle="-.",
                       label=f"goal {GOAL_BURST_TTFT_MS:.0f} ms (p99, burst of 100)")
    axes[1][0].set_ylabel("Brook CPU ms per 1,000 relayed tokens")
    axes[1][0].axhline(GOAL_CPU_MS, color="gray", linestyle=":", label=f"goal {GOAL_CPU_MS:.0f}")
    axes[1][1].set_ylabel("Brook memory per open stream (KB)")
    axes[1][1].axhline(GOAL_KB, color="gray", linestyle=":", label=f"goal {GOAL_KB:.0f} KB")
    axes[1][2].set_ylabel("clients (%)")
    axes[1][2].axhline(100 * GOAL_BURST_ACCEPTED, color="gray", linestyle=":",
                       label="half accepted")
    ticks = sorted({m["concurrency"] for m in levels})
    for row in axes:
        for ax in row:
            ax.set_xlabel("clients")
            ax.set_xscale("log")
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6)
    axes[1][0].set_ylim(bottom=0)
    axes[1][1].set_ylim(bottom=0)
    axes[1][2].set_ylim(0, 105)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
