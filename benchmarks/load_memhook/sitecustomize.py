"""Where Brook's memory per open stream goes: ``load.py --tracemalloc`` puts this folder on
Brook's PYTHONPATH (with PYTHONTRACEMALLOC set), so Python imports it at start-up.

In each gunicorn worker (after the fork) a native thread watches the folder named by
BROOK_BENCH_TRACEMALLOC: a file ``idle`` there makes it take a tracemalloc snapshot; a
file ``peak`` (holding the number of open streams) makes it take another and write
``report.txt``: what grew between the two, by line and by call stack. Only allocations
through Python's allocators are seen (objects, buffers, greenlet stack copies), not
malloc() in C libraries. tracemalloc slows Brook several times over: use such a run for
memory, never for time.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

_FOLDER = os.environ.get("BROOK_BENCH_TRACEMALLOC")


def _report(base: tracemalloc.Snapshot, peak: tracemalloc.Snapshot, streams: int) -> str:
    lines = [f"worker {os.getpid()}: growth from idle to {streams} open streams", ""]
    by_line = peak.compare_to(base, "lineno")
    total = sum(stat.size_diff for stat in by_line)
    lines.append(f"total {total / 1024:.0f} KB, {total / 1024 / max(streams, 1):.1f} KB a stream")
    lines.append("")
    for stat in by_line[:30]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size_diff / 1024 / max(streams, 1):8.2f} KB/stream "
                     f"{stat.count_diff / max(streams, 1):7.1f} blocks/stream  "
                     f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}")
    lines += ["", "by call stack:"]
    for stat in peak.compare_to(base, "traceback")[:12]:
        lines.append(f"{stat.size_diff / 1024 / max(streams, 1):8.2f} KB/stream")
        lines += [f"    {line}" for line in stat.traceback.format()[-12:]]
    return "\n".join(lines) + "\n"


def _watch(folder: Path) -> None:
    from gevent.monkey import get_original

    sleep = get_original("time", "sleep")
    base: tracemalloc.Snapshot | None = None
    while True:
        idle, peak = folder / "idle", folder / "peak"
        if idle.exists():
            idle.unlink()
            base = tracemalloc.take_snapshot()
            (folder / "idle.done").touch()
        if peak.exists() and base is not None:
            streams = int(peak.read_text() or "1")
            peak.unlink()
            (folder / "report.txt").write_text(_report(base, tracemalloc.take_snapshot(),
                                                       streams))
        sleep(0.2)


def _in_worker() -> None:
    if not _FOLDER or not tracemalloc.is_tracing():
        return
    from gevent.monkey import get_original

    start = get_original("_thread", "start_new_thread")
    start(_watch, (Path(_FOLDER),))


if _FOLDER:
    os.register_at_fork(after_in_child=_in_worker)
