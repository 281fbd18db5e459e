"""Turn what the load client and the fake server recorded into metrics, a table and a plot.

The definitions (``docs/performance.md`` explains them):

- added TTFT: client time from writing the message POST to reading the first ``message``
  event, minus the fake server's configured time to first token;
- token lateness: for each token after the first, when the client read the event that
  completed it, minus when the fake server wrote it (both ``time.monotonic()``). It is
  the time Brook added to that token: relaying, the coalescing window, queueing;
- relayed tokens: upstream tokens that reached a client whole.
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load_client import ClientResult, parse_stream

GOAL_TTFT_MS = 50.0  # added TTFT p99 at 500 concurrent
GOAL_LATENESS_MS = 50.0  # token lateness p99 at 1,000 concurrent
GOAL_CPU_MS = 20.0  # server CPU per 1,000 relayed tokens
GOAL_KB = 64.0  # server memory per open stream
GOAL_BUS_RATIO = 1.15  # Redis bus + PostgreSQL flushing over the in-process bus


@dataclass
class LevelRun:
    """Everything recorded for one concurrency level on one bus."""

    bus: str
    concurrency: int
    ttft: float
    gap: float
    results: list[ClientResult]
    sends: dict[str, list[float]]
    pieces: list[int]
    wall: float = 0.0
    brook_cpu: float = 0.0
    worker_cpu: float = 0.0
    idle_rss: int = 0
    peak_rss: int = 0
    peak_open: int = 0
    client_cpu: float = 0.0
    upstream_cpu: float = 0.0
    external_cpu: float = 0.0
    machine_busy: float = 0.0
    machine_busy_before: float = 0.0  # with Brook idle: what else runs on the machine
    machine_busy_s: float = 0.0  # CPU seconds the whole machine spent during the level
    log: dict[str, int] = field(default_factory=dict)


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


def _outcome(result: ClientResult, total_chars: int) -> tuple[str | None, list[tuple[float, int]]]:
    """Why the client failed (None if it got the whole answer), and its (time, offset) events."""
    events, ended = parse_stream(result.packets)
    messages = [(e.at, e.id) for e in events if e.name == "message"]
    if result.error:
        return result.error, messages
    errors = [e for e in events if e.name == "error"]
    if errors:
        return f"error event: {errors[0].data.get('code')}", messages
    ends = [e for e in events if e.name == "end"]
    if not ends:
        return ("no end within the time limit" if not ended else "stream ended without end"), \
            messages
    status = ends[0].data.get("status")
    if status != "complete":
        return f"end status {status}", messages
    length = sum(len(e.data.get("text", "")) for e in events if e.name == "message")
    if length != total_chars or (messages and messages[-1][1] != total_chars):
        return f"incomplete answer ({length} of {total_chars} characters)", messages
    return None, messages


def level_metrics(run: LevelRun) -> dict[str, Any]:
    ends: list[int] = []
    for size in run.pieces:
        ends.append((ends[-1] if ends else 0) + size)
    total_chars = ends[-1] if ends else 0
    failures: Counter[str] = Counter()
    ttft: list[float] = []
    setup: list[float] = []
    first_relay: list[float] = []
    lateness: list[float] = []
    raw_gaps: list[float] = []
    upstream_lag: list[float] = []
    tokens = completed = unrecorded = 0
    first_token, last_token = float("inf"), 0.0
    for result in run.results:
        failure, messages = _outcome(result, total_chars)
        if failure:
            failures[failure.split(" (", 1)[0]] += 1
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
    return {
        "bus": run.bus,
        "concurrency": run.concurrency,
        "clients": len(run.results),
        "completed": completed,
        "failed": len(run.results) - completed,
        "failures": dict(failures),
        "unrecorded": unrecorded,  # completed, but the fake server has no send times for it
        "added_ttft_ms": {"p50": _ms(ttft, 50), "p99": _ms(ttft, 99), "max": _ms(ttft, 100)},
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
        "cpu_ms_per_1k_tokens": round(run.brook_cpu * 1e6 / tokens, 2) if tokens else None,
        "idle_rss_mb": round(run.idle_rss / 2**20, 1),
        "peak_rss_mb": round(run.peak_rss / 2**20, 1),
        "peak_open_streams": run.peak_open,
        "kb_per_stream": round(grown / 1024 / run.peak_open, 1) if run.peak_open else None,
        "client_cpu_s": round(run.client_cpu, 2),
        "upstream_cpu_s": round(run.upstream_cpu, 2),
        "redis_postgres_cpu_s": round(run.external_cpu, 2),
        "redis_postgres_cpu_ms_per_1k_tokens": (round(run.external_cpu * 1e6 / tokens, 2)
                                                if tokens else None),
        "machine_busy": round(run.machine_busy, 3),
        "machine_busy_before": round(run.machine_busy_before, 3),
        # CPU that neither Brook, the client, the fake model, Redis nor PostgreSQL used during
        # the level: other jobs on this shared machine, as a share of all its cores.
        "others_busy": round(max(0.0, run.machine_busy_s - run.brook_cpu - run.client_cpu
                                 - run.upstream_cpu - run.external_cpu)
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


COLUMNS = (
    ("bus", 6), ("N", 5), ("ok", 5), ("fail", 5), ("ttft+ p50", 9), ("p99", 7),
    ("late p50", 8), ("p99", 7), ("tok/s", 7), ("cpu ms/1k", 9), ("worker", 6),
    ("KB/str", 7), ("machine", 7), ("others", 6),
)


def table(levels: list[dict[str, Any]]) -> str:
    """A fixed-width table of the headline numbers (times in ms)."""
    rows = [[name for name, _ in COLUMNS]]
    for m in levels:
        rows.append([
            m["bus"], str(m["concurrency"]), str(m["completed"]), str(m["failed"]),
            _fmt(m["added_ttft_ms"]["p50"], 1), _fmt(m["added_ttft_ms"]["p99"], 1),
            _fmt(m["token_lateness_ms"]["p50"], 1), _fmt(m["token_lateness_ms"]["p99"], 1),
            _fmt(m["tokens_per_s"]), _fmt(m["cpu_ms_per_1k_tokens"], 1),
            _pct(m["worker_cpu_share"]),
            _fmt(m["kb_per_stream"], 1), _pct(m["machine_busy"]), _pct(m.get("others_busy")),
        ])
    return "\n".join("  ".join(cell.rjust(width) for cell, (_, width) in zip(
        row, COLUMNS, strict=True)) for row in rows)


def _at(levels: list[dict[str, Any]], bus: str, n: int) -> dict[str, Any] | None:
    return next((m for m in levels if m["bus"] == bus and m["concurrency"] == n), None)


def bus_ratios(levels: list[dict[str, Any]], over: str = "local") -> dict[int, float]:
    """Redis-bus CPU per token over the `over` run's CPU per token, by concurrency.

    Over `local` (in-process bus, SQLite) it is the goal's ratio; over `postgres` (in-process
    bus, PostgreSQL) it is the Redis bus's own share, the database being the same.
    """
    ratios = {}
    for m in levels:
        if m["bus"] != "redis":
            continue
        local = _at(levels, over, m["concurrency"])
        if local and local["cpu_ms_per_1k_tokens"] and m["cpu_ms_per_1k_tokens"]:
            ratios[m["concurrency"]] = round(
                m["cpu_ms_per_1k_tokens"] / local["cpu_ms_per_1k_tokens"], 2)
    return ratios


def marginal_memory(levels: list[dict[str, Any]]) -> dict[str, float]:
    """KB per extra open stream: the least-squares slope of worker RSS growth over streams.

    (peak - idle) / N also charges each stream a share of what any load grows once (pools,
    caches); the slope across levels does not.
    """
    slopes = {}
    for bus in sorted({m["bus"] for m in levels}):
        points = [(m["peak_open_streams"], (m["peak_rss_mb"] - m["idle_rss_mb"]) * 1024)
                  for m in levels if m["bus"] == bus and m["peak_open_streams"]]
        if len(points) < 2:
            continue
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        var = sum((x - mean_x) ** 2 for x, _ in points)
        if var:
            slopes[bus] = round(sum((x - mean_x) * (y - mean_y) for x, y in points) / var, 1)
    return slopes


def goals(levels: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """Each goal: its words, whether it is met (None: not measured in this run), the figures."""
    out: list[tuple[str, bool | None, str]] = []
    buses = sorted({m["bus"] for m in levels})

    def each(n: int, what: str, key: str, limit: float, sub: str | None = None) -> None:
        found = [(bus, _at(levels, bus, n)) for bus in buses]
        values = [(bus, (m[key][sub] if sub else m[key])) for bus, m in found if m]
        ok = None if not values else all(v is not None and v < limit for _, v in values)
        out.append((what, ok, ", ".join(f"{bus} {_fmt(v, 1)}" for bus, v in values)))

    found = [(bus, _at(levels, bus, 2000)) for bus in buses]
    done = [(bus, m) for bus, m in found if m]
    out.append(("2,000 concurrent answers complete with no failure",
                None if not done else all(m["failed"] == 0 for _, m in done),
                ", ".join(f"{bus} {m['completed']}/{m['clients']}" for bus, m in done)))
    each(500, f"added TTFT p99 < {GOAL_TTFT_MS:.0f} ms at 500", "added_ttft_ms", GOAL_TTFT_MS,
         "p99")
    each(1000, f"added gap (token lateness) p99 < {GOAL_LATENESS_MS:.0f} ms at 1,000",
         "token_lateness_ms", GOAL_LATENESS_MS, "p99")
    cpu = [(m["bus"], m["concurrency"], m["cpu_ms_per_1k_tokens"]) for m in levels]
    out.append((f"server CPU < {GOAL_CPU_MS:.0f} ms per 1,000 relayed tokens (every level)",
                None if not cpu else all(v is not None and v < GOAL_CPU_MS for *_, v in cpu),
                ", ".join(f"{b} {n}: {_fmt(v, 1)}" for b, n, v in cpu)))
    mem = [(m["bus"], m["concurrency"], m["kb_per_stream"]) for m in levels]
    out.append((f"server memory < {GOAL_KB:.0f} KB per open stream (every level)",
                None if not mem else all(v is not None and v < GOAL_KB for *_, v in mem),
                ", ".join(f"{b} {n}: {_fmt(v, 1)}" for b, n, v in mem)))
    ratios = bus_ratios(levels)
    out.append((f"Redis bus + PostgreSQL flushing < {GOAL_BUS_RATIO:.2f}x the in-process "
                "bus's CPU per token (every level)",
                None if not ratios else all(r < GOAL_BUS_RATIO for r in ratios.values()),
                ", ".join(f"{n}: {r:.2f}x" for n, r in ratios.items())))
    alone = bus_ratios(levels, over="postgres")
    if alone:  # `--bus all`: the same, with PostgreSQL under the in-process bus too
        out.append((f"Redis bus < {GOAL_BUS_RATIO:.2f}x the in-process bus's CPU per token, "
                    "both on PostgreSQL (every level)",
                    all(r < GOAL_BUS_RATIO for r in alone.values()),
                    ", ".join(f"{n}: {r:.2f}x" for n, r in alone.items())))
    return out


def plot(levels: list[dict[str, Any]], path: Path, title: str) -> None:
    """Percentiles and CPU per 1,000 tokens against concurrency, one line per bus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    colors = {"local": "tab:blue", "postgres": "tab:green", "redis": "tab:red"}
    names = {"local": "in-process bus, SQLite", "postgres": "in-process bus, PostgreSQL",
             "redis": "Redis bus, PostgreSQL"}
    panels = (
        (axes[0][0], "added time to first token (ms)", "added_ttft_ms", GOAL_TTFT_MS),
        (axes[0][1], "token lateness (ms)", "token_lateness_ms", GOAL_LATENESS_MS),
    )
    for bus in ("local", "postgres", "redis"):
        rows = sorted((m for m in levels if m["bus"] == bus), key=lambda m: m["concurrency"])
        if not rows:
            continue
        xs = [m["concurrency"] for m in rows]
        for ax, _label, key, _goal in panels:
            for q, style in (("p50", "-"), ("p99", "--")):
                ys = [m[key][q] for m in rows]
                ax.plot(xs, [float("nan") if y is None else max(y, 0.1) for y in ys],
                        style, marker="o", color=colors[bus], label=f"{names[bus]} {q}")
        cpu = [m["cpu_ms_per_1k_tokens"] for m in rows]
        axes[1][0].plot(xs, [float("nan") if v is None else v for v in cpu], "-", marker="o",
                        color=colors[bus], label=names[bus])
        for m in rows:  # a level with failures: say how many, by its CPU point
            if m["failed"] and m["cpu_ms_per_1k_tokens"] is not None:
                axes[1][0].annotate(f"{m['failed']} failed", (m["concurrency"],
                                    m["cpu_ms_per_1k_tokens"]), textcoords="offset points",
                                    xytext=(-8, 7 if bus == "redis" else -12), ha="right",
                                    fontsize=7, color=colors[bus])
        mem = [m["kb_per_stream"] for m in rows]
        axes[1][1].plot(xs, [float("nan") if v is None else v for v in mem], "-", marker="o",
                        color=colors[bus], label=names[bus])
    for ax, label, _key, goal in panels:
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.axhline(goal, color="gray", linestyle=":", label=f"goal {goal:.0f} ms (p99)")
    axes[1][0].set_ylabel("Brook CPU ms per 1,000 relayed tokens")
    axes[1][0].axhline(GOAL_CPU_MS, color="gray", linestyle=":", label=f"goal {GOAL_CPU_MS:.0f}")
    axes[1][1].set_ylabel("Brook memory per open stream (KB)")
    axes[1][1].axhline(GOAL_KB, color="gray", linestyle=":", label=f"goal {GOAL_KB:.0f} KB")
    for row in axes:
        for ax in row:
            ax.set_xlabel("concurrent streams")
            ax.set_xscale("log")
            ticks = sorted({m["concurrency"] for m in levels})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    axes[1][0].set_ylim(bottom=0)
    axes[1][1].set_ylim(bottom=0)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
