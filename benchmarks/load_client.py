"""The load client: many chat users on one asyncio loop, plain HTTP/1.1 connections.

Cheap on purpose, since it shares two cores with Brook and the fake model server: each
connection is an ``asyncio.Protocol`` (no stream reader, no HTTP library), and while an
answer streams the only work per packet is appending ``(time.monotonic(), bytes)`` to a
list. The chunked transfer coding and the SSE events are decoded after the level, from
those timestamped packets (``parse_stream``).

A client talks to one or more Brook instances (``targets``). It creates its conversation
and sends its message on ``targets[write]`` and reads the answer's stream from
``targets[read]``: with two instances the benchmark makes these differ, so every reader
is served by the instance that is not generating its answer. With one instance the client
does all three on one keep-alive connection.

A ``503`` whose body says ``overloaded`` on either POST is a refusal: the client records
it (and the ``Retry-After`` header) and stops, without retrying; it is not a failure.
Anything else that is not the expected status is an error.

With ``Reconnect`` the client behaves like a browser's EventSource on a flaky network: it
hangs up its stream after a random 0.2-2 s (seeded per client), reconnects at once with
``Last-Event-ID`` set to the last event id it received, to the next instance in turn, and
goes on until it has the ``end`` event. Each connection's packets are kept as a
``Segment``; ``load_report.assemble`` joins the segments' text.
"""

from __future__ import annotations

import asyncio
import json
import random
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
class Segment:
    """One stream GET: the instance it went to, the Last-Event-ID it sent, its packets."""

    instance: int
    after: int | None
    sent: float  # the GET written
    packets: list[tuple[float, bytes]]
    status: int = 0  # the GET's HTTP status (0: none read)
    hung_up: bool = False  # the client hung up on it (reconnect mode)


@dataclass(frozen=True)
class Reconnect:
    """Hang up each stream after uniform(low, high) seconds and resume it (seeded)."""

    seed: int
    low: float = 0.2
    high: float = 2.0


@dataclass
class ClientResult:
    """What one client saw; filled in as it goes, so a cancelled client keeps its part."""

    index: int
    key: str
    write: int = 0  # the instance that creates the conversation and takes the message
    read: int = 0  # the instance of the first stream GET
    started: float = 0.0  # connecting
    conversation_done: float = 0.0  # the conversation POST's answer read
    post_sent: float = 0.0  # the message POST's first byte written
    post_done: float = 0.0  # its answer (202, or a refusal) read
    get_sent: float = 0.0  # the first stream GET written
    stream_done: float = 0.0  # the last stream's last chunk read
    accepted: bool = False  # the message POST was answered 202
    answer_id: str | None = None  # the assistant message's id from the 202
    refused: str | None = None  # the request answered 503 overloaded, if one was
    retry_after: str | None = None  # that answer's Retry-After header
    error: str | None = None
    dropped: bool = False  # a stream's connection was lost before its last chunk
    segments: list[Segment] = field(default_factory=list)

    @property
    def packets(self) -> list[tuple[float, bytes]]:
        """Every stream packet, in order (for a client that never hung up, its one stream)."""
        return [packet for segment in self.segments for packet in segment.packets]


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


def _request(method: str, path: str, host: str, cookie: str | None, body: bytes | None,
             last_event_id: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    else:
        lines.append("Accept: text/event-stream")
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _error_code(response: Response) -> str | None:
    try:
        code = json.loads(response.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _refused_or_failed(result: ClientResult, what: str, response: Response) -> None:
    code = _error_code(response)
    if response.status == 503 and code == "overloaded":
        result.refused = what
        result.retry_after = response.headers.get("retry-after")
    else:
        result.error = f"{what}: HTTP {response.status}" + (f" {code}" if code else "")


Target = tuple[str, int]  # host, port


async def run_client(result: ClientResult, targets: list[Target], start_at: float,
                     gauge: Gauge, reconnect: Reconnect | None = None) -> None:
    """One user: create a conversation, send a message, read its answer's stream.

    Starts at loop time `start_at`; at once, without yielding first, if that has passed
    (so a burst's clients all connect in the loop tick that starts them).
    """
    loop = asyncio.get_running_loop()
    delay = start_at - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
    result.started = time.monotonic()
    host, port = targets[result.write]
    where = f"{host}:{port}"
    transport: asyncio.BaseTransport | None = None
    try:
        transport, conn = await loop.create_connection(HTTPConnection, host, port)
        response = await conn.request(_request("POST", "/api/conversations", where, None, b"{}"))
        result.conversation_done = time.monotonic()
        if response.status != 201:
            _refused_or_failed(result, "POST /api/conversations", response)
            return
        cookie = response.headers.get("cookie")
        conversation = json.loads(response.body)["id"]
        body = json.dumps({"content": result.key}).encode()
        path = f"/api/conversations/{conversation}/messages"
        result.post_sent = time.monotonic()
        response = await conn.request(_request("POST", path, where, cookie, body))
        result.post_done = time.monotonic()
        if response.status != 202:
            _refused_or_failed(result, "POST messages", response)
            return
        result.accepted = True
        turn = json.loads(response.body)
        result.answer_id = turn["assistant_message"]["id"]
        if result.read != result.write or reconnect is not None:
            transport.close()  # the stream goes elsewhere, or on connections of its own
            transport, reuse = None, None
        else:
            reuse = conn
        await _read(result, targets, reuse, turn["stream_url"], cookie, gauge, reconnect)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            transport.close()


async def _read(result: ClientResult, targets: list[Target], conn: HTTPConnection | None,
                stream_url: str, cookie: str | None, gauge: Gauge,
                reconnect: Reconnect | None) -> None:
    """Read the answer's stream to its end: one GET, or (reconnecting) as many as it takes.

    `conn` is a connection to ``targets[result.read]`` to reuse, or None for a new one.
    """
    loop = asyncio.get_running_loop()
    rng = random.Random(f"{reconnect.seed}:{result.index}") if reconnect else None
    instance, after = result.read, None
    while True:
        transport: asyncio.BaseTransport | None = None
        host, port = targets[instance]
        try:
            if conn is None:
                transport, conn = await loop.create_connection(HTTPConnection, host, port)
            segment = Segment(instance, after, time.monotonic(), conn.packets)
            result.segments.append(segment)
            result.get_sent = result.get_sent or segment.sent
            request = conn.request(_request("GET", stream_url, f"{host}:{port}", cookie, None,
                                            after), stream=True)
            gauge.up()
            try:
                if rng is None:
                    response = await request
                else:
                    assert reconnect is not None
                    try:
                        response = await asyncio.wait_for(
                            request, rng.uniform(reconnect.low, reconnect.high))
                    except TimeoutError:
                        segment.hung_up = True
            except OSError:
                result.dropped = True  # lost while the stream was open
                raise
            finally:
                gauge.down()
        finally:
            if transport is not None:
                transport.close()
        conn = None
        if segment.hung_up:
            events, _ended = parse_stream(segment.packets)
            if any(e.name == "end" for e in events):
                result.stream_done = time.monotonic()
                return  # it had the end: a browser closes its EventSource there
            if events:
                after = events[-1].id  # EventSource's lastEventId: the last event's id
            instance = (instance + 1) % len(targets)
            continue
        segment.status = response.status
        result.stream_done = time.monotonic()
        if response.status != 200:
            result.error = f"GET stream: HTTP {response.status}" + (
                f" {code}" if (code := _error_code(response)) else "")
        return


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
