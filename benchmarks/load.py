"""Load benchmark: how many streamed answers one Brook worker relays, how fast, at what cost.

    .venv/bin/python benchmarks/load.py [--concurrency 100,500,1000,2000]
        [--bus both|all|local|postgres|redis] [--out benchmarks/results]
        [--plot docs/performance.png]

For each bus (``local``: the in-process bus with the default SQLite database; ``redis``: the
Redis Streams bus with PostgreSQL; ``postgres``, with ``--bus all``: the in-process bus with
PostgreSQL) and each concurrency level N, it starts a fresh Brook
(``brook serve``: gunicorn, one gevent worker) on a free port, warms it up with a few
answers, waits for a quiet second on this shared machine (``--quiet-below``), then starts
N clients over ``--ramp`` seconds. Each client, on its own HTTP/1.1 connection, creates a
conversation, sends a message and reads the answer's event stream to its ``end`` (see
``load_client.py``). The upstream is Brook's fake model server in its
own process (``load_upstream.py``: 300 ms to the first token, 20 ms between tokens, 256
tokens), which records when it wrote each token. A level ends when every client is done,
or at ``--limit`` seconds, when the rest count as failed.

Measured per level (definitions in ``load_report.py`` and ``docs/performance.md``):

- completed and failed answers (an ``error`` event, a non-2xx, a dropped connection, an
  answer that is not whole, or no ``end`` within the limit is a failure);
- added time to first token (TTFT): message POST written .. first ``message`` event read,
  minus the fake server's 300 ms; p50 and p99;
- token lateness (the added gap between tokens): each later token's arrival at the client
  minus the moment the fake server wrote it; p50 and p99;
- relayed tokens per second;
- Brook's CPU (master and worker, ``utime + stime``) per 1,000 relayed tokens, over the
  whole level: creating conversations, storing messages and flushing answers included;
- Brook's memory per open stream: (peak worker RSS - idle worker RSS) / most streams open;
- and, to read the rest with, the CPU used by the client, the fake server, Redis and
  PostgreSQL, how busy the whole machine was, and how much of it went to none of these
  (``others``: other jobs on the machine, which make a level's timings worse).

It prints a table, writes ``<out>/load-<time>.json`` (every metric) and a folder of logs
(Brook's own log for each level, the fake server's), and plots to ``--plot``. With
``--py-spy`` it also profiles the worker during each level (``load_profile.py`` summarises
the profiles); with ``--tracemalloc``, what Brook's memory grew by (``load_memhook/``).
``--replot JSON`` prints and plots a saved run again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import load_servers as servers
from load_client import ClientResult, Gauge, run_client
from load_report import (
    LevelRun,
    bus_ratios,
    goals,
    level_metrics,
    marginal_memory,
    plot,
    table,
)

ROOT = Path(__file__).resolve().parent.parent
_STATUS = re.compile(r'" (\d{3}) ')
_LEVEL = re.compile(r"^(?:[-\d]+ [\d:,]+ |\[[^]]*\] \[\d+\] \[)(CRITICAL|ERROR|WARNING)\b")
_EXCEPTION = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception|Timeout)\b.*: ")
_TIME = re.compile(r"^[-\d]+ [\d:,]+ |^\[[^]]*\] \[\d+\] ")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Brook under many concurrent streamed answers.")
    p.add_argument("--concurrency", default="100,500,1000,2000",
                   help="comma-separated levels (default: %(default)s)")
    p.add_argument("--bus", choices=("both", "all", "local", "postgres", "redis"),
                   default="both", help="both: local and redis; all: postgres too (the "
                   "in-process bus with PostgreSQL, to tell Redis's cost from the database's)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance.png",
                   help="PNG to write; '' for none (default: %(default)s)")
    p.add_argument("--ttft", type=float, default=0.3, help="fake model: seconds to 1st token")
    p.add_argument("--gap", type=float, default=0.02, help="fake model: seconds between tokens")
    p.add_argument("--tokens", type=int, default=256, help="fake model: tokens per answer")
    p.add_argument("--ramp", type=float, default=2.0, help="seconds over which clients start")
    p.add_argument("--limit", type=float, default=120.0,
                   help="seconds a level may run; clients not done by then failed")
    p.add_argument("--warmup", type=int, default=10, help="answers before measuring")
    p.add_argument("--workers", type=int, default=1, help="gunicorn gevent workers")
    p.add_argument("--flush-ms", type=int, default=250, help="FLUSH_INTERVAL_MS")
    p.add_argument("--coalesce-ms", type=int, default=25, help="STREAM_COALESCE_MS")
    p.add_argument("--pool-timeout", type=float, default=30.0, help="DATABASE_POOL_TIMEOUT")
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
                   help="also record a py-spy profile of the worker during each level")
    p.add_argument("--tracemalloc", action="store_true",
                   help="also report what Brook's memory grew by, idle to loaded (slow: "
                   "for memory only; see load_memhook/sitecustomize.py)")
    p.add_argument("--replot", type=Path, metavar="JSON",
                   help="run nothing: print the table and goals of a saved run, and plot it")
    p.add_argument("--no-uvloop", action="store_true",
                   help="run the client and the fake model on asyncio's own loop")
    return p.parse_args(argv)


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


def scan_log(path: Path) -> tuple[dict[str, int], list[str]]:
    """Counts of Brook's problems in its log, and the commonest lines that report them."""
    counts: Counter[str] = Counter()
    samples: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        status = _STATUS.search(line)
        if status and line.startswith("127.0.0.1 "):
            code = int(status.group(1))
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


async def drive(n: int, port: int, ramp: float, limit: float, key: str,
                workers: list[int], at_peak: tuple[float, Callable[[int], None]] | None = None
                ) -> tuple[list[ClientResult], float, int, int]:
    """Run n clients; return their results, the wall time, the peak worker RSS and streams.

    `at_peak` is (seconds, callback): called once with the number of open streams then.
    """
    loop = asyncio.get_running_loop()
    gauge = Gauge()
    results = [ClientResult(i, f"{key} #{i}") for i in range(n)]
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
    tasks = [asyncio.create_task(run_client(r, "127.0.0.1", port, began + ramp * i / n, gauge))
             for i, r in enumerate(results)]
    _done, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall = loop.time() - began
    for task, result in zip(tasks, results, strict=True):
        if task in pending and not result.get_sent:
            result.error = "no stream within the time limit"
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    return results, wall, peak_rss, gauge.peak


def run_level(bus: str, n: int, env: dict[str, str], args: argparse.Namespace, run_dir: Path,
              upstream: tuple[int, int], key: str) -> tuple[LevelRun, list[str]]:
    upstream_pid, stats_port = upstream
    port = servers.free_port()
    log = run_dir / f"brook-{bus}-{n}.log"
    memory = run_dir / f"tracemalloc-{bus}-{n}"
    at_peak: tuple[float, Callable[[int], None]] | None = None
    if args.tracemalloc:
        memory.mkdir()
        hook = str(Path(__file__).resolve().parent / "load_memhook")
        env = {**env, "PYTHONTRACEMALLOC": "4", "BROOK_BENCH_TRACEMALLOC": str(memory),
               "PYTHONPATH": os.pathsep.join(filter(None, (hook, env.get("PYTHONPATH"))))}

        def snapshot(streams: int) -> None:
            (memory / "peak").write_text(str(streams))

        at_peak = (args.ramp + args.ttft + 1.0, snapshot)
    brook = servers.start_brook(port, env, run_dir, log, 600 if args.tracemalloc else 60)
    spy: subprocess.Popen[bytes] | None = None
    try:
        workers = servers.child_pids(brook.pid)
        asyncio.run(drive(args.warmup, port, 0.5, 60, f"{key} warm-up", workers))
        servers.upstream_stats(stats_port)  # forget the warm-up's tokens
        if args.tracemalloc:
            (memory / "idle").touch()
            wait_for(memory / "idle.done", 120)
        before = wait_quiet(args.quiet_below, args.quiet_wait)
        idle_rss = sum(servers.rss_bytes(pid) for pid in workers)
        brook_pids = [brook.pid, *workers]
        external = {pid: servers.cpu_seconds(pid)
                    for pid in servers.pids_named("redis-server", "postgres")}
        if args.py_spy:
            spy = subprocess.Popen(
                [str(servers.BIN / "py-spy"), "record", "--pid", str(workers[0]), "--format",
                 "speedscope", "--rate", "100", "--output",
                 str(run_dir / f"profile-{bus}-{n}.speedscope.json")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = [servers.cpu_seconds(pid) for pid in brook_pids]
        up0 = servers.cpu_seconds(upstream_pid)
        client0 = time.process_time()
        busy0, total0 = servers.machine_jiffies()
        results, wall, peak_rss, peak_open = asyncio.run(
            drive(n, port, args.ramp, args.limit, key, workers, at_peak))
        cpu1 = [servers.cpu_seconds(pid) for pid in brook_pids]
        busy1, total1 = servers.machine_jiffies()
        level = LevelRun(
            bus=bus, concurrency=n, ttft=args.ttft, gap=args.gap, results=results, sends={},
            pieces=[], wall=wall, brook_cpu=sum(cpu1) - sum(cpu0),
            worker_cpu=sum(cpu1[1:]) - sum(cpu0[1:]), idle_rss=idle_rss, peak_rss=peak_rss,
            peak_open=peak_open, client_cpu=time.process_time() - client0,
            upstream_cpu=servers.cpu_seconds(upstream_pid) - up0,
            # Redis and every PostgreSQL process, those started during the level included.
            external_cpu=sum(servers.cpu_seconds(pid) - external.get(pid, 0.0)
                             for pid in servers.pids_named("redis-server", "postgres")),
            machine_busy=(busy1 - busy0) / max(1, total1 - total0),
            machine_busy_s=(busy1 - busy0) / servers.CLOCK_TICKS,
            machine_busy_before=before)
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes the profile and exits
            spy.wait(60)
        stats = servers.upstream_stats(stats_port)
        level.sends, level.pieces = stats["sends"], stats["pieces"]
        if args.tracemalloc and wait_for(memory / "report.txt", 300):
            shutil.copy(memory / "report.txt", run_dir / f"tracemalloc-{bus}-{n}.txt")
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        servers.stop(brook)
    level.log, samples = scan_log(log)
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


def bus_settings(bus: str, args: argparse.Namespace, run_dir: Path) -> dict[str, str]:
    settings = {
        "OPENAI_BASE_URL": "", "OPENAI_MODEL": "fake", "MODEL_PROVIDER": "openai",
        "BROOK_INSTANCE_PATH": str(run_dir / f"instance-{bus}"),
        "SECRET_KEY": secrets.token_urlsafe(32), "WEB_CONCURRENCY": str(args.workers),
        "FLUSH_INTERVAL_MS": str(args.flush_ms), "STREAM_COALESCE_MS": str(args.coalesce_ms),
        "SHUTDOWN_GRACE_SECONDS": "3", "DATABASE_POOL_TIMEOUT": str(args.pool_timeout),
    }
    if bus in ("redis", "postgres"):
        settings["DATABASE_URL"] = args.postgres_url
    if bus == "redis":
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
    levels = [int(n) for n in args.concurrency.split(",")]
    buses = {"both": ["local", "redis"], "all": ["local", "postgres", "redis"]}.get(
        args.bus, [args.bus])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = (args.out / f"load-{stamp}").resolve()
    run_dir.mkdir(parents=True)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": stamp,
        "machine": machine(),
        "source": source(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
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
        for bus in buses:
            settings = bus_settings(bus, args, run_dir)
            settings["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
            env = servers.brook_env(settings)
            shutil.rmtree(settings["BROOK_INSTANCE_PATH"], ignore_errors=True)
            # `brook serve` migrates ./instance whatever BROOK_INSTANCE_PATH says, and the app
            # cannot create the folder of its SQLite file: make it here.
            Path(settings["BROOK_INSTANCE_PATH"]).mkdir(parents=True)
            if bus in ("redis", "postgres"):
                servers.reset_postgres(args.postgres_url)
                servers.run_checked([str(servers.BIN / "brook"), "db", "upgrade"], env=env,
                                    cwd=run_dir)
            for n in levels:
                if bus == "redis":
                    servers.flush_redis(args.redis_url)
                print(f"[{time.monotonic() - started:6.0f} s] {bus} bus, {n} clients ...",
                      flush=True)
                level, samples = run_level(bus, n, env, args, run_dir,
                                           (upstream.pid, stats_port), f"load {stamp} {bus} {n}")
                metrics = level_metrics(level)
                metrics["brook_log_samples"] = samples
                report["levels"].append(metrics)
                print(table([metrics]).split("\n", 1)[1], flush=True)
                if metrics["failures"]:
                    print(f"         failures: {metrics['failures']}", flush=True)
                out_json.write_text(json.dumps(report, indent=1))
    finally:
        servers.stop(upstream)
    report["bus_cpu_ratio"] = bus_ratios(report["levels"])
    report["redis_over_postgres_cpu_ratio"] = bus_ratios(report["levels"], over="postgres")
    report["marginal_kb_per_stream"] = marginal_memory(report["levels"])
    report["goals"] = [{"goal": g, "met": ok, "figures": f} for g, ok, f in goals(
        report["levels"])]
    report["duration_s"] = round(time.monotonic() - started)
    out_json.write_text(json.dumps(report, indent=1))
    summary(report, args.plot)
    print(f"results: {out_json}\nlogs:    {run_dir}")
    return 0


def summary(report: dict[str, Any], png: Path) -> None:
    """Print a run's table and goals; plot it to `png` (unless that is '')."""
    print()
    print(table(report["levels"]))
    print()
    for bus, slope in report["marginal_kb_per_stream"].items():
        print(f"memory per extra open stream ({bus} bus, least squares over levels): "
              f"{slope} KB")
    for goal in report["goals"]:
        verdict = {True: "met   ", False: "MISSED", None: "n/a   "}[goal["met"]]
        print(f"{verdict} {goal['goal']}: {goal['figures']}")
    if str(png) not in ("", "."):
        settings = report["settings"]
        title = (f"Brook, one gevent worker, on {report['machine']['cpus']} cores shared with "
                 "the load client, the fake model, Redis and PostgreSQL\nfake model: "
                 f"{settings['ttft'] * 1000:.0f} ms to the first token, "
                 f"{settings['gap'] * 1000:.0f} ms between tokens, {settings['tokens']} tokens"
                 f"; run {report.get('started', '')}")
        plot(report["levels"], png, title)
        print(f"plot:    {png}")


if __name__ == "__main__":
    sys.exit(main())
