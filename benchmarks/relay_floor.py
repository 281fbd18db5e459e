"""The floor under Brook's CPU per token: a bare gevent relay, with no HTTP, JSON or database.

    .venv/bin/python benchmarks/relay_floor.py [--streams 100,500,1000] [--seconds 10]

A source process (asyncio) opens N TCP connections to a relay process and writes a 60-byte
message on each every 20 ms, like the fake model's tokens. The relay (gevent, one greenlet
per stream, as in Brook's gevent worker) reads each message with `recv` and writes it with
`sendall` to its own connection to a sink process, which discards it. The relay's CPU
seconds (`utime + stime` from /proc) per 1,000 messages relayed is the least that any
Python relay built on gevent pays per token on this machine, one read and one write each;
Brook does that plus HTTP framing, JSON, the stream bus and the database.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import time
from typing import Any

from load_servers import free_port

MESSAGE = b"x" * 60
GAP = 0.02


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def relay(port_in: int, port_out: int, ready: Any, counter: Any) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.server import StreamServer

    relayed = 0

    def handle(upstream: socket.socket, _address: object) -> None:
        nonlocal relayed
        downstream = socket.create_connection(("127.0.0.1", port_out))
        while data := upstream.recv(65536):
            downstream.sendall(data)
            relayed += len(data) // len(MESSAGE)
            counter.value = relayed
        downstream.close()

    server = StreamServer(("127.0.0.1", port_in), handle, backlog=4096)
    server.start()
    ready.set()
    gevent.wait()


async def sink(port: int, ready: Any) -> None:
    async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(discard, "127.0.0.1", port, backlog=4096)
    ready.set()
    async with server:
        await server.serve_forever()


async def source(port: int, streams: int, seconds: float) -> None:
    async def one(delay: float) -> None:
        await asyncio.sleep(delay)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            writer.write(MESSAGE)
            await asyncio.sleep(GAP)
        writer.close()

    await asyncio.gather(*(one(GAP * i / streams) for i in range(streams)))


def measure(streams: int, seconds: float) -> tuple[float, int, float]:
    port_in, port_out = free_port(), free_port()
    ready_sink, ready_relay = mp.Event(), mp.Event()
    counter = mp.Value("q", 0)
    sinker = mp.Process(target=lambda: asyncio.run(sink(port_out, ready_sink)), daemon=True)
    sinker.start()
    ready_sink.wait()
    relayer = mp.Process(target=relay, args=(port_in, port_out, ready_relay, counter),
                         daemon=True)
    relayer.start()
    ready_relay.wait()
    assert relayer.pid is not None
    before, start = cpu_seconds(relayer.pid), time.monotonic()
    asyncio.run(source(port_in, streams, seconds))
    cpu, wall = cpu_seconds(relayer.pid) - before, time.monotonic() - start
    relayed = counter.value
    relayer.kill()
    sinker.kill()
    return cpu, relayed, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"{'streams':>8} {'messages':>9} {'msg/s':>8} {'relay CPU':>9} "
          f"{'ms per 1k':>9}")
    for n in (int(x) for x in args.streams.split(",")):
        cpu, relayed, wall = measure(n, args.seconds)
        print(f"{n:>8} {relayed:>9} {relayed / wall:>8.0f} {cpu / wall:>8.0%} "
              f"{cpu * 1e6 / max(relayed, 1):>9.1f}", flush=True)


if __name__ == "__main__":
    main()
