"""Brook's fake model server (``tests/fakemodel.py``), recording when it sends each token.

``benchmarks/load.py`` runs this as its own process, as the upstream of the Brook under test.
It is ``tests.fakemodel.FakeModelServer`` unchanged (same protocol, same pacing: it sleeps
``--gap`` between tokens, so its schedule drifts by the event loop's lateness) with one
addition: for every streamed answer it records ``time.monotonic()`` at each write, keyed
by the text of the last user message (the load client makes each one unique). Monotonic
time is one clock for every process on the machine, so the load client can subtract the
moment a token left the fake server from the moment it reached the client: that is the
lateness Brook adds, whatever the fake server's own timing did.

A second port (``--stats-port``) answers each connection with JSON and closes it::

    {"pieces": [len of each token], "sends": {key: [request, head, token0, ..., end]}}

and forgets the sends it reported. With ``--uvloop`` the same code runs on uvloop's event
loop, which roughly halves its CPU per token: at 2,000 streams of 50 tokens a second the
fake server would otherwise need most of a core of the two that Brook is measured on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

# The fake model server lives with the tests (tests/fakemodel.py), outside the brook package;
# run as a script, this one has only benchmarks/ on its path: add the repository's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakemodel import FakeModelServer, _answer


class _RecordingWriter:
    """Passes writes through to the real writer and records when each one happened."""

    def __init__(self, writer: asyncio.StreamWriter, times: list[float]) -> None:
        self._writer = writer
        self._times = times
        self.transport = writer.transport

    def write(self, data: bytes) -> None:
        self._times.append(time.monotonic())
        if not self.transport.is_closing():  # as asyncio's loop does; uvloop's would raise
            self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()


def _key(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages") or () if isinstance(m, dict)
             and m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    return content if isinstance(content, str) else ""


def recording(server: Any, sends: dict[str, list[float]]) -> None:
    """Make ``server`` record its writes for each streamed answer into ``sends``."""
    complete = server._complete

    async def _complete(writer: asyncio.StreamWriter, body: dict[str, Any], *args: Any) -> bool:
        times = [time.monotonic()]
        sends[_key(body)] = times
        result: bool = await complete(_RecordingWriter(writer, times), body, *args)
        return result

    server._complete = _complete


async def serve(args: argparse.Namespace) -> None:
    server: Any = FakeModelServer(args.host, args.port, ttft=args.ttft, gap=args.gap,
                                  tokens=args.tokens)
    sends: dict[str, list[float]] = {}
    recording(server, sends)
    pieces = [len(p) for p in _answer(None, args.tokens, 0)[0]]

    async def stats(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        report = {"pieces": pieces, "sends": dict(sends)}
        sends.clear()
        writer.write(json.dumps(report, separators=(",", ":")).encode())
        await writer.drain()
        writer.close()

    stats_server = await asyncio.start_server(stats, args.host, args.stats_port)
    async with stats_server:
        await server._serve(announce=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, required=True)
    parser.add_argument("--ttft", type=float, default=0.3)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--uvloop", action="store_true",
                        help="run on uvloop's event loop (same code, less CPU per token)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
