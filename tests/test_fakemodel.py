"""The fake model server, driven through the real openai SDK."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from .fakemodel import FakeModelServer

REPLY = "Hello world!\n\n  <script>alert('x')</script> — naïve 😀\ttabs\r\nend "


def client(fake: FakeModelServer, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=max_retries)


def azure(fake: FakeModelServer, key: str = "k") -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=fake.url, api_key=key, api_version="2024-10-21", max_retries=0
    )


def ask(text: str = "hi") -> list[Any]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def stream(c: openai.OpenAI, text: str = "hi", model: str = "gpt-x") -> list[ChatCompletionChunk]:
    chunks = c.chat.completions.create(
        model=model, messages=ask(text), stream=True, stream_options={"include_usage": True}
    )
    return list(chunks)


def content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)


def finish(chunks: list[ChatCompletionChunk]) -> str | None:
    reasons = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    return reasons[-1]


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(reply=REPLY) as server:
        yield server


def test_stream_gives_the_exact_reply_and_usage(fake: FakeModelServer) -> None:
    with client(fake) as c:
        chunks = stream(c)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert content(chunks) == REPLY
    assert finish(chunks) == "stop"
    assert all(ch.model == "gpt-x" for ch in chunks)
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == sum(
        1 for ch in chunks[1:] if ch.choices and ch.choices[0].delta.content
    )
    assert usage.prompt_tokens == len("be brief" + "hi") // 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    [request] = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer k"
    assert request["body"]["messages"] == ask()
    assert request["body"]["stream"] is True


def test_reply_tokens_are_words_with_their_whitespace(fake: FakeModelServer) -> None:
    fake.reply = "Hello world\n\nbye"
    with client(fake) as c:
        chunks = stream(c)
    assert [ch.choices[0].delta.content for ch in chunks[1:4]] == ["Hello ", "world\n\n", "bye"]


def test_generated_answer_is_deterministic_markdown() -> None:
    with FakeModelServer(tokens=90) as fake, client(fake) as c:
        first, second = stream(c), stream(c)
    deltas = [
        ch.choices[0].delta.content
        for ch in first[1:]
        if ch.choices and ch.choices[0].delta.content
    ]
    assert len(deltas) == 90
    assert content(first) == content(second)
    assert "\n\n" in content(first)
    assert first[-1].usage is not None
    assert first[-1].usage.completion_tokens == 90


def test_whole_completion(fake: FakeModelServer) -> None:
    with client(fake) as c:
        answer = c.chat.completions.create(model="m", messages=ask())
    assert answer.choices[0].message.content == REPLY
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0


def test_azure_path_echoes_the_deployment(fake: FakeModelServer) -> None:
    with azure(fake) as c:
        chunks = list(
            c.chat.completions.create(
                model="my-deploy",
                messages=ask(),
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert content(chunks) == REPLY
    assert {ch.model for ch in chunks} == {"my-deploy"}
    path = fake.requests[0]["path"]
    assert path.startswith("/openai/deployments/my-deploy/chat/completions?")
    assert "api-version=2024-10-21" in path
    assert fake.requests[0]["headers"]["api-key"] == "k"


def test_keep_alive_serves_many_requests_on_one_connection(fake: FakeModelServer) -> None:
    with client(fake) as c:
        assert content(stream(c)) == content(stream(c)) == REPLY
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        body = json.dumps({"model": "m", "messages": ask(), "stream": True})
        for _ in range(2):
            conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("transfer-encoding") == "chunked"
            assert response.read().endswith(b"data: [DONE]\n\n")
            sock = conn.sock
            assert sock is not None  # still open: the next request reuses it
        conn.request("GET", "/v1/models")
        assert conn.sock is sock
        assert json.loads(conn.getresponse().read())["data"][0]["id"] == "fake-model"
        conn.request("GET", "/nowhere")
        response = conn.getresponse()
        assert response.status == 404
        assert "nowhere" in json.loads(response.read())["error"]["message"]
    finally:
        conn.close()


def test_ttft_and_gap_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each token leaves only after the fake has slept `ttft`, then `gap` per token before it.

    Not timed with a clock: the fake's sleeps (real ones, on its event loop) are recorded as
    they end, in one list with each token as the client receives it, so the list's order
    says which sleeps were over before a token arrived.
    """
    happened: list[tuple[str, float]] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        await real_sleep(delay)
        if delay:
            happened.append(("slept", delay))

    monkeypatch.setattr(asyncio, "sleep", sleep)  # what the fake's `asyncio.sleep` calls
    with FakeModelServer(ttft=0.2, gap=0.03, tokens=5) as fake, client(fake) as c:
        for ch in c.chat.completions.create(model="m", messages=ask(), stream=True):
            if ch.choices and ch.choices[0].delta.content:
                happened.append(("token", 0))
        tokens = [i for i, (kind, _) in enumerate(happened) if kind == "token"]
        assert len(tokens) == 5
        for n, at in enumerate(tokens):
            assert [d for kind, d in happened[:at] if kind == "slept"][:n + 1] == [0.2] + [0.03] * n
        happened.clear()
        chunks = stream(c, 'go @@fake{"ttft": 0.1, "gap": 0}')
        assert happened == [("slept", 0.1)]  # then every token at once
        assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) > 1


def test_api_key_is_checked() -> None:
    with FakeModelServer(api_key="secret", reply="ok") as fake:
        with client(fake) as c, pytest.raises(openai.AuthenticationError) as info:
            stream(c)
        assert info.value.code == "invalid_api_key"
        with openai.OpenAI(base_url=fake.url + "/v1", api_key="secret", max_retries=0) as c:
            assert content(stream(c)) == "ok"
        with azure(fake, "secret") as az:
            answer = az.chat.completions.create(model="d", messages=ask())
            assert answer.choices[0].message.content == "ok"
        with azure(fake, "wrong") as az, pytest.raises(openai.AuthenticationError):
            az.chat.completions.create(model="d", messages=ask())
        assert len(fake.requests) == 4


def test_status_fault_with_times_then_succeeds(fake: FakeModelServer) -> None:
    directive = 'hi @@fake{"fault": "status", "status": 429, "times": 1, "retry_after": 0.05}'
    with client(fake, max_retries=1) as c:
        assert content(stream(c, directive)) == REPLY
    assert len(fake.requests) == 2
    with client(fake) as c:
        assert content(stream(c, directive)) == REPLY  # its one failure is spent
        keyed = 'hi @@fake{"fault": "status", "status": 429, "times": 1, "key": "a", "code": "x"}'
        with pytest.raises(openai.RateLimitError) as info:
            stream(c, keyed)
        assert info.value.code == "x"
        assert content(stream(c, keyed.replace('"code": "x"', '"code": "y"'))) == REPLY


def test_status_fault_retry_after_headers(fake: FakeModelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        text = 'x @@fake{"fault": "status", "status": 503, "retry_after": 2}'
        body = json.dumps({"model": "m", "messages": ask(text)})
        conn.request("POST", "/v1/chat/completions", body)
        response = conn.getresponse()
        error = json.loads(response.read())["error"]
        assert (response.status, response.getheader("retry-after")) == (503, "2")
        assert response.getheader("retry-after-ms") == "2000"
        assert (error["code"], error["param"]) == (None, None)
        assert error["message"]
    finally:
        conn.close()


def test_status_fault_without_times_always_fails(fake: FakeModelServer) -> None:
    with client(fake) as c:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                stream(c, 'hi @@fake{"fault": "status", "status": 500}')


def test_drop_fault_breaks_the_stream_midway(fake: FakeModelServer) -> None:
    fake.reply = "one two three four five"
    with client(fake) as c:
        chunks = c.chat.completions.create(
            model="m", messages=ask('@@fake{"fault": "drop", "after": 3}'), stream=True
        )
        iterator = iter(chunks)
        seen = [next(iterator).choices[0].delta.content or "" for _ in range(4)]
        with pytest.raises(openai.APIConnectionError):  # wrapping httpx2.RemoteProtocolError
            next(iterator)
        assert "".join(seen) == "one two three "
        assert content(stream(c)) == "one two three four five"  # the client recovers


def test_malformed_fault_raises_during_iteration(fake: FakeModelServer) -> None:
    with client(fake) as c:
        chunks = c.chat.completions.create(
            model="m", messages=ask('@@fake{"fault": "malformed", "after": 1}'), stream=True
        )
        with pytest.raises(json.JSONDecodeError):  # not an openai error: a bare ValueError
            list(chunks)
        chunks.close()


def test_content_filter_on_the_prompt(fake: FakeModelServer) -> None:
    with azure(fake) as c, pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(
            model="d", messages=ask('@@fake{"fault": "content_filter_prompt"}'), stream=True
        )
    assert info.value.code == "content_filter"
    assert isinstance(info.value.body, dict)
    assert info.value.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"


def test_content_filter_on_the_answer(fake: FakeModelServer) -> None:
    fake.reply = "a b c d"
    with azure(fake) as c:
        chunks = list(
            c.chat.completions.create(
                model="d",
                messages=ask('@@fake{"fault": "content_filter_answer", "after": 2}'),
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert content(chunks) == "a b "
    assert finish(chunks) == "content_filter"
    assert chunks[-1].usage is not None


def test_context_length_and_length_faults(fake: FakeModelServer) -> None:
    with client(fake) as c:
        with pytest.raises(openai.BadRequestError) as info:
            stream(c, '@@fake{"fault": "context_length"}')
        assert info.value.code == "context_length_exceeded"
        chunks = stream(c, '@@fake{"fault": "length"}')
        assert (content(chunks), finish(chunks)) == (REPLY, "length")
        chunks = list(
            c.chat.completions.create(model="m", messages=ask(), stream=True, max_tokens=2)
        )
        assert (content(chunks), finish(chunks)) == ("Hello world!\n\n  ", "length")


def test_chunk_option_splits_by_characters(fake: FakeModelServer) -> None:
    payload = "<script>alert(1)</script>"
    directive = json.dumps({"reply": payload, "chunk": 3})
    with client(fake) as c:
        chunks = stream(c, "earlier text @@fake" + directive + " trailing")
    deltas = [
        ch.choices[0].delta.content
        for ch in chunks[1:]
        if ch.choices and ch.choices[0].delta.content
    ]
    assert deltas == [payload[i : i + 3] for i in range(0, len(payload), 3)]


def test_only_the_last_user_message_counts(fake: FakeModelServer) -> None:
    messages: list[Any] = [
        {"role": "user", "content": '@@fake{"fault": "status"}'},
        {"role": "assistant", "content": "sure"},
        {"role": "user", "content": [{"type": "text", "text": '@@fake{"reply": "parts"}'}]},
    ]
    with client(fake) as c:
        answer = c.chat.completions.create(model="m", messages=messages)
    assert answer.choices[0].message.content == "parts"


@pytest.mark.parametrize(
    "directive", ['{"fualt": "drop"}', '{"fault": "explode"}', '{"tokens": "many"}', "{oops"]
)
def test_bad_directives_are_refused(fake: FakeModelServer, directive: str) -> None:
    with client(fake) as c, pytest.raises(openai.BadRequestError) as info:
        stream(c, "@@fake" + directive)
    assert "fake model" in str(info.value)


@pytest.mark.slow  # paced streams, over a second
def test_many_concurrent_streams() -> None:
    async def run(fake: FakeModelServer) -> list[str]:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=0) as c:

            async def one(i: int) -> str:
                chunks = await c.chat.completions.create(
                    model="m", messages=ask(f"#{i}"), stream=True
                )
                return "".join([ch.choices[0].delta.content or "" async for ch in chunks])

            return await asyncio.gather(*(one(i) for i in range(200)))

    with FakeModelServer(tokens=20, gap=0.005, ttft=0.05) as fake:
        answers = asyncio.run(run(fake))
        expected = answers[0]
        assert len(fake.requests) == 200
    assert len(expected.split()) == 20
    assert answers == [expected] * 200


@pytest.mark.slow  # a server process
def test_command_line_serves_until_interrupted() -> None:
    """`make demo`'s command: `python -m tests.fakemodel`, from the repository's root."""
    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, "-m", "tests.fakemodel", "--port", "0", "--reply", "cli says hi"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=root) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split()[-1]
            with openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as c:
                assert content(stream(c)) == "cli says hi"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=5) == 0
        finally:
            proc.kill()


def test_stop_ends_streams_in_flight() -> None:
    fake = FakeModelServer(ttft=30).start()
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps({"messages": [], "stream": True}))
        response = conn.getresponse()
        assert response.status == 200
        fake.stop()  # not waiting out the 30 s: the read below ends before its 5 s timeout
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()
        fake.stop()


def test_garbage_gets_a_400_and_the_connection_closed(fake: FakeModelServer) -> None:
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in received
    assert fake.requests == []
