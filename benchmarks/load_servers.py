"""The processes under test and the machine: start and stop them, read their CPU and memory.

CPU time and memory come from ``/proc`` (Linux): ``utime + stime`` of ``/proc/<pid>/stat``
and ``VmRSS`` of ``/proc/<pid>/status``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCHMARKS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

# Brook's settings that must come from the benchmark, never from the caller's environment.
BROOK_VARIABLES = (
    "DATABASE_URL", "BROOK_INSTANCE_PATH", "MODEL_PROVIDER", "OPENAI_API_KEY", "OPENAI_BASE_URL",
    "OPENAI_MODEL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_API_VERSION", "REDIS_URL", "FLUSH_INTERVAL_MS", "FLUSH_CHARS",
    "STREAM_COALESCE_MS", "STREAM_KEEPALIVE_SECONDS", "GUNICORN_WORKER_CONNECTIONS",
    "WEB_CONCURRENCY", "SECRET_KEY", "LOG_LEVEL", "HOST", "PORT", "SHUTDOWN_GRACE_SECONDS",
    "WEBSITE_AUTH_ENABLED", "TRUSTED_PROXIES", "MODEL_MAX_RETRIES", "PROMPT_TOKEN_BUDGET",
    "DATABASE_POOL_TIMEOUT", "MAX_ANSWERS_PER_WORKER", "MAX_EVENT_LOOP_LAG_MS",
    "STREAM_LEASE_SECONDS", "STREAM_EXPIRE_SECONDS",
)
_BACKEND = re.compile(r"(?:^|: )\S+ (\S+) (?:\[local\]|\S+\(\d+\))(?: |$)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/healthz"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"Brook exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Brook did not answer {url} within {timeout:.0f} s")
        time.sleep(0.2)


def start_upstream(port: int, stats_port: int, ttft: float, gap: float, tokens: int,
                   log: Path, uvloop: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(BENCHMARKS / "load_upstream.py"), "--port", str(port),
               "--stats-port", str(stats_port), "--ttft", str(ttft), "--gap", str(gap),
               "--tokens", str(tokens), *(["--uvloop"] if uvloop else [])]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    wait_port(port, 20)
    wait_port(stats_port, 20)
    return proc


def upstream_stats(stats_port: int) -> dict[str, Any]:
    """The fake server's piece lengths and its send times since the last call."""
    with socket.create_connection(("127.0.0.1", stats_port), timeout=30) as s:
        chunks = []
        while data := s.recv(1 << 20):
            chunks.append(data)
    report: dict[str, Any] = json.loads(b"".join(chunks))
    return report


def fake_model_settings(model_url: str, instance: Path) -> dict[str, str]:
    """What every benchmark's Brook is given: the fake model at `model_url`, one gevent
    worker, its own instance folder and secret key."""
    return {
        "OPENAI_BASE_URL": model_url, "OPENAI_MODEL": "fake", "MODEL_PROVIDER": "openai",
        "BROOK_INSTANCE_PATH": str(instance), "SECRET_KEY": secrets.token_urlsafe(32),
        "WEB_CONCURRENCY": "1",
        # Each client is its own owner and starts one answer, well within the per-owner
        # limits, which stay on; the deployment's daily budget would run out in a few levels.
        "BUDGET_TOKENS_PER_DAY": "0",
        # Every client's one answer is a conversation's first: each would ask the fake model
        # for a title too, a second request that the levels before titles did not make.
        "MODEL_TITLES": "false",
    }


def brook_env(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BROOK_VARIABLES}
    env.update(settings)
    return env


def start_brook(port: int, env: dict[str, str], cwd: Path, log: Path, timeout: float = 60
                ) -> subprocess.Popen[bytes]:
    """`brook serve` (gunicorn, gevent workers) in `cwd`, so no stray .env is read."""
    command = [str(BIN / "brook"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        wait_healthy(port, proc, timeout)
    except BaseException:
        stop(proc, 10)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL for it and its children if it has not exited in time."""
    if proc.poll() is not None:
        return
    children = child_pids(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def run_checked(command: list[str], env: dict[str, str] | None = None,
                cwd: Path | None = None) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def reset_postgres(url: str) -> None:
    """Drop and create the benchmark's own database (never the shared `test` one)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if name in ("", "postgres", "test", "template0", "template1"):
        raise ValueError(f"refusing to drop database {name!r}: use a database of its own")
    admin = ["psql", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
             "-U", parts.username or "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"]
    run_checked([*admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
    run_checked([*admin, "-c", f'CREATE DATABASE "{name}"'])


def flush_redis(url: str) -> None:
    """FLUSHDB on the database number in `url` (raw RESP, no client library needed)."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                  timeout=10) as s:
        s.sendall(f"*2\r\n$6\r\nSELECT\r\n${len(db)}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n".encode())
        reply = b""
        while reply.count(b"\r\n") < 2:
            data = s.recv(256)
            if not data:
                break
            reply += data
    if reply != b"+OK\r\n+OK\r\n":
        raise RuntimeError(f"Redis FLUSHDB failed: {reply!r}")


# -- /proc -----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()  # fields from the state on (the 3rd)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one live process (0 if it is gone)."""
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def child_pids(parent: int) -> list[int]:
    children = []
    for pid in _all_pids():
        try:
            if int(_stat_fields(pid)[1]) == parent:
                children.append(pid)
        except (OSError, IndexError, ValueError):
            continue
    return children


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of `names` (for Redis and PostgreSQL)."""
    found = []
    for pid in _all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in names:
                found.append(pid)
        except OSError:
            continue
    return found


def service_pids(database: str | None) -> dict[int, str]:
    """Redis's and PostgreSQL's processes: pid -> "redis" or "postgres".

    PostgreSQL's backends serving another database than `database` are left out: others'
    tests on this shared machine use the same server. Its shared processes (the postmaster,
    the WAL writer, the checkpointer ...) are counted.
    """
    found: dict[int, str] = {}
    for pid in pids_named("redis-server", "postgres"):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:
            continue
        if comm == "redis-server":
            found[pid] = "redis"
            continue
        backend = _BACKEND.search(command.removeprefix("postgres: "))
        if backend is None or backend.group(1) == database:
            found[pid] = "postgres"
    return found


def machine_jiffies() -> tuple[int, int]:
    """Busy and total CPU time of the whole machine, in clock ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields[:8])  # user .. steal (guest time is already in user)
    return total - idle, total
