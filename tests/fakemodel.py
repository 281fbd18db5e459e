"""A fake model server speaking the OpenAI chat-completions protocol over real HTTP.

It is a protocol peer for integration tests and load benchmarks, so it is built on bare
``asyncio`` streams with a minimal HTTP/1.1 parser (keep-alive, chunked responses) and
pre-encodes what it can: it must stream thousands of tokens per second without eating
the CPU of the machine it is measuring.

It is a tool of the tests, the benchmarks and ``make demo``, not part of the ``brook``
package: it imports nothing of Brook's. Tests import it as ``.fakemodel``; benchmarks and
scripts, run as files, put the repository's root on ``sys.path`` and import
``tests.fakemodel``; ``python -m tests.fakemodel`` serves it from the repository's root.

Routes: ``POST /v1/chat/completions``, ``POST /openai/deployments/<name>/chat/completions``
(Azure; the deployment is the model name), the Responses API's ``POST /v1/responses`` and
``POST /openai/responses`` (Azure), streamed only, and ``GET /v1/models``.

A request overrides the server's settings with ``@@fake{...}`` (a JSON object) in the
last user message. Keys: ``reply``, ``tokens`` (a generated answer of that many tokens,
even when the server has a ``reply``), ``ttft``, ``gap``; ``chunk`` (split the
answer into pieces of that many characters, not words); ``fault``, one of

- ``status``: fail with HTTP ``status`` (default 500), optional ``code``, ``retry_after``
  (seconds), ``times`` (fail only the first N requests with this directive, counted by
  its JSON text or by ``key``);
- ``drop``: close the connection abruptly after ``after`` (default 2) content chunks;
- ``malformed``: send a chunk of invalid JSON after ``after`` content chunks;
- ``content_filter_prompt``, ``context_length``: Azure's and OpenAI's 400 errors;
- ``content_filter_answer``: stop with ``finish_reason: content_filter`` after ``after``;
- ``length``: the whole answer, with ``finish_reason: length``.

``reasoning`` (text) streams reasoning before the answer, in ``chunk``-sized pieces or word by
word: as ``reasoning_content`` deltas (``reasoning_field``: ``reasoning``, or ``think`` for a
leading ``<think>`` block in the content) in Chat Completions, as reasoning summary events in
the Responses API. There the faults are the same, as Responses events: ``content_filter_answer``
ends in ``response.incomplete`` (reason ``content_filter``), ``length`` in ``response.incomplete``
(``max_output_tokens``), ``drop`` and ``malformed`` as above, the statuses as HTTP errors.
Each request's ``model`` is recorded with it (``requests``).

Unknown keys or values get a 400, so that a typo in a test fails loudly. A request's
``max_tokens`` (or ``max_completion_tokens``) cuts the answer short, ending in ``length``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http
import itertools
import json
import logging
import re
import threading
import time
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_AZURE_PATH = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
_RESPONSES_PATHS = frozenset(("/v1/responses", "/openai/responses"))
_REASONING_FIELDS = frozenset(("reasoning_content", "reasoning", "think"))
_TOKEN_RE = re.compile(r"\S+\s*|\s+")  # a word with the whitespace after it; lossless
_MARKER = "@@fake"
# fmt: off
_FAULTS = frozenset((
    "status", "drop", "malformed", "content_filter_prompt", "content_filter_answer",
    "context_length", "length",
))
# fmt: on
_NUMBER = (int, float)
_DIRECTIVE_TYPES: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(("reply", "fault", "code", "key", "reasoning", "reasoning_field"), str),
    **dict.fromkeys(("tokens", "chunk", "status", "times", "after"), int),
    **dict.fromkeys(("ttft", "gap", "retry_after"), _NUMBER),
}
# fmt: off
_WORDS = (
    "the", "stream", "of", "tokens", "flows", "through", "a", "quiet", "brook", "and", "every",
    "word", "arrives", "in", "order", "while", "**steady**", "server", "keeps", "`time`", "for",
)
# fmt: on
_MALFORMED = b"data: {this is not json\n\n"
_DONE = b"data: [DONE]\n\n"
_PROMPT_FILTERED = {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
    "management policy. Please modify your prompt and retry.",
    "type": None,
    "param": "prompt",
    "code": "content_filter",
    "status": 400,
    "innererror": {
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": {"hate": {"filtered": True, "severity": "high"}},
    },
}
_CONTEXT_LENGTH = {
    "message": "This model's maximum context length is 128000 tokens. "
    "However, your messages resulted in 130000 tokens.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


class _HTTPError(Exception):
    """A request we answer with an error status and then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(message: str, type_: str | None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _stream_head(keep: bool, request_id: str) -> str:
    """A streamed (chunked) event-stream response's status line and headers."""
    return (
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
        f"connection: {'keep-alive' if keep else 'close'}\r\nx-request-id: {request_id}\r\n\r\n"
    )


def _frame(data: bytes) -> bytes:
    """One HTTP chunk of the chunked transfer coding."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def _event(obj: dict[str, Any]) -> bytes:
    return _frame(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


def _generated(n: int) -> list[str]:
    """A deterministic Markdown-ish answer of exactly ``n`` tokens."""
    out: list[str] = []
    capital = True
    for i in range(n):
        word = _WORDS[(i * 7 + i // 11) % len(_WORDS)]
        word = word.capitalize() if capital else word
        if i == n - 1:
            sep = "."
        elif i % 40 == 39:
            sep = ".\n\n"
        elif i % 9 == 8:
            sep = ". "
        elif i % 13 == 12:
            sep = ", "
        else:
            sep = " "
        capital = sep.startswith(".")
        out.append(word + sep)
    return out


@functools.lru_cache(maxsize=256)
def _answer(
    reply: str | None, tokens: int, chunk: int
) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """The answer's pieces, and each one pre-encoded as a JSON string."""
    if reply is None and not chunk:
        pieces: list[str] = _generated(tokens)
    else:
        text = "".join(_generated(tokens)) if reply is None else reply
        pieces = (
            [text[i : i + chunk] for i in range(0, len(text), chunk)]
            if chunk
            else _TOKEN_RE.findall(text)
        )
    return tuple(pieces), tuple(json.dumps(p).encode() for p in pieces)


def _pieces(text: str, chunk: int) -> list[str]:
    """``text`` in ``chunk``-sized pieces, or word by word."""
    if chunk:
        return [text[i : i + chunk] for i in range(0, len(text), chunk)]
    return _TOKEN_RE.findall(text)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _directive(messages: list[Any]) -> tuple[dict[str, Any], str]:
    """The ``@@fake{...}`` object in the last user message, and its JSON text; raises ValueError."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = _text_of(users[-1].get("content")) if users else ""
    at = text.find(_MARKER + "{")
    if at < 0:
        return {}, ""
    start = at + len(_MARKER)
    try:
        obj, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise ValueError(f"fake model: bad {_MARKER} JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"fake model: {_MARKER} needs a JSON object")
    for key, value in obj.items():
        kind = _DIRECTIVE_TYPES.get(key)
        if kind is None:
            raise ValueError(f"fake model: unknown directive key {key!r}")
        if (
            not isinstance(value, kind)
            or isinstance(value, bool)
            or (isinstance(value, _NUMBER) and value < 0)
        ):
            raise ValueError(f"fake model: bad value for directive key {key!r}: {value!r}")
    if "fault" in obj and obj["fault"] not in _FAULTS:
        raise ValueError(
            f"fake model: unknown fault {obj['fault']!r}; expected one of {sorted(_FAULTS)}"
        )
    if obj.get("reasoning_field", "reasoning_content") not in _REASONING_FIELDS:
        raise ValueError(f"fake model: reasoning_field is one of {sorted(_REASONING_FIELDS)}")
    if obj.get("status", 400) not in range(400, 600):
        raise ValueError("fake model: directive status must be 400..599")
    return obj, text[start:end]


class FakeModelServer:
    """Serves fake chat completions; ``start()`` runs it in a daemon thread with its own loop.

    ``ttft``, ``gap``, ``tokens``, ``reply``, ``reasoning`` (streamed before every answer,
    as the directive's) and ``api_key`` are read at each request, so tests may change them
    between requests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ttft: float = 0.0,
        gap: float = 0.0,
        tokens: int = 32,
        reply: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.ttft, self.gap, self.tokens = ttft, gap, tokens
        self.reply, self.api_key = reply, api_key
        self.reasoning = ""
        self.requests: list[dict[str, Any]] = []
        self.connections = 0  # accepted so far: tests see whether clients reuse them
        # Streamed answers whose client hung up before their end, as seen when a token could
        # not be sent: with a ``gap``, within a token or two of the hang-up.
        self.hangups = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._fault_counts: dict[str, int] = {}
        self._conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> FakeModelServer:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._thread_main, name="fake-model", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() when it happens before listening
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self, announce: bool = False) -> None:
        """Listen, and serve until ``stop()``; then close every connection."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=1 << 20, backlog=4096
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        if announce:
            print(f"fake model listening on {self.url}", flush=True)
        try:
            await self._stop.wait()
        finally:
            server.close()
            # Python 3.11's wait_closed() does not wait for open connections: end them here.
            for task, writer in self._conns.items():
                writer.transport.abort()
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await asyncio.sleep(0)  # let the transports' connection_lost callbacks run

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        self.connections += 1
        try:
            while await self._exchange(reader, writer):
                pass
        # Only stop() cancels us; asyncio's done-callback on this task chokes on a cancelled one.
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("fake model: internal error")
            writer.transport.abort()
        finally:
            writer.close()
            self._conns.pop(task, None)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; returns whether the connection stays open."""
        try:
            request = await self._read(reader)
        except _HTTPError as exc:
            return await self._send(writer, exc.status, _error(str(exc), "invalid_request_error"))
        if request is None:
            return False  # the client closed an idle connection
        method, target, headers, raw = request
        keep = headers.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]
        azure = _AZURE_PATH.fullmatch(path)
        if path == "/v1/models" and method == "GET":
            models = [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "brook"}]
            return await self._send(writer, 200, {"object": "list", "data": models}, keep)
        responses = path in _RESPONSES_PATHS
        if path != "/v1/chat/completions" and azure is None and not responses:
            message = f"fake model: no route for {method} {path}"
            return await self._send(writer, 404, _error(message, "invalid_request_error"), keep)
        if method != "POST":
            message = f"fake model: {method} is not allowed here"
            return await self._send(writer, 405, _error(message, "invalid_request_error"), keep)
        return await self._chat(writer, target, headers, raw, azure and azure.group(1), keep,
                                responses)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
        """One request: method, target, headers (lower-case names) and body; None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise _HTTPError(400, "incomplete request head") from None
            return None
        except asyncio.LimitOverrunError:
            raise _HTTPError(431, "request head too large") from None
        lines = head.decode("latin-1").strip().split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
            pairs = [line.split(":", 1) for line in lines[1:]]
            headers = {name.strip().lower(): value.strip() for name, value in pairs}
            length = int(headers.get("content-length", "0"))
            if length < 0 or version != "HTTP/1.1":
                raise ValueError(version)
        except ValueError:
            raise _HTTPError(400, "malformed request head, or not HTTP/1.1") from None
        if "transfer-encoding" in headers:
            raise _HTTPError(501, "chunked request bodies are not supported")
        return method, target, headers, await reader.readexactly(length)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: Any,
        keep: bool = False,
        extra: dict[str, str] | None = None,
    ) -> bool:
        """Send a whole (non-streamed) response; returns ``keep``."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = [
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
            "content-type: application/json",
            f"content-length: {len(data)}",
            f"connection: {'keep-alive' if keep else 'close'}",
            *(f"{k}: {v}" for k, v in (extra or {}).items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        return keep

    async def _chat(
        self,
        writer: asyncio.StreamWriter,
        target: str,
        headers: dict[str, str],
        raw: bytes,
        deployment: str | None,
        keep: bool,
        responses: bool = False,
    ) -> bool:
        """Record a chat request, then fail it as asked or answer it."""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.requests.append({"path": target, "headers": headers, "body": body})
        key = self.api_key
        bearer = headers.get("authorization")
        if key is not None and key != headers.get("api-key") and bearer != f"Bearer {key}":
            error = _error(
                "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
            return await self._send(writer, 401, error, keep)
        try:
            field = "input" if responses else "messages"
            if not isinstance(body, dict) or not isinstance(body.get(field), list):
                raise ValueError(f"fake model: the body must be an object with a {field!r} list")
            if responses and body.get("stream") is not True:
                raise ValueError("fake model: the Responses API is served streamed only")
            d, d_text = _directive(body[field])
        except ValueError as exc:
            error = _error(str(exc), "invalid_request_error", "invalid_fake_request")
            return await self._send(writer, 400, error, keep)
        fault = d.get("fault")
        if fault == "status":
            count_key = d.get("key", d_text)
            failed = self._fault_counts.get(count_key, 0)
            if "times" not in d or failed < d["times"]:
                self._fault_counts[count_key] = failed + 1
                status = d.get("status", 500)
                type_ = {401: "invalid_request_error", 429: "requests"}.get(status, "server_error")
                error = _error(f"fake model: injected HTTP {status}", type_, d.get("code"))
                extra: dict[str, str] = {}
                if "retry_after" in d:
                    seconds = d["retry_after"]
                    extra = {
                        "retry-after": str(seconds),
                        "retry-after-ms": str(int(seconds * 1000)),
                    }
                return await self._send(writer, status, error, keep, extra)
            fault = None
        if fault == "content_filter_prompt":
            return await self._send(writer, 400, {"error": _PROMPT_FILTERED}, keep)
        if fault == "context_length":
            return await self._send(writer, 400, {"error": _CONTEXT_LENGTH}, keep)
        if responses:
            return await self._respond(writer, body, d, keep)
        return await self._complete(writer, body, d, deployment, keep)

    async def _complete(
        self,
        writer: asyncio.StreamWriter,
        body: dict[str, Any],
        d: dict[str, Any],
        deployment: str | None,
        keep: bool,
    ) -> bool:
        """Answer a chat request, streamed or whole, with the faults that strike mid-answer."""
        reply, tokens, chunk = (
            d.get("reply", None if "tokens" in d else self.reply),
            d.get("tokens", self.tokens),
            d.get("chunk", 0),
        )
        pieces, encoded = _answer(reply, tokens, chunk)
        ttft, gap = d.get("ttft", self.ttft), d.get("gap", self.gap)
        fault, after = d.get("fault"), d.get("after", 2)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "length" if fault == "length" else "stop"
        count = len(pieces)
        if isinstance(limit, int) and 0 < limit < count:
            count, finish = limit, "length"
        if fault in ("drop", "content_filter_answer"):
            count = min(count, after)
            finish = "content_filter" if fault == "content_filter_answer" else finish
        model = deployment or str(body.get("model") or "fake-model")
        created, cid = int(time.time()), f"chatcmpl-fake{next(self._ids):08x}"
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        prompt = sum(len(_text_of(m.get("content"))) for m in messages) // 4
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": count,
            "total_tokens": prompt + count,
        }
        if not body.get("stream"):
            await asyncio.sleep(ttft + gap * max(count - 1, 0))
            if fault == "drop":
                writer.transport.abort()
                return False
            if fault == "malformed":
                return await self._send(writer, 200, b"{this is not json", keep)
            message = {"role": "assistant", "content": "".join(pieces[:count]), "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            answer = {"id": cid, "object": "chat.completion", "created": created, "model": model}
            return await self._send(
                writer, 200, {**answer, "choices": [choice], "usage": usage}, keep
            )

        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        # Content chunks are spliced from bytes: prefix + pre-encoded JSON string + suffix.
        pre = b"data: " + json.dumps(base, separators=(",", ":")).encode()[:-1]
        pre += b',"choices":[{"index":0,"delta":{"content":'
        post = b'},"finish_reason":null}]}\n\n'
        head = _stream_head(keep, cid)
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        try:
            writer.write(head.encode() + _event({**base, "choices": [role]}))
            await writer.drain()
            await asyncio.sleep(ttft)
            field = d.get("reasoning_field", "reasoning_content")
            thoughts = _pieces(d.get("reasoning", self.reasoning), chunk)
            if thoughts and field == "think":
                thoughts = ["<think>", *thoughts, "</think>\n\n"]
            frames = [_event({**base, "choices": [{"index": 0, "delta": (
                {"content": t} if field == "think" else {field: t}), "finish_reason": None}]})
                for t in thoughts]
            for i in range(count):
                frame = _frame(pre + encoded[i] + post)
                if i == after and fault == "malformed":
                    frame = _frame(_MALFORMED) + frame
                frames.append(frame)
            batch: list[bytes] = []  # without a gap, everything goes out in one write below
            for i, frame in enumerate(frames):
                if gap > 0:
                    if i:
                        await asyncio.sleep(gap)
                    writer.write(frame)
                    await writer.drain()
                else:
                    batch.append(frame)
            if fault == "drop":
                writer.write(b"".join(batch))
                await writer.drain()
                writer.transport.abort()
                return False
            if fault == "malformed" and after >= count:
                batch.append(_frame(_MALFORMED))
            stop = {"index": 0, "delta": {}, "finish_reason": finish}
            batch.append(_event({**base, "choices": [stop]}))
            if (body.get("stream_options") or {}).get("include_usage"):
                batch.append(_event({**base, "choices": [], "usage": usage}))
            batch.append(_frame(_DONE) + b"0\r\n\r\n")  # [DONE] and the last chunk in one packet
            writer.write(b"".join(batch))
            await writer.drain()
            return keep
        except ConnectionError:  # the client hung up mid-answer (seen at a write)
            with self._lock:
                self.hangups += 1
            raise

    async def _respond(
        self, writer: asyncio.StreamWriter, body: dict[str, Any], d: dict[str, Any], keep: bool
    ) -> bool:
        """Stream a Responses API answer: reasoning summary, then text, then the end."""
        reply, tokens, chunk = (
            d.get("reply", None if "tokens" in d else self.reply),
            d.get("tokens", self.tokens),
            d.get("chunk", 0),
        )
        pieces, _ = _answer(reply, tokens, chunk)
        thoughts = _pieces(d.get("reasoning", self.reasoning), chunk)
        ttft, gap = d.get("ttft", self.ttft), d.get("gap", self.gap)
        fault, after = d.get("fault"), d.get("after", 2)
        limit = body.get("max_output_tokens")
        count, reason = len(pieces), "max_output_tokens" if fault == "length" else None
        if isinstance(limit, int) and 0 < limit < count:
            count, reason = limit, "max_output_tokens"
        if fault in ("drop", "content_filter_answer"):
            count = min(count, after)
            reason = "content_filter" if fault == "content_filter_answer" else reason
        rid = f"resp_fake{next(self._ids):08x}"
        model = str(body.get("model") or "fake-model")
        inputs = [m for m in body["input"] if isinstance(m, dict)]
        prompt = (sum(len(_text_of(m.get("content"))) for m in inputs)
                  + len(str(body.get("instructions") or ""))) // 4
        sequence = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            data = json.dumps({"type": kind, "sequence_number": next(sequence), **fields},
                              separators=(",", ":"))
            return _frame(f"event: {kind}\ndata: {data}\n\n".encode())

        response = {"id": rid, "object": "response", "created_at": int(time.time()),
                    "model": model, "status": "in_progress", "output": []}
        head = _stream_head(keep, rid)
        frames: list[bytes] = []
        if thoughts:
            frames += [event("response.output_item.added", output_index=0,
                             item={"id": "rs_1", "type": "reasoning", "summary": []}),
                       event("response.reasoning_summary_part.added", item_id="rs_1",
                             output_index=0, summary_index=0,
                             part={"type": "summary_text", "text": ""})]
            frames += [event("response.reasoning_summary_text.delta", item_id="rs_1",
                             output_index=0, summary_index=0, delta=t) for t in thoughts]
            frames += [event("response.reasoning_summary_text.done", item_id="rs_1",
                             output_index=0, summary_index=0, text="".join(thoughts))]
        index = 1 if thoughts else 0
        frames.append(event("response.output_item.added", output_index=index, item={
            "id": "msg_1", "type": "message", "role": "assistant", "content": []}))
        texts = [event("response.output_text.delta", item_id="msg_1", output_index=index,
                       content_index=0, delta=p) for p in pieces[:count]]
        if fault == "malformed":
            texts.insert(min(after, len(texts)), _frame(_MALFORMED))
        usage = {"input_tokens": prompt, "output_tokens": count,
                 "total_tokens": prompt + count}
        end = "response.incomplete" if reason else "response.completed"
        final = {**response, "status": "incomplete" if reason else "completed",
                 "incomplete_details": {"reason": reason} if reason else None, "usage": usage}
        tail = [event("response.output_text.done", item_id="msg_1", output_index=index,
                      content_index=0, text="".join(pieces[:count])),
                event(end, response=final)]
        try:
            writer.write(head.encode() + event("response.created", response=response))
            await writer.drain()
            await asyncio.sleep(ttft)
            streamed = frames + texts
            for i, frame in enumerate(streamed):
                if gap > 0 and i:
                    await asyncio.sleep(gap)
                writer.write(frame)
                if gap > 0:
                    await writer.drain()
            if fault == "drop":
                await writer.drain()
                writer.transport.abort()
                return False
            writer.write(b"".join(tail) + b"0\r\n\r\n")
            await writer.drain()
            return keep
        except ConnectionError:  # the client hung up mid-answer (seen at a write)
            with self._lock:
                self.hangups += 1
            raise


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until Ctrl-C."""
    description = "Serve fake OpenAI chat completions (see the tests/fakemodel.py docstring)."
    parser = argparse.ArgumentParser(prog="python -m tests.fakemodel", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--tokens", type=int, default=32, help="answer length without --reply")
    parser.add_argument("--reply", default=None, help="exact answer text")
    parser.add_argument("--api-key", default=None, help="require this key")
    args = parser.parse_args(argv)
    options = {k: getattr(args, k) for k in ("ttft", "gap", "tokens", "reply", "api_key")}
    server = FakeModelServer(args.host, args.port, **options)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server._serve(announce=True))


if __name__ == "__main__":
    main()
