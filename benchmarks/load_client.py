"""The load client: many chat users on one asyncio loop, one HTTP/1.1 connection each.

Cheap on purpose, since it shares two cores with Brook and the fake model server: each
connection is an ``asyncio.Protocol`` (no stream reader, no HTTP library), and while an
answer streams the only work per packet is appending ``(time.monotonic(), bytes)`` to a
list. The chunked transfer coding and the SSE events are decoded after the level, from
those timestamped packets (``parse_stream``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

_LAST_CHUNK = b"\r\n0\r\n\r\n"  # the end of a chunked body after at least one chunk


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class Event(NamedTuple):
    at: float  # when the packet that completed the event arrived
    name: str
    id: int
    data: dict[str, Any]


@dataclass
class ClientResult:
    """What one client saw; filled in as it goes, so a cancelled client keeps its part."""

    index: int
    key: str
    started: float = 0.0  # connecting
    post_sent: float = 0.0  # the message POST's first byte written
    post_done: float = 0.0  # its 202 read
    get_sent: float = 0.0  # the stream GET written
    stream_done: float = 0.0  # the stream's last chunk read
    error: str | None = None
    packets: list[tuple[float, bytes]] = field(default_factory=list)


class Gauge:
    """How many streams are open right now, and the most at once."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0

    def up(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)

    def down(self) -> None:
        self.open -= 1


class HTTPConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection.

    ``request`` sends one request and returns the response; a 200 answer to a streaming
    request is not parsed: its body's packets go to ``packets`` with their arrival times,
    and the response is returned once the last chunk arrived.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.packets: list[tuple[float, bytes]] = []
        self._buf = bytearray()
        self._head: tuple[int, dict[str, str]] | None = None
        self._stream = False
        self._streaming = False
        self._tail = b""
        self._waiter: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection dropped ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        if self._streaming:
            self.packets.append((time.monotonic(), data))
            n = len(_LAST_CHUNK)
            self._tail = data[-n:] if len(data) >= n else (self._tail + data)[-n:]
            if self._tail == _LAST_CHUNK:
                self._resolve(Response(200, {}, b""))
            return
        self._buf += data
        self._parse()

    def _parse(self) -> None:
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
            del self._buf[: end + 4]
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "set-cookie":
                    if value.startswith("brook_session="):
                        headers["cookie"] = value.split(";", 1)[0]
                else:
                    headers[name] = value
            self._head = (int(lines[0].split(" ", 2)[1]), headers)
            if self._stream and self._head[0] == 200:
                self._streaming = True
                if self._buf:
                    rest, self._buf = bytes(self._buf), bytearray()
                    self.data_received(rest)
                return
        status, headers = self._head
        length = int(headers.get("content-length", "0"))
        if len(self._buf) >= length:
            body = bytes(self._buf[:length])
            del self._buf[:length]
            self._resolve(Response(status, headers, body))

    def _resolve(self, response: Response) -> None:
        self._head, self._stream, self._streaming = None, False, False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(response)

    async def request(self, data: bytes, stream: bool = False) -> Response:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._stream = stream
        self.transport.write(data)
        return await self._waiter


def _request(method: str, path: str, host: str, cookie: str | None, body: bytes | None
             ) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    else:
        lines.append("Accept: text/event-stream")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def run_client(result: ClientResult, host: str, port: int, start_at: float,
                     gauge: Gauge) -> None:
    """One user: create a conversation, send a message, read its answer's stream."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    result.started = time.monotonic()
    where = f"{host}:{port}"
    transport: asyncio.BaseTransport | None = None
    try:
        transport, conn = await loop.create_connection(HTTPConnection, host, port)
        response = await conn.request(_request("POST", "/api/conversations", where, None, b"{}"))
        if response.status != 201:
            result.error = f"POST /api/conversations: HTTP {response.status}"
            return
        cookie = response.headers.get("cookie")
        conversation = json.loads(response.body)["id"]
        body = json.dumps({"content": result.key}).encode()
        path = f"/api/conversations/{conversation}/messages"
        result.post_sent = time.monotonic()
        response = await conn.request(_request("POST", path, where, cookie, body))
        result.post_done = time.monotonic()
        if response.status != 202:
            result.error = f"POST messages: HTTP {response.status}"
            return
        stream_url = json.loads(response.body)["stream_url"]
        result.packets = conn.packets
        gauge.up()
        try:
            result.get_sent = time.monotonic()
            response = await conn.request(_request("GET", stream_url, where, cookie, None),
                                          stream=True)
            result.stream_done = time.monotonic()
        finally:
            gauge.down()
        if response.status != 200:
            result.error = f"GET stream: HTTP {response.status}"
    except (OSError, ValueError, KeyError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            transport.close()


def parse_stream(packets: list[tuple[float, bytes]]) -> tuple[list[Event], bool]:
    """Decode a chunked SSE body from timestamped packets: its events, and whether it ended."""
    raw = b"".join(data for _t, data in packets)
    # Where each packet ends in `raw`, to date each event by the packet that completed it.
    ends: list[tuple[int, float]] = []
    total = 0
    for at, data in packets:
        total += len(data)
        ends.append((total, at))
    events: list[Event] = []
    sse = bytearray()
    pos, which = 0, 0
    while True:
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            return events, False
        size = int(raw[pos:line_end].split(b";", 1)[0], 16)
        if size == 0:
            return events, True
        start, stop = line_end + 2, line_end + 2 + size
        if stop + 2 > len(raw):
            return events, False
        pos = stop + 2
        sse += raw[start:stop]
        while which < len(ends) - 1 and ends[which][0] < stop:
            which += 1
        at = ends[which][1]
        while (split := sse.find(b"\n\n")) >= 0:
            block = bytes(sse[:split]).decode()
            del sse[: split + 2]
            fields = dict(line.split(": ", 1) for line in block.split("\n")
                          if line and not line.startswith(":") and ": " in line)
            if "data" in fields:
                events.append(Event(at, fields.get("event", "message"),
                                    int(fields.get("id", "-1")), json.loads(fields["data"])))
