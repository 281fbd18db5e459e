"""Summarise a py-spy profile of Brook's worker (``load.py --py-spy`` records one per level).

    .venv/bin/python benchmarks/load_profile.py benchmarks/results/load-*/profile-*.json

It reads the worker's main thread (gevent runs every greenlet there; the other threads are
gevent's resolver pool, idle) and prints where its time went: by what Brook was doing
(the first matching rule below, looking at the whole stack), then the functions with the
most inclusive and self time. py-spy samples wall time while the thread is not idle, so
on a machine short of CPU the shares are right and the seconds are not.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

# (what, function names of which one must be on the stack), first match wins.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("write the answers so far to the database (Writer.flush)", ("Writer.flush",)),
    ("end an answer: its final write and tokens (Writer.end)", ("Writer.end",)),
    ("upstream connection pool upkeep (httpcore checks its connections)",
     ("ConnectionPool._assign_requests_to_connections",)),
    ("open the upstream request (openai SDK post, connect)",
     ("Completions.create", "SyncAPIClient.post")),
    ("read upstream chunks (httpx, json.loads)", ("_read_stream", "_drain")),
    ("hand a token to readers (LiveAnswer.append)",
     ("LiveAnswer.append", "LiveAnswer.append_reasoning")),
    ("sweep, heartbeats", ("ChatService.sweep", "Heartbeat._run")),
    ("Redis: publish answers (the flusher)", ("Publisher._run", "Publisher.flush")),
    ("Redis: the reader loop (XREAD, entries handed to readers)", ("ReadLoop._run",)),
    ("SSE: wait, read the answer (in-process bus, Redis or database), encode",
     ("LocalBus._events", "follow", "stored_events")),
    ("SSE: write events to the socket (gunicorn)", ("Response.write",)),
    ("create conversation / store message / open a stream (Flask + SQLAlchemy)",
     ("Flask.wsgi_app",)),
    ("HTTP parsing, accept, keep-alive (gunicorn)", ("GeventWorker.handle",)),
    ("gevent hub (switching, timers, I/O polling)", ("Hub.run",)),
)


def _name(frame: dict[str, Any]) -> str:
    where = str(frame.get("file") or "")
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        where = where.split(marker)[-1]
    return f"{frame['name']} ({where})"


def summarise(path: Path, top: int) -> str:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    main = max(data["profiles"], key=lambda p: len(p["samples"]))
    samples = [(stack, weight) for stack, weight in zip(main["samples"], main["weights"],
                                                          strict=True) if stack]
    total = sum(weight for _, weight in samples) or 1.0
    by_rule: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, weight in samples:
        names = [frames[i]["name"] for i in stack]
        present = set(names)
        rule = next((what for what, funcs in RULES if present.intersection(funcs)), "other")
        by_rule[rule] += weight
        for key in {_name(frames[i]) for i in stack}:
            inclusive[key] += weight
        own[_name(frames[stack[-1]])] += weight
    lines = [f"{path.name}: main thread, {total:.1f} s sampled (wall time while busy)", ""]
    lines += [f"{100 * w / total:5.1f}%  {what}" for what, w in by_rule.most_common()]
    lines += ["", "inclusive:"]
    lines += [f"{100 * w / total:5.1f}%  {key}" for key, w in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * w / total:5.1f}%  {key}" for key, w in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.profile:
        print(summarise(path, args.top))
        print()


if __name__ == "__main__":
    main()
