"""Load benchmark: how many streamed answers Brook relays, how fast, at what cost, and what
it stored.

    .venv/bin/python benchmarks/load.py [--levels burst:1000,ramp:400/3 | --concurrency N,..]
        [--workers 1|2] [--bus both|all|local|postgres|redis] [--compare] [--reconnect]
        [--out benchmarks/results] [--plot docs/performance.png]

**Setups.** With one worker (``--workers 1``, the default), each bus runs one ``brook
serve`` (gunicorn, one gevent worker): ``local``, the in-process bus with the default
SQLite database; ``redis``, the Redis Streams bus with PostgreSQL; ``postgres`` (``--bus
all``), the in-process bus with PostgreSQL. With ``--workers 2`` it measures **the
production shape** instead: two workers on the Redis bus and PostgreSQL (setup
``redisx2``), every reader on the other worker from the one generating its answer.

Why two processes stand in for two workers: gunicorn's workers share one listening
socket and the kernel picks which worker accepts each connection, so a client cannot
choose the worker it reads from, and half the readers would land on the generating one.
Two ``brook serve`` processes (``WEB_CONCURRENCY=1`` each) on two ports, sharing
``REDIS_URL`` and the PostgreSQL database, are exactly two App Service instances behind a
load balancer; each is a gunicorn master and one gevent worker, like a worker of a
two-worker gunicorn plus a second idle master (its CPU is counted; it is close to 0). Each
client creates its conversation and sends its message on one instance and reads the
stream from the other, half of the clients writing on each. CPU and memory are summed over
both instances.

**Baseline in the same run.** ``--compare`` (the default with ``--workers 2``;
``--no-compare`` to skip it) also runs the ``local`` setup (one worker, in-process bus,
SQLite) at the same levels, each baseline level just before the production level of the
same shape, so the ratio of their CPU per relayed token comes from one run on one machine.
The report prints it with Brook's CPU only (the goal: at most 1.15x), and with Redis's and
PostgreSQL's CPU added to the production shape's (the baseline uses neither).

**Levels.** ``--levels`` is a comma-separated list of shapes: ``burst:N`` (N clients that
all start in the same event-loop tick), ``ramp:N/S`` (N clients started evenly over S
seconds), ``ramp:N`` or plain ``N`` (over ``--ramp`` seconds; ``--ramp 0`` or ``--burst``
makes plain levels bursts). ``--concurrency 100,500`` is the old spelling of plain
levels. Each client, on its own HTTP/1.1 connection(s), creates a conversation, sends a
message and reads the answer's event stream to its ``end`` (see ``load_client.py``); with
``--reconnect`` it hangs up every 0.2-2 s (seeded, ``--seed``) and resumes with
``Last-Event-ID`` on the other instance, like a browser's EventSource on a bad network.

For each setup and level it starts fresh Brook processes on free ports, warms them up with
a few answers, waits for a quiet second on this shared machine (``--quiet-below``), then
starts the level's clients. The upstream is Brook's fake model server in its own process
(``load_upstream.py``: 300 ms to the first token, 20 ms between tokens, 256 tokens), which
records when it wrote each token. A level ends when every client is done, or at
``--limit`` seconds, when the rest count as failed. Then, before Brook stops, it reads
back what the level stored (``load_store.py``): the level's user and assistant messages,
the answers by status, and each answer's text.

Measured per level (definitions in ``load_report.py`` and ``docs/performance.md``):

- accepted (``202``), refused (``503 overloaded`` on either POST: recorded, not retried,
  not a failure), completed and failed clients, and streams cut (ended without ``end``,
  or with a text that is not whole);
- what was stored: assistant messages by status, user and assistant messages against the
  202s, refused clients' messages (there must be none), and each reader's assembled text
  against its stored answer, byte for byte;
- added time to first token (TTFT): message POST written .. first ``message`` event read,
  minus the fake server's 300 ms; p50 and p99; and the message POST -> 202 time;
- token lateness (the added gap between tokens): each later token's arrival at the client
  minus the moment the fake server wrote it; p50 and p99;
- relayed tokens per second;
- Brook's CPU (masters and workers, ``utime + stime``) per 1,000 relayed tokens, over the
  whole level: creating conversations, storing messages and flushing answers included;
  Redis's and PostgreSQL's (this database's backends and the shared processes) apart;
- Brook's memory per open stream: (peak worker RSS - idle worker RSS) / most streams open;
- and, to read the rest with, the CPU used by the client and the fake server, how busy
  the whole machine was, and how much of it went to none of these (``others``: other jobs
  on the machine, which make a level's timings worse).

It prints a table, a table of the stored answers, the goals level by level, writes
``<out>/load-<time>.json`` (every metric) and a folder of logs (Brook's own log for each
instance and level, the fake server's), and plots to ``--plot``. With ``--py-spy`` it also
profiles the workers during each level (``load_profile.py`` summarises the profiles); with
``--tracemalloc``, what Brook's memory grew by (``load_memhook/``; one worker only).
``--replot JSON`` prints and plots a saved run again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import load_servers as servers
import load_store
from load_client import ClientResult, Gauge, Reconnect, Target, run_client
from load_report import (
    LevelRun,
    cpu_ratios,
    goal_table,
    goals,
    level_goals,
    level_metrics,
    marginal_memory,
    plot,
    stored_table,
    table,
)

ROOT = Path(__file__).resolve().parent.parent
_STATUS = re.compile(r'"(GET|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3}) ')
_LEVEL = re.compile(r"^(?:[-\d]+ [\d:,]+ |\[[^]]*\] \[\d+\] \[)(CRITICAL|ERROR|WARNING)\b")
_EXCEPTION = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception|Timeout)\b.*: ")
_TIME = re.compile(r"^[-\d]+ [\d:,]+ |^\[[^]]*\] \[\d+\] ")
_ROUTES = ((re.compile(r"^/api/conversations/[^/]+/messages$"), "POST messages"),
           (re.compile(r"^/api/conversations$"), "POST conversations"),
           (re.compile(r"^/api/messages/[^/]+/stream"), "GET stream"))


@dataclass(frozen=True)
class Shape:
    """How a level's clients start: `clients` of them, evenly over `ramp` seconds (0: at once)."""

    clients: int
    ramp: float

    @property
    def label(self) -> str:
        return f"burst:{self.clients}" if self.ramp == 0 else f"ramp:{self.clients}/{self.ramp:g}"

    @property
    def slug(self) -> str:  # for file names
        return self.label.replace(":", "-").replace("/", "-")


def parse_levels(text: str, ramp: float) -> list[Shape]:
    """`burst:N`, `ramp:N/S`, `ramp:N` or `N` (over `ramp` seconds), comma-separated."""
    shapes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, rest = item.rpartition(":")
        count, _, seconds = rest.partition("/")
        try:
            clients = int(count)
            if kind == "burst" and not seconds:
                shapes.append(Shape(clients, 0.0))
            elif kind in ("ramp", "") and (kind == "ramp" or not seconds):
                shapes.append(Shape(clients, float(seconds) if seconds else ramp))
            else:
                raise ValueError(item)
        except ValueError:
            raise SystemExit(f"--levels: {item!r} is not burst:N, ramp:N/SECONDS, ramp:N or N"
                             ) from None
        if clients <= 0 or shapes[-1].ramp < 0:
            raise SystemExit(f"--levels: {item!r} needs a positive number of clients")
    return shapes


@dataclass(frozen=True)
class Setup:
    """What serves a level: a bus (and its database) and how many Brook instances."""

    bus: str  # local (in-process bus, SQLite) | postgres (in-process, PostgreSQL) | redis
    instances: int = 1

    @property
    def name(self) -> str:
        return self.bus if self.instances == 1 else f"{self.bus}x{self.instances}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Brook under many concurrent streamed answers.")
    p.add_argument("--levels", help="comma-separated shapes: burst:N (N clients at once), "
                   "ramp:N/S (N clients over S seconds), ramp:N or N (over --ramp seconds); "
                   "e.g. burst:1000,ramp:400/3")
    p.add_argument("--concurrency", default="100,500,1000,2000",
                   help="plain levels (over --ramp seconds) when --levels is not given "
                   "(default: %(default)s)")
    p.add_argument("--ramp", type=float, default=2.0,
                   help="seconds over which a plain level's clients start; 0: all at once")
    p.add_argument("--burst", action="store_true", help="plain levels start all at once "
                   "(the same as --ramp 0)")
    p.add_argument("--workers", type=int, default=1,
                   help="1: one brook serve per bus (one gevent worker); 2 or more: the "
                   "production shape, that many brook serve instances of one worker each, "
                   "on the Redis bus and PostgreSQL, readers on another instance than the "
                   "writer (default: %(default)s)")
    p.add_argument("--bus", choices=("both", "all", "local", "postgres", "redis"),
                   help="both: local and redis; all: postgres too (the in-process bus with "
                   "PostgreSQL, to tell Redis's cost from the database's). Default: both, "
                   "or redis with --workers 2")
    p.add_argument("--compare", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the baseline (local bus, SQLite, one worker) at the same "
                   "levels, and report CPU per token over it (default: on with --workers 2)")
    p.add_argument("--reconnect", action="store_true",
                   help="clients hang up their stream every 0.2-2 s and resume it with "
                   "Last-Event-ID on the other instance, as EventSource does")
    p.add_argument("--seed", type=int, default=1, help="seed of --reconnect's hang-ups")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance.png",
                   help="PNG to write; '' for none (default: %(default)s)")
    p.add_argument("--ttft", type=float, default=0.3, help="fake model: seconds to 1st token")
    p.add_argument("--gap", type=float, default=0.02, help="fake model: seconds between tokens")
    p.add_argument("--tokens", type=int, default=256, help="fake model: tokens per answer")
    p.add_argument("--limit", type=float, default=120.0,
                   help="seconds a level may run; clients not done by then failed")
    p.add_argument("--settle", type=float, default=30.0,
                   help="after a level, seconds to wait for its stored answers to leave "
                   "'streaming' before counting them (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="answers before measuring")
    p.add_argument("--flush-ms", type=int, default=250, help="FLUSH_INTERVAL_MS")
    p.add_argument("--coalesce-ms", type=int, default=25, help="STREAM_COALESCE_MS")
    p.add_argument("--pool-timeout", type=float, default=30.0, help="DATABASE_POOL_TIMEOUT")
    p.add_argument("--max-answers", type=int,
                   help="MAX_ANSWERS_PER_WORKER (default: unset, Brook's default)")
    p.add_argument("--max-lag-ms", type=int,
                   help="MAX_EVENT_LOOP_LAG_MS (default: unset, Brook's default)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/7",
                   help="Redis database the redis bus uses; it is FLUSHDB'ed per level")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/brook_bench",
                   help="PostgreSQL database for the redis bus; dropped and created per run")
    p.add_argument("--quiet-below", type=float, default=0.25,
                   help="before each level, wait for a second in which the machine (Brook "
                   "idle) is less busy than this share of all cores (default: %(default)s)")
    p.add_argument("--quiet-wait", type=float, default=90.0,
                   help="... but at most this many seconds (default: %(default)s)")
    p.add_argument("--py-spy", action="store_true",
                   help="also record a py-spy profile of the worker(s) during each level")
    p.add_argument("--tracemalloc", action="store_true",
                   help="also report what Brook's memory grew by, idle to loaded (slow: "
                   "for memory only; one worker only; see load_memhook/sitecustomize.py)")
    p.add_argument("--replot", type=Path, metavar="JSON",
                   help="run nothing: print the table and goals of a saved run, and plot it")
    p.add_argument("--no-uvloop", action="store_true",
                   help="run the client and the fake model on asyncio's own loop")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be 1 or more")
    if args.workers > 1 and args.bus not in (None, "redis"):
        p.error("two or more workers need the Redis bus (--bus redis): with the in-process "
                "bus a reader on another worker only polls the database")
    if args.workers > 1 and args.tracemalloc:
        p.error("--tracemalloc measures one worker: use it with --workers 1")
    if args.burst:
        args.ramp = 0.0
    args.bus = args.bus or ("redis" if args.workers > 1 else "both")
    if args.compare is None:
        args.compare = args.workers > 1
    return args


def setups(args: argparse.Namespace) -> list[Setup]:
    """The setups to run, baseline first."""
    buses = {"both": ["local", "redis"], "all": ["local", "postgres", "redis"]}.get(
        args.bus, [args.bus])
    chosen = [Setup(bus, args.workers) for bus in buses]
    if args.compare and Setup("local") not in chosen:
        chosen.insert(0, Setup("local"))
    return chosen


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {"cpus": os.cpu_count(), "cpu": model, "memory_gb": round(int(memory) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def source() -> dict[str, Any]:
    """The commit under test, and the files changed since (others edit the tree too)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False)
        return done.stdout.rstrip()

    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed_in_src": changed}


def scan_log(path: Path, offset: int = 0) -> tuple[dict[str, int], list[str]]:
    """Counts of Brook's requests (by route and status) and problems in its log from byte
    `offset` on, and the commonest lines that report the problems."""
    counts: Counter[str] = Counter()
    samples: Counter[str] = Counter()
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    for line in text.splitlines():
        status = _STATUS.search(line)
        if status and line.startswith("127.0.0.1 "):
            method, target, code = status.group(1), status.group(2), int(status.group(3))
            route = next((name for pattern, name in _ROUTES
                          if name.startswith(method) and pattern.match(target.split("?")[0])),
                         None)
            if route:
                counts[f"{route} {code}"] += 1
            if code >= 500:
                counts["http_5xx"] += 1
            elif code >= 400:
                counts["http_4xx"] += 1
            continue
        if line.startswith("Traceback "):
            counts["traceback"] += 1
            continue
        level = _LEVEL.search(line)
        if level is None and not _EXCEPTION.match(line):
            continue
        counts[level.group(1).lower() if level else "exception"] += 1
        text = _TIME.sub("", line)
        samples[re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", text)[:240]] += 1
    return dict(counts), [f"{n} x {text}" for text, n in samples.most_common(20)]


async def drive(n: int, targets: list[Target], ramp: float, limit: float, key: str,
                workers: list[int], reconnect: Reconnect | None = None,
                at_peak: tuple[float, Callable[[int], None]] | None = None
                ) -> tuple[list[ClientResult], float, int, int]:
    """Run n clients; return their results, the wall time, the peak worker RSS and streams.

    Client i writes on instance i % k and reads from instance (i + 1) % k of the k
    `targets` (with one, both are that one). With `ramp` 0 every client is started in the
    same loop tick. `at_peak` is (seconds, callback): called once with the number of open
    streams then.
    """
    loop = asyncio.get_running_loop()
    gauge = Gauge()
    k = len(targets)
    results = [ClientResult(i, f"{key} #{i}", write=i % k, read=(i + 1) % k)
               for i in range(n)]
    peak_rss = 0
    began = loop.time()

    async def sample() -> None:
        nonlocal peak_rss, at_peak
        while True:
            peak_rss = max(peak_rss, sum(servers.rss_bytes(pid) for pid in workers))
            if at_peak and loop.time() - began >= at_peak[0]:
                at_peak[1](gauge.open)
                at_peak = None
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    tasks = [asyncio.create_task(run_client(r, targets, began + ramp * i / n, gauge,
                                            reconnect))
             for i, r in enumerate(results)]
    _done, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall = loop.time() - began
    for task, result in zip(tasks, results, strict=True):
        if task in pending and not result.error:
            result.error = ("no stream within the time limit" if not result.get_sent
                            else "no end within the time limit")
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    return results, wall, peak_rss, gauge.peak


def database_of(setup: Setup, settings: dict[str, str], args: argparse.Namespace) -> str:
    """Where the setup's Brook stores messages, as load_store.read takes it."""
    if setup.bus == "local":
        return f"sqlite:///{Path(settings['BROOK_INSTANCE_PATH']) / 'brook.db'}"
    return str(args.postgres_url)


def run_level(setup: Setup, shape: Shape, env: dict[str, str], database: str,
              args: argparse.Namespace, run_dir: Path, upstream: tuple[int, int], key: str
              ) -> tuple[LevelRun, list[str]]:
    upstream_pid, stats_port = upstream
    ports = [servers.free_port() for _ in range(setup.instances)]
    targets: list[Target] = [("127.0.0.1", port) for port in ports]
    name = f"{setup.name}-{shape.slug}"
    logs = [run_dir / (f"brook-{name}.log" if setup.instances == 1 else f"brook-{name}-{i}.log")
            for i in range(setup.instances)]
    memory = run_dir / f"tracemalloc-{name}"
    at_peak: tuple[float, Callable[[int], None]] | None = None
    if args.tracemalloc:
        memory.mkdir()
        hook = str(Path(__file__).resolve().parent / "load_memhook")
        env = {**env, "PYTHONTRACEMALLOC": "4", "BROOK_BENCH_TRACEMALLOC": str(memory),
               "PYTHONPATH": os.pathsep.join(filter(None, (hook, env.get("PYTHONPATH"))))}

        def snapshot(streams: int) -> None:
            (memory / "peak").write_text(str(streams))

        at_peak = (shape.ramp + args.ttft + 1.0, snapshot)
    reconnect = Reconnect(args.seed) if args.reconnect else None
    postgres_db = urlsplit(args.postgres_url).path.lstrip("/")
    brooks: list[subprocess.Popen[bytes]] = []
    spies: list[subprocess.Popen[bytes]] = []
    try:
        for port, log in zip(ports, logs, strict=True):  # one by one: each migrates on boot
            brooks.append(servers.start_brook(port, env, run_dir, log,
                                              600 if args.tracemalloc else 60))
        workers = [pid for brook in brooks for pid in servers.child_pids(brook.pid)]
        asyncio.run(drive(args.warmup, targets, 0.5, 60, f"{key} warm-up", workers, reconnect))
        servers.upstream_stats(stats_port)  # forget the warm-up's tokens
        if args.tracemalloc:
            (memory / "idle").touch()
            wait_for(memory / "idle.done", 120)
        before = wait_quiet(args.quiet_below, args.quiet_wait)
        idle_rss = sum(servers.rss_bytes(pid) for pid in workers)
        brook_pids = [brook.pid for brook in brooks] + workers
        services = servers.service_pids(postgres_db)
        external = {pid: servers.cpu_seconds(pid) for pid in services}
        if args.py_spy:
            for i, pid in enumerate(workers):
                suffix = "" if len(workers) == 1 else f"-{i}"
                spies.append(subprocess.Popen(
                    [str(servers.BIN / "py-spy"), "record", "--pid", str(pid), "--format",
                     "speedscope", "--rate", "100", "--output",
                     str(run_dir / f"profile-{name}{suffix}.speedscope.json")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cpu0 = {pid: servers.cpu_seconds(pid) for pid in brook_pids}
        up0 = servers.cpu_seconds(upstream_pid)
        client0 = time.process_time()
        busy0, total0 = servers.machine_jiffies()
        offsets = [log.stat().st_size for log in logs]  # count the level's lines, not warm-up's
        results, wall, peak_rss, peak_open = asyncio.run(
            drive(shape.clients, targets, shape.ramp, args.limit, key, workers, reconnect,
                  at_peak))
        cpu1 = {pid: servers.cpu_seconds(pid) for pid in brook_pids}
        busy1, total1 = servers.machine_jiffies()
        # Redis and PostgreSQL's processes, those started during the level included.
        service_cpu: dict[str, float] = {"redis": 0.0, "postgres": 0.0}
        for pid, kind in servers.service_pids(postgres_db).items():
            service_cpu[kind] += servers.cpu_seconds(pid) - external.get(pid, 0.0)
        client_cpu = time.process_time() - client0
        upstream_cpu = servers.cpu_seconds(upstream_pid) - up0
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes the profile and exits
            spy.wait(60)
        stats = servers.upstream_stats(stats_port)
        stored = load_store.settled(database, key, args.settle)
        level = LevelRun(
            bus=setup.bus, instances=setup.instances, setup=setup.name, shape=shape.label,
            ramp=shape.ramp, reconnect=args.reconnect, concurrency=shape.clients,
            ttft=args.ttft, gap=args.gap, results=results, sends=stats["sends"],
            pieces=stats["pieces"], stored=stored, wall=wall,
            brook_cpu=sum(cpu1.values()) - sum(cpu0.values()),
            worker_cpu=sum(cpu1[pid] - cpu0[pid] for pid in workers),
            idle_rss=idle_rss, peak_rss=peak_rss,
            peak_open=peak_open, client_cpu=client_cpu, upstream_cpu=upstream_cpu,
            redis_cpu=service_cpu["redis"], postgres_cpu=service_cpu["postgres"],
            machine_busy=(busy1 - busy0) / max(1, total1 - total0),
            machine_busy_s=(busy1 - busy0) / servers.CLOCK_TICKS,
            machine_busy_before=before)
        if args.tracemalloc and wait_for(memory / "report.txt", 300):
            shutil.copy(memory / "report.txt", run_dir / f"tracemalloc-{name}.txt")
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
        for brook in brooks:
            servers.stop(brook)
    counts: Counter[str] = Counter()
    samples: list[str] = []
    for log, offset in zip(logs, offsets, strict=True):
        found, lines = scan_log(log, offset)
        counts.update(found)
        samples += lines
    level.log = dict(counts)
    return level, samples


def wait_quiet(below: float, timeout: float) -> float:
    """Wait (up to `timeout` s) for a second in which the machine is less busy than `below`
    (a share of all cores: this machine is shared); return the last second's share."""
    deadline = time.monotonic() + timeout
    while True:
        busy0, total0 = servers.machine_jiffies()
        time.sleep(1.0)
        busy1, total1 = servers.machine_jiffies()
        share = (busy1 - busy0) / max(1, total1 - total0)
        if share < below or time.monotonic() > deadline:
            return share


def wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    time.sleep(0.5)  # let the writer finish
    return True


def bus_settings(setup: Setup, args: argparse.Namespace, run_dir: Path) -> dict[str, str]:
    """Brook's environment for a setup; every instance of the setup shares it (the secret
    key too, so a session cookie from one instance is good on the other)."""
    settings = {
        **servers.fake_model_settings("", run_dir / f"instance-{setup.name}"),
        "FLUSH_INTERVAL_MS": str(args.flush_ms), "STREAM_COALESCE_MS": str(args.coalesce_ms),
        "SHUTDOWN_GRACE_SECONDS": "3", "DATABASE_POOL_TIMEOUT": str(args.pool_timeout),
    }
    if args.max_answers is not None:
        settings["MAX_ANSWERS_PER_WORKER"] = str(args.max_answers)
    if args.max_lag_ms is not None:
        settings["MAX_EVENT_LOOP_LAG_MS"] = str(args.max_lag_ms)
    if setup.bus in ("redis", "postgres"):
        settings["DATABASE_URL"] = args.postgres_url
    if setup.bus == "redis":
        settings["REDIS_URL"] = args.redis_url
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        summary(json.loads(args.replot.read_text()), args.plot)
        return 0
    if not args.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            args.no_uvloop = True
    shapes = parse_levels(args.levels or args.concurrency, args.ramp)
    chosen = setups(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = (args.out / f"load-{stamp}").resolve()
    run_dir.mkdir(parents=True)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": stamp,
        "machine": machine(),
        "source": source(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "setups": [setup.name for setup in chosen],
        "shapes": [shape.label for shape in shapes],
        "event_loop": "asyncio" if args.no_uvloop else "uvloop",  # client and fake model
        "levels": [],
    }
    out_json = args.out.resolve() / f"load-{stamp}.json"
    port, stats_port = servers.free_port(), servers.free_port()
    upstream = servers.start_upstream(port, stats_port, args.ttft, args.gap, args.tokens,
                                      run_dir / "fake-model.log", not args.no_uvloop)
    print(f"logs in {run_dir}", flush=True)
    started = time.monotonic()
    try:
        prepared: dict[Setup, tuple[dict[str, str], str]] = {}
        for setup in chosen:
            settings = bus_settings(setup, args, run_dir)
            settings["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
            env = servers.brook_env(settings)
            shutil.rmtree(settings["BROOK_INSTANCE_PATH"], ignore_errors=True)
            # The app cannot create the folder of its SQLite file: make it here.
            Path(settings["BROOK_INSTANCE_PATH"]).mkdir(parents=True)
            if setup.bus != "local" and not any(s.bus != "local" for s in prepared):
                servers.reset_postgres(args.postgres_url)  # once: the setups share it
                servers.run_checked([str(servers.BIN / "brook"), "db", "upgrade"], env=env,
                                    cwd=run_dir)
            prepared[setup] = (env, database_of(setup, settings, args))
        for shape in shapes:  # each shape on every setup in turn: ratios from one stretch
            for setup in chosen:
                env, database = prepared[setup]
                if setup.bus == "redis":
                    servers.flush_redis(args.redis_url)
                print(f"[{time.monotonic() - started:6.0f} s] {setup.name}, {shape.label}"
                      f"{' reconnecting' if args.reconnect else ''} ...", flush=True)
                level, samples = run_level(setup, shape, env, database, args, run_dir,
                                           (upstream.pid, stats_port),
                                           f"load {stamp} {setup.name} {shape.label}")
                metrics = level_metrics(level)
                metrics["brook_log_samples"] = samples
                report["levels"].append(metrics)
                print(table([metrics]), stored_table([metrics]), sep="\n", flush=True)
                if metrics["failures"]:
                    print(f"         failures: {metrics['failures']}", flush=True)
                out_json.write_text(json.dumps(report, indent=1))
    finally:
        servers.stop(upstream)
    report["cpu_ratio_over_baseline"] = cpu_ratios(report["levels"])
    report["cpu_ratio_over_baseline_with_services"] = cpu_ratios(report["levels"],
                                                                 services=True)
    report["redis_over_postgres_cpu_ratio"] = cpu_ratios(report["levels"], over="postgres")
    report["marginal_kb_per_stream"] = marginal_memory(report["levels"])
    report["goals"] = [{"goal": g, "met": ok, "figures": f} for g, ok, f in goals(
        report["levels"])]
    report["level_goals"] = level_goals(report["levels"])
    report["duration_s"] = round(time.monotonic() - started)
    out_json.write_text(json.dumps(report, indent=1))
    summary(report, args.plot)
    print(f"results: {out_json}\nlogs:    {run_dir}")
    return 0


def summary(report: dict[str, Any], png: Path) -> None:
    """Print a run's tables and goals; plot it to `png` (unless that is '')."""
    levels = report["levels"]
    print()
    print(table(levels))
    print()
    print(stored_table(levels))
    print()
    for setup, slope in report["marginal_kb_per_stream"].items():
        print(f"memory per extra open stream ({setup}, least squares over levels): "
              f"{slope} KB")
    for goal in report["goals"]:
        if goal["met"] is None and not goal["figures"]:
            continue  # no level of this run measures it
        verdict = {True: "met   ", False: "MISSED", None: "n/a   "}[goal["met"]]
        print(f"{verdict} {goal['goal']}: {goal['figures']}")
    rows = report.get("level_goals") or (level_goals(levels) if all(
        "cut" in m for m in levels) else [])  # runs before the burst goals have none
    if rows:
        print()
        print(goal_table(rows))
    if str(png) not in ("", "."):
        settings = report["settings"]
        names = report.get("setups") or sorted({m["bus"] for m in levels})
        title = (f"Brook ({', '.join(names)}) on {report['machine']['cpus']} cores shared "
                 "with the load client, the fake model, Redis and PostgreSQL\nfake model: "
                 f"{settings['ttft'] * 1000:.0f} ms to the first token, "
                 f"{settings['gap'] * 1000:.0f} ms between tokens, {settings['tokens']} tokens"
                 f"{'; clients reconnecting' if settings.get('reconnect') else ''}"
                 f"; run {report.get('started', '')}")
        plot(levels, png, title)
        print(f"plot:    {png}")


if __name__ == "__main__":
    sys.exit(main())
