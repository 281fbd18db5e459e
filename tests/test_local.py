"""The local model provider against a tiny model built here: a random-weight Llama with a
tokenizer trained on a few paragraphs and a chat template, saved to a temporary folder.

Plain threads (the provider alone, and the app on werkzeug's threaded server) and gunicorn's
gevent worker (`brook serve`, where generation must run in real OS threads).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from brook.config import MODEL_HELP, ConfigError, Settings, load_settings
from brook.messages import ChatMessage
from brook.providers import Progress, ProviderError, Usage, build_provider

from .conftest import (
    AppFactory,
    LiveServer,
    Server,
    new_conversation,
    read_events,
    send,
    text_of,
    wait_for_answer,
    wait_until,
)
from .tiny_model import PARAGRAPHS, save_tiny_model

# huggingface_hub reads this once, at import: set before anything imports it, so no test here
# ever reaches the network (the download test runs in a subprocess with its own environment).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from brook.providers.local import LocalModel

QUESTION: list[ChatMessage] = [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "What is Brook?"}]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama and its tokenizer, on disk (tests/tiny_model.py)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_model(path)
    return path


def local_settings(model: Path, **env: str) -> Settings:
    return load_settings({"MODEL_PROVIDER": "local", "BROOK_LOCAL_MODEL": str(model), **env},
                         model.parent)


# How long a test waits for something that should happen, before it fails: generous, since
# only a broken test waits it out. No test here asserts how long anything took.
WAIT = 60.0
# The token at which `Hold` holds a generation. The tiny model is greedy, so every answer
# here is the same: its first text (a whole word) comes out well before this token.
HOLD_AT = 50


class Hold:
    """An `on_token` hook that holds a generation at its `at`-th token until `release()`.

    A test acts while an answer is certainly mid-generation, however fast or loaded the
    machine is, and knows exactly how many tokens it has generated: `parked` is set while
    the generating thread waits here. The hook runs just before the provider checks whether
    the answer was cancelled, so an answer cancelled while held stops at that very token.
    """

    def __init__(self, at: int = HOLD_AT) -> None:
        self.at, self.tokens = at, 0
        self.parked = threading.Event()
        self.released = threading.Event()

    def __call__(self) -> None:
        self.tokens += 1
        if self.tokens >= self.at and not self.released.is_set():
            self.parked.set()
            self.released.wait(WAIT)  # (a failing test may never release it)
            self.parked.clear()

    def release(self) -> None:
        self.released.set()


# -- settings -----------------------------------------------------------------------------

def test_auto_picks_the_local_model_only_when_nothing_else_is_configured(
        tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings({}, tmp_path).provider == "local"
    assert load_settings({}, tmp_path).model_name == "Qwen/Qwen3-0.6B"
    assert load_settings({"OPENAI_API_KEY": "k"}, tmp_path).provider == "openai"
    assert load_settings({"MODEL_PROVIDER": "none"}, tmp_path).provider == "none"
    settings = local_settings(tiny_model)
    assert settings.local_model == str(tiny_model)
    assert settings.model_name == tiny_model.name  # a folder's path stays on the server
    assert (settings.local_model_concurrency, settings.local_model_queue) == (1, 8)

    # Without the extra, nothing changes: the page says what to set, the extra included.
    assert "pip install -e '.[local]'" in MODEL_HELP
    monkeypatch.setattr("brook.config.local_model_installed", lambda: False)
    assert load_settings({}, tmp_path).provider == "none"
    with pytest.raises(ConfigError, match=r"MODEL_PROVIDER=local needs the local model extra"):
        load_settings({"MODEL_PROVIDER": "local"}, tmp_path)


@pytest.mark.parametrize(("env", "name"), [
    ({"BROOK_LOCAL_MODEL": "./no/such/folder"}, "BROOK_LOCAL_MODEL"),
    ({"LOCAL_MODEL_CONCURRENCY": "0"}, "LOCAL_MODEL_CONCURRENCY"),
    ({"LOCAL_MODEL_QUEUE": "-1"}, "LOCAL_MODEL_QUEUE"),
    ({"LOCAL_MODEL_MAX_TOKENS": "many"}, "LOCAL_MODEL_MAX_TOKENS"),
    ({"LOCAL_MODEL_DEVICE": "tpu"}, "LOCAL_MODEL_DEVICE"),
])
def test_bad_local_settings_name_the_variable(tmp_path: Path, env: dict[str, str],
                                              name: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        load_settings({"MODEL_PROVIDER": "local", **env}, tmp_path)
    assert "set" in str(caught.value)


def test_cuda_without_a_usable_gpu_stops_start_up_naming_the_variable(
        tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LOCAL_MODEL_DEVICE=cuda on a CPU-only torch (CI's) is refused at start, plainly, by
    the settings and by `brook serve`; where torch has a GPU, it is taken."""
    from click.testing import CliRunner

    from brook.cli import main
    from brook.config import cuda_problem

    problem = cuda_problem()
    if problem is None:  # a machine with a GPU: the device is taken as asked
        assert local_settings(tiny_model, LOCAL_MODEL_DEVICE="cuda").local_model_device == "cuda"
        return
    assert "CPU-only build" in problem or "no usable NVIDIA GPU" in problem
    with pytest.raises(ConfigError, match=re.escape(f"LOCAL_MODEL_DEVICE=cuda, but {problem}")):
        local_settings(tiny_model, LOCAL_MODEL_DEVICE="CUDA")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["serve"], env={
        "MODEL_PROVIDER": "local", "BROOK_LOCAL_MODEL": str(tiny_model),
        "LOCAL_MODEL_DEVICE": "cuda"})
    assert result.exit_code == 1
    assert "LOCAL_MODEL_DEVICE=cuda, but" in result.output
    assert "Traceback" not in result.output


def test_the_device_and_dtype_the_model_is_loaded_in(tiny_model: Path) -> None:
    """The weights go straight to the chosen device in its dtype: float32 on the CPU."""
    import torch

    from brook.providers.local import placement

    assert placement("cpu") == ("cpu", torch.float32)
    if not torch.cuda.is_available():
        assert placement("auto") == ("cpu", torch.float32)
    else:
        device, dtype = placement("auto")
        assert device == "cuda:0"
        assert dtype == (torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8
                         else torch.float16)
    for choice in ("cpu", "auto"):
        provider = build_provider(local_settings(tiny_model, LOCAL_MODEL_DEVICE=choice,
                                                 LOCAL_MODEL_MAX_TOKENS="5"))
        assert isinstance(provider, LocalModel)
        try:
            assert any(isinstance(item, str) for item in provider.stream(QUESTION))
            loaded = provider._loaded
            assert loaded is not None
            model = loaded[0]
            expected = placement(choice)
            assert (str(model.device), model.dtype) == (
                "cpu" if expected[0] == "cpu" else expected[0], expected[1])
            assert {str(p.device) for p in model.parameters()} == {str(model.device)}
        finally:
            provider.close()


# -- the provider in plain threads ----------------------------------------------------------

def test_streams_deltas_that_add_up_to_the_models_answer(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    provider = build_provider(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="40"))
    assert isinstance(provider, LocalModel)
    assert provider.model == tiny_model.name
    items = list(provider.stream(QUESTION))
    # The first answer loads the model (a folder: nothing to download), saying so first.
    progress = [item for item in items[:2] if isinstance(item, Progress)]
    assert [(p.phase, p.model, p.waiting) for p in progress] == [
        ("load", tiny_model.name, False), ("ready", tiny_model.name, False)]
    items = items[2:]
    deltas = [item for item in items if isinstance(item, str)]
    usage = items[-1]
    assert isinstance(usage, Usage)  # reported at the end
    assert usage.completion_tokens == 40
    assert len(deltas) == len(items) - 1
    assert len(deltas) >= 3
    assert all(deltas)

    # The same model, prompt and chat template, run directly: the same answer.
    tokenizer: Any = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    encoded = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True,
                                            return_dict=True, return_tensors="pt",
                                            enable_thinking=False)  # LOCAL_MODEL_THINKING
    prompt_tokens = encoded["input_ids"].shape[1]
    assert usage.prompt_tokens == prompt_tokens
    output = model.generate(**encoded, max_new_tokens=40)
    expected = tokenizer.decode(output[0, prompt_tokens:], skip_special_tokens=True)
    assert "".join(deltas) == expected
    # The generating thread let go of its slot.
    wait_until(lambda: provider.running == 0, timeout=WAIT)


def test_thinking_is_off_unless_local_model_thinking_turns_it_on(tiny_model: Path) -> None:
    """The chat template gets `enable_thinking` (LOCAL_MODEL_THINKING, default false): with
    thinking off, a Qwen3-style template adds an empty think block to the prompt."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(tiny_model)

    def prompt_tokens(**template: bool) -> int:
        encoded = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True,
                                                return_dict=True, **template)
        return len(encoded["input_ids"])

    used = {}
    for thinking in ("", "true"):
        env = {"LOCAL_MODEL_THINKING": thinking} if thinking else {}
        provider = LocalModel(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="2", **env))
        try:
            usage = [item for item in provider.stream(QUESTION) if isinstance(item, Usage)]
        finally:
            provider.close()
        used[thinking] = usage[0].prompt_tokens
    assert prompt_tokens(enable_thinking=False) > prompt_tokens(enable_thinking=True)
    assert used == {"": prompt_tokens(enable_thinking=False),
                    "true": prompt_tokens(enable_thinking=True)}


def test_closing_the_stream_cancels_generation(tiny_model: Path) -> None:
    hold = Hold()
    provider = LocalModel(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="3000"), hold)
    stream = provider.stream(QUESTION)
    assert isinstance(next(item for item in stream if not isinstance(item, Progress)), str)
    assert hold.parked.wait(WAIT)  # mid-answer, at token HOLD_AT of 3000
    assert provider.running == 1
    stream.close()  # what the chat service does on Stop: stop reading
    hold.release()
    wait_until(lambda: provider.running == 0, timeout=WAIT)
    assert hold.tokens == HOLD_AT  # it stopped at the next token, not at the 3000th
    # The slot is free again: the next answer runs.
    assert any(isinstance(item, str) for item in
               LocalModel(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="5")).stream(QUESTION))


def start_reading(provider: LocalModel) -> tuple[threading.Thread, list[Any]]:
    """Read one answer in a thread; its items (or its ProviderError) land in the list."""
    got: list[Any] = []

    def read() -> None:
        try:
            got.extend(provider.stream(QUESTION))
        except ProviderError as exc:
            got.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_a_full_queue_answers_busy_at_once(tiny_model: Path) -> None:
    hold = Hold()
    provider = LocalModel(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="200",
                                         LOCAL_MODEL_CONCURRENCY="1", LOCAL_MODEL_QUEUE="1"),
                          hold)
    holding = provider.stream(QUESTION)
    next(holding)  # generating: the one slot is taken
    assert hold.parked.wait(WAIT)  # and stays taken until this test releases it
    queued, queued_items = start_reading(provider)
    wait_until(lambda: provider.gate.waiting == 1, timeout=WAIT)

    # At once: answered while the slot is held, so it did not wait for the slot to free up.
    with pytest.raises(ProviderError) as caught:
        next(provider.stream(QUESTION))
    assert hold.parked.is_set()
    assert provider.gate.waiting == 1  # nor did it take the queued answer's place
    assert caught.value.code == "model_busy"
    assert "busy" in caught.value.message
    assert "Traceback" not in caught.value.message

    holding.close()  # Stop: the queued answer gets the slot and runs to the end
    hold.release()
    queued.join(timeout=WAIT)
    assert not queued.is_alive()
    assert isinstance(queued_items[-1], Usage)
    assert queued_items[-1].completion_tokens == 200
    wait_until(lambda: provider.running == 0, timeout=WAIT)
    assert (provider.gate.running, provider.gate.waiting) == (0, 0)


def test_no_queue_means_busy_while_one_generates(tiny_model: Path) -> None:
    hold = Hold()
    provider = LocalModel(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="200",
                                         LOCAL_MODEL_QUEUE="0"), hold)
    holding = provider.stream(QUESTION)
    next(holding)
    assert hold.parked.wait(WAIT)  # generating, held
    with pytest.raises(ProviderError, match="model_busy"):
        next(provider.stream(QUESTION))
    holding.close()
    hold.release()
    wait_until(lambda: provider.running == 0, timeout=WAIT)
    assert any(isinstance(item, str) for item in provider.stream(QUESTION))


def test_closing_the_provider_ends_generation_and_the_queue(tiny_model: Path) -> None:
    """What happens when the app shuts down (ChatService.close)."""
    hold = Hold()
    provider = LocalModel(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="2000"), hold)
    holding = provider.stream(QUESTION)
    next(holding)
    assert hold.parked.wait(WAIT)  # mid-answer, at token HOLD_AT of 2000
    queued, queued_items = start_reading(provider)
    wait_until(lambda: provider.gate.waiting == 1, timeout=WAIT)
    # close() cancels the answer, then waits for its thread to stop: from another thread,
    # so that this one can let the held token go once the answer is cancelled.
    closing = threading.Thread(target=provider.close)
    closing.start()
    wait_until(lambda: provider.gate.closed, timeout=WAIT)  # (set after every answer is cancelled)
    hold.release()
    closing.join(timeout=WAIT)
    assert not closing.is_alive()
    assert hold.tokens == HOLD_AT  # cancelled at the held token: not run to the end
    queued.join(timeout=WAIT)
    assert isinstance(queued_items[-1], ProviderError)
    assert queued_items[-1].code == "shutting_down"
    with pytest.raises(ProviderError, match="shutting_down"):
        next(provider.stream(QUESTION))
    usage = [item for item in holding if isinstance(item, Usage)]  # it ended, with usage
    assert [u.completion_tokens for u in usage] == [HOLD_AT]


def test_a_prompt_longer_than_the_model_drops_the_oldest_turns(tiny_model: Path) -> None:
    provider = LocalModel(local_settings(tiny_model, LOCAL_MODEL_MAX_TOKENS="8"))
    history: list[Any] = [{"role": "system", "content": "Be brief."}]
    for _ in range(40):  # far over the 4096 positions of the tiny model
        history += [{"role": "user", "content": PARAGRAPHS[1] * 3},
                    {"role": "assistant", "content": PARAGRAPHS[2] * 3}]
    history.append({"role": "user", "content": "And now?"})
    usage = list(provider.stream(history))[-1]
    assert isinstance(usage, Usage)
    assert usage.prompt_tokens is not None
    assert 1000 < usage.prompt_tokens <= 4096 - 8
    assert usage.completion_tokens == 8

    with pytest.raises(ProviderError, match="context_length_exceeded"):
        list(provider.stream([{"role": "user", "content": PARAGRAPHS[1] * 200}]))


# -- the app ------------------------------------------------------------------------------

def local_app(make_app: AppFactory, database_url: str, model: Path, **env: str) -> Any:
    return make_app(database_url, MODEL_PROVIDER="local", BROOK_LOCAL_MODEL=str(model),
                    OPENAI_BASE_URL="", OPENAI_API_KEY="", **env)


def test_the_app_streams_and_stores_the_local_models_answer(
        make_app: AppFactory, serve: Callable[[Any], LiveServer], database_url: str,
        tiny_model: Path) -> None:
    live = serve(local_app(make_app, database_url, tiny_model, LOCAL_MODEL_MAX_TOKENS="30"))
    with live.client() as client:
        assert "model-warning" not in client.get("/").text  # a model is ready: no help box
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "What is Brook?")
        assert sent["assistant_message"]["model"] == tiny_model.name
        events = read_events(client, sent["stream_url"])
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert next(e["event"] for e in events) == "start"
    assert len([e for e in events if e["event"] == "message"]) >= 1
    assert events[-1]["event"] == "end"
    assert events[-1]["data"]["status"] == "complete"
    assert events[-1]["data"]["usage"]["completion_tokens"] == 30
    assert answer["status"] == "complete"
    assert answer["content"] == text_of(events)
    assert answer["content"].strip()


def test_stop_through_the_api_cancels_local_generation(
        make_app: AppFactory, serve: Callable[[Any], LiveServer], sqlite_url: str,
        tiny_model: Path) -> None:
    app = local_app(make_app, sqlite_url, tiny_model, LOCAL_MODEL_MAX_TOKENS="3000")
    provider = app.extensions["brook.chat"].provider
    assert isinstance(provider, LocalModel)
    hold = Hold()
    provider.on_token = hold
    live = serve(app)
    with live.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "Tell me everything.")
        # The model's load and its first text (none is sent after that until `end`).
        events = iter_events(client, sent["stream_url"])
        assert next(e for e in events if e["event"] != "progress")["event"] == "start"
        assert next(e for e in events if e["event"] != "progress")["event"] == "message"
        events.close()
        assert hold.parked.wait(WAIT)  # the Stop lands mid-answer, at token HOLD_AT of 3000
        message_id = sent["assistant_message"]["id"]
        assert client.post(f"/api/messages/{message_id}/stop", json={}).status_code == 200
        answer = wait_for_answer(client, conversation_id, message_id)
        assert answer["status"] == "stopped"
        # Let it go on: the chat service, reading its next text, closes the provider's
        # stream, which cancels generation at the next token.
        hold.release()
        wait_until(lambda: provider.running == 0, timeout=WAIT)
        assert hold.tokens < 3000  # it did not run to its end


# -- a model that cannot be downloaded ------------------------------------------------------

DOWNLOAD_SCRIPT = """
import json
from pathlib import Path

from brook.config import load_settings
from brook.providers import ProviderError, build_provider
settings = load_settings({"MODEL_PROVIDER": "local",
                          "BROOK_LOCAL_MODEL": "brook-tests/no-such-model"}, Path("."))
try:
    list(build_provider(settings).stream([{"role": "user", "content": "hi"}]))
except ProviderError as exc:
    print(json.dumps({"code": exc.code, "message": exc.message}))
"""


@pytest.mark.slow  # a Python process
def test_an_unreachable_hub_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"),
               HF_HUB_DOWNLOAD_TIMEOUT="5", HF_HUB_ETAG_TIMEOUT="5")
    result = subprocess.run([sys.executable, "-c", DOWNLOAD_SCRIPT], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error["code"] == "local_model_unavailable"
    assert error["message"].startswith(
        "Could not download the model brook-tests/no-such-model: this server cannot reach "
        "the Hugging Face hub")
    assert "BROOK_LOCAL_MODEL" in error["message"]
    assert "Traceback" not in error["message"]
    assert "127.0.0.1" not in error["message"]
    assert "could not load the local model brook-tests/no-such-model" in result.stderr
    assert "Connection refused" in result.stderr  # the details are in the log


# -- gunicorn's gevent worker -------------------------------------------------------------

@pytest.fixture
def served_model(tmp_path: Path, tiny_model: Path) -> Iterator[Server]:
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        "HF_HUB_OFFLINE": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'brook.db'}",
        "SECRET_KEY": "local-test", "MODEL_PROVIDER": "local",
        "BROOK_LOCAL_MODEL": str(tiny_model), "LOCAL_MODEL_CONCURRENCY": "2",
        "LOCAL_MODEL_MAX_TOKENS": "1500", "FLUSH_INTERVAL_MS": "100",
        "OMP_NUM_THREADS": "1",  # a model this small runs fastest on one core per answer
    }
    server = Server(tmp_path, env)
    server.start()
    yield server
    server.stop()


def test_gevent_worker_streams_two_answers_and_stays_responsive(served_model: Server) -> None:
    """Generation runs in OS threads: two answers stream at once and /healthz answers while
    they do. If generation held gevent's event loop, nothing else would go out until an
    answer ended. (How fast /healthz answers is not asserted: a loaded machine is slow.)"""
    # What happened, in the order it happened: (answer or "probe", event). One list that
    # every thread appends to (atomic in CPython), so its order is the order of the events.
    timeline: list[tuple[str, str]] = []
    results: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=served_model.url, timeout=60) as client:
        # The first of them loads the model (torch and all) in its thread; the other waits.
        sent = {name: send(client, new_conversation(client), "Tell me about " + name)
                for name in ("a", "b")}
        cookies = dict(client.cookies)  # the same anonymous owner for the readers

    def read(name: str) -> None:
        with httpx.Client(base_url=served_model.url, timeout=60, cookies=cookies) as reader:
            events: list[dict[str, Any]] = []
            for event in iter_events(reader, sent[name]["stream_url"]):
                timeline.append((name, event["event"]))
                events.append(event)
            results[name] = events

    readers = [threading.Thread(target=read, args=(name,)) for name in sent]
    for thread in readers:
        thread.start()
    with httpx.Client(base_url=served_model.url, timeout=WAIT) as probe:
        wait_until(lambda: {n for n, e in timeline if e == "message"} == {"a", "b"},
                   timeout=WAIT)
        probes = 0
        while ("a", "end") not in timeline and ("b", "end") not in timeline and probes < 20:
            assert probe.get("/healthz").status_code == 200
            timeline.append(("probe", "ok"))
            probes += 1
    for thread in readers:
        thread.join(timeout=WAIT)

    for name in ("a", "b"):
        events = results[name]
        assert events[-1]["event"] == "end"
        assert events[-1]["data"]["status"] == "complete"
        assert events[-1]["data"]["usage"]["completion_tokens"] == 1500
    # Interleaved: each answer had streamed text before the other one ended, and /healthz
    # answered in between, while both were streaming.
    first_end = next(i for i, (_, e) in enumerate(timeline) if e == "end")
    before_end = timeline[:first_end]
    for name in ("a", "b"):
        assert before_end.count((name, "message")) >= 2
    both_streaming = max(before_end.index(("a", "message")), before_end.index(("b", "message")))
    assert before_end[both_streaming:].count(("probe", "ok")) >= 3, (
        "the answers ended before /healthz could answer three times")


def iter_events(client: httpx.Client, url: str) -> Generator[dict[str, Any], None, None]:
    """SSE events as they arrive, until `end`."""
    from brook import sse

    buffer = ""
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                for event in sse.parse(block + "\n\n"):
                    yield event
                    if event["event"] == "end":
                        return
