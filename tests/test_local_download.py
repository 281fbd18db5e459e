"""The local model's first download, as a user sees it: `brook serve` (gunicorn's gevent
worker) downloads a tiny model from a stand-in for the Hugging Face hub over real HTTP
(tests/fakehub.py, through `HF_ENDPOINT`), so huggingface_hub's own download code runs.

Every answer waiting for the model streams `progress` events (bytes done and total per
file, then the load into memory), also to a second reader and on resume; answers queued
behind the load say they wait for it; the page shows a progress bar with the numbers. A
hub that fails gives an error at once, and the download is not tried again until the
back-off is over.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Page, expect

from brook.config import load_settings
from brook.providers import Progress, ProviderError

from .conftest import Server, new_conversation, read_events, send, text_of, wait_for_answer
from .fakehub import FakeHub
from .test_a11y import AXE, axe_violations, serve_axe
from .test_local import iter_events
from .tiny_model import save_tiny_model

REPO = "brook-tests/tiny-llama"
WEIGHTS = "model.safetensors"
WAIT = 60.0


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hub-model")
    save_tiny_model(path)
    return path


@pytest.fixture
def hub(model_files: Path) -> Iterator[FakeHub]:
    with FakeHub(REPO, model_files) as hub:
        yield hub


def serve_env(tmp_path: Path, hub: FakeHub, **env: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'brook.db'}", "SECRET_KEY": "download-test",
        "MODEL_PROVIDER": "local", "BROOK_LOCAL_MODEL": REPO, "LOCAL_MODEL_MAX_TOKENS": "20",
        "OMP_NUM_THREADS": "1", **env,
    }


@pytest.fixture
def server(tmp_path: Path, hub: FakeHub) -> Iterator[Server]:
    server = Server(tmp_path, serve_env(tmp_path, hub))
    server.start()
    yield server
    server.stop()


def only_weights_left(event: dict[str, Any]) -> bool:
    """A progress event in which every file but the weights (the largest, fetched last) is
    whole, and the weights not begun: the hub is holding them."""
    if event["event"] != "progress":
        return False
    files = {f["name"]: f for f in event["data"]["files"]}
    return files[WEIGHTS]["done"] == 0 and all(
        f["done"] == f["total"] for name, f in files.items() if name != WEIGHTS)


@pytest.mark.slow
def test_every_waiting_answer_streams_the_download_then_the_answer(
        server: Server, hub: FakeHub, model_files: Path) -> None:
    release = hub.held(WEIGHTS)
    sizes = {path.name: path.stat().st_size for path in model_files.iterdir()}
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        first = send(client, new_conversation(client), "What is Brook?")
        queued = send(client, new_conversation(client), "And what is Flask?")
        events = iter_events(client, first["stream_url"])
        seen: list[dict[str, Any]] = []
        for event in events:
            seen.append(event)
            if only_weights_left(event):
                break
        assert hub.holding[WEIGHTS].wait(WAIT)
        latest = seen[-1]["data"]
        assert seen[0]["event"] == "start"
        assert {e["event"] for e in seen[1:]} == {"progress"}
        assert latest["model"] == REPO
        assert latest["phase"] == "download"
        assert not latest["waiting"]
        # Bytes done and total per file: the sizes of the hub's files, weights last.
        assert {f["name"]: f["total"] for f in latest["files"]} == sizes
        assert latest["files"][-1]["name"] == WEIGHTS
        assert latest["total"] == sum(sizes.values())
        assert latest["done"] == sum(sizes.values()) - sizes[WEIGHTS]
        done = [e["data"]["done"] for e in seen[1:]]
        assert done == sorted(done)
        assert len(done) >= 2

        # Another tab, and a reload resuming after the last event: the same progress now.
        again = read_events(client, first["stream_url"], limit=2)
        assert [e["event"] for e in again] == ["start", "progress"]
        assert again[1]["data"] == latest
        resumed = read_events(client, first["stream_url"], {"Last-Event-ID": "0"}, limit=1)
        assert resumed[0]["event"] == "progress"
        assert resumed[0]["data"] == latest
        # The answer queued behind it says it waits for that download.
        behind = read_events(client, queued["stream_url"], limit=2)
        assert behind[1]["event"] == "progress"
        assert behind[1]["data"] == {**latest, "waiting": True}

        release.set()
        rest = list(events)
        kinds = [e["event"] for e in rest]
        # Then the load into memory and the model ready (a reader that was not looking
        # at that moment sees only the latest of them), in that order.
        phases = [e["data"]["phase"] for e in rest if e["event"] == "progress"]
        assert phases[-1] == "ready"
        assert phases == sorted(phases, key=["download", "load", "ready"].index)
        first_text = kinds.index("message")
        assert "progress" not in kinds[first_text:]  # none once the answer has begun
        assert rest[-1]["event"] == "end"
        assert rest[-1]["data"]["status"] == "complete"
        answer = wait_for_answer(client, first["assistant_message"]["conversation_id"],
                                 first["assistant_message"]["id"])
        assert answer["content"] == text_of(rest)
        assert answer["content"]
        second = read_events(client, queued["stream_url"])
        assert second[-1]["data"]["status"] == "complete"
    assert hub.gets(WEIGHTS) == 1  # downloaded once, for both


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_shows_the_download_with_its_numbers(
        server: Server, hub: FakeHub, model_files: Path, page: Page,
        scheme: Literal["light", "dark"]) -> None:
    release = hub.held(WEIGHTS)
    total = sum(path.stat().st_size for path in model_files.iterdir())
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.emulate_media(color_scheme=scheme)
    serve_axe(page, server)  # type: ignore[arg-type]
    page.goto(server.url + "/")
    page.locator("#prompt").fill("What is Brook?")
    page.keyboard.press("Enter")
    answer = page.locator('.message[data-role="assistant"]')
    bar = answer.locator("progress")
    expect(bar).to_have_attribute("max", str(total), timeout=WAIT * 1000)
    assert hub.holding[WEIGHTS].wait(WAIT)
    expect(bar).to_have_attribute("value", str(total - (model_files / WEIGHTS).stat().st_size))
    label = answer.locator(".model-progress p").first
    expect(label).to_contain_text(f"Downloading {REPO}:")
    expect(label).to_contain_text(" of ")
    expect(answer.locator(".model-progress .file")).to_contain_text(f"{WEIGHTS}: 0 B of ")
    expect(bar).to_have_accessible_name(label.inner_text())
    dot = "getComputedStyle(document.querySelector('.message[data-role=assistant] .content'), " \
          "'::after').display"
    assert page.evaluate(dot) == "none"  # the bar in place of the pulsing dot
    assert AXE.exists()
    assert axe_violations(page, server) == []  # type: ignore[arg-type]

    release.set()
    expect(answer).to_have_attribute("data-status", "complete", timeout=WAIT * 1000)
    expect(answer.locator(".model-progress")).to_have_count(0)
    assert answer.locator(".content").inner_text().strip()
    assert errors == []


@pytest.mark.slow
def test_a_failing_hub_fails_the_answer_at_once_and_is_not_asked_again_during_the_back_off(
        server: Server, hub: FakeHub) -> None:
    hub.fail = 503
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        conversation_id = new_conversation(client)
        first = read_events(client, send(client, conversation_id, "hello")["stream_url"])
        asked = len(hub.requests)
        second = read_events(client, send(client, new_conversation(client), "hi")["stream_url"])
    for events in (first, second):
        error = next(e["data"] for e in events if e["event"] == "error")
        assert events[-1]["data"]["status"] == "error"
        assert error["code"] == "local_model_unavailable"
        assert error["message"].startswith(
            f"Could not download the model {REPO}: the Hugging Face hub answered HTTP 503")
        assert "Brook tries again for a message sent in " in error["message"]
        assert "127.0.0.1" not in error["message"]
    assert asked >= 1
    assert len(hub.requests) == asked  # the second answer did not go to the hub


def test_a_failed_load_is_tried_again_only_after_the_back_off(tmp_path: Path,
                                                               model_files: Path) -> None:
    """In this process, with a folder: broken at first (no weights), then whole."""
    from brook.providers.local import LocalModel

    folder = tmp_path / "model"
    shutil.copytree(model_files, folder)
    (folder / WEIGHTS).rename(tmp_path / WEIGHTS)
    settings = load_settings({"MODEL_PROVIDER": "local", "BROOK_LOCAL_MODEL": str(folder),
                              "LOCAL_MODEL_MAX_TOKENS": "5",
                              "LOCAL_MODEL_RETRY_SECONDS": "5"}, tmp_path)
    model = LocalModel(settings)
    question = [{"role": "user", "content": "hi"}]

    def answer() -> list[object]:
        return [item for item in model.stream(question)  # type: ignore[arg-type]
                if not isinstance(item, Progress)]

    try:
        with pytest.raises(ProviderError) as first:
            answer()
        assert first.value.code == "local_model_failed"
        assert first.value.message.endswith("Brook tries again for a message sent in 5 s or "
                                            "later.")
        (tmp_path / WEIGHTS).rename(folder / WEIGHTS)  # mended, but the back-off holds
        refusals: list[ProviderError] = []
        while True:
            try:
                text = answer()
                break
            except ProviderError as again:
                refusals.append(again)
                time.sleep(0.05)
        # The model could be loaded from the first of these on: each refusal is the back-off
        # at work, not a load that failed again.
        assert refusals
        for refusal in refusals:  # each at once, with the same error, saying when
            assert refusal.code == "local_model_failed"
            assert re.search(r"Brook tries again for a message sent in [1-5] s or later\.$",
                             refusal.message)
        assert any(isinstance(item, str) and item for item in text)
    finally:
        model.close()
