"""Providers against the fake model server: OpenAI-compatible and Azure OpenAI (key, keyless)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from brook.config import load_settings
from brook.providers import ProviderError, Reasoning, Usage, build_provider
from brook.providers.openai_compat import AZURE_SCOPE, OpenAICompatible

from .conftest import (
    AppFactory,
    directive,
    new_conversation,
    read_events,
    send,
    wait_for_answer,
    wait_until,
)
from .fakemodel import FakeModelServer

PROMPT = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]


def collect(provider: Any) -> tuple[str, list[Usage]]:
    items = list(provider.stream(PROMPT))
    return ("".join(i for i in items if isinstance(i, str)),
            [i for i in items if isinstance(i, Usage)])


def test_openai_compatible_base_url(fake: FakeModelServer, tmp_path: Path) -> None:
    settings = load_settings({"OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "llama3"},
                             tmp_path)
    provider = build_provider(settings)
    try:
        text, usage = collect(provider)
    finally:
        provider.close()
    assert text == "Hello from the fake model."
    assert usage[0].completion_tokens
    request = fake.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "llama3"
    assert request["body"]["stream_options"] == {"include_usage": True}


def test_azure_with_api_key(fake: FakeModelServer, make_app: AppFactory, serve: Any,
                            sqlite_url: str) -> None:
    live = serve(make_app(sqlite_url, OPENAI_BASE_URL="", OPENAI_API_KEY="",
                          AZURE_OPENAI_ENDPOINT=fake.url, AZURE_OPENAI_DEPLOYMENT="chat-dep",
                          AZURE_OPENAI_API_KEY="azure-key"))
    with live.client() as client:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "hello")
        assert sent["assistant_message"]["model"] == "chat-dep"
        events = read_events(client, sent["stream_url"])
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    assert answer["content"] == "Hello from the fake model."
    assert events[-1]["data"]["status"] == "complete"
    request = fake.requests[-1]
    assert request["path"].startswith("/openai/deployments/chat-dep/chat/completions?")
    assert "api-version=2024-10-21" in request["path"]
    assert request["headers"]["api-key"] == "azure-key"


class ShortLivedCredential:
    """A TokenCredential whose tokens expire at once, so every request needs a fresh one."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(f"entra-token-{next(self.counter)}", int(time.time()) + 1)


def test_azure_keyless_refreshes_tokens(fake: FakeModelServer, tmp_path: Path) -> None:
    settings = load_settings({"AZURE_OPENAI_ENDPOINT": fake.url,
                              "AZURE_OPENAI_DEPLOYMENT": "chat-dep"}, tmp_path)
    credential = ShortLivedCredential()
    provider = OpenAICompatible.from_settings(settings, credential)
    try:
        collect(provider)
        collect(provider)
    finally:
        provider.close()
    tokens = [r["headers"]["authorization"] for r in fake.requests[-2:]]
    assert tokens == ["Bearer entra-token-1", "Bearer entra-token-2"]
    assert credential.scopes[0] == (AZURE_SCOPE,)


def test_provider_errors_carry_no_upstream_text(fake: FakeModelServer, tmp_path: Path) -> None:
    fake.api_key = "right"
    settings = load_settings({"OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_API_KEY": "wrong",
                              "MODEL_MAX_RETRIES": "0"}, tmp_path)
    provider = build_provider(settings)
    try:
        with pytest.raises(ProviderError) as caught:
            collect(provider)
    finally:
        provider.close()
    assert caught.value.code == "upstream_auth"
    assert "right" not in caught.value.message
    assert "wrong" not in caught.value.message
    assert caught.value.__cause__ is not None  # the upstream's details, for the log


def test_upstream_connection_is_reused(fake: FakeModelServer, tmp_path: Path) -> None:
    """After `[DONE]` the rest of the response is read, so the next answer skips connecting."""
    settings = load_settings({"OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "m"},
                             tmp_path)
    provider = build_provider(settings)
    before = fake.connections
    try:
        assert isinstance(provider, OpenAICompatible)
        transport: Any = provider.client._client._transport
        pool = transport._pool  # httpcore's connection pool
        for _ in range(3):
            assert collect(provider)[0] == "Hello from the fake model."
            # The drain runs in the background after the last piece: wait for it to hand
            # the connection back to the pool.
            wait_until(lambda: any(connection.is_idle() for connection in pool.connections),
                       "the connection to go back to the pool")
    finally:
        provider.close()
    assert fake.connections - before == 1


def test_stopping_early_closes_the_response(fake: FakeModelServer, tmp_path: Path) -> None:
    settings = load_settings({"OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "m"},
                             tmp_path)
    provider: Any = build_provider(settings)
    before = fake.connections
    try:
        stream = provider.stream(PROMPT)
        assert isinstance(next(stream), str)
        stream.close()  # what Stop does: the half-read response cannot be reused
        assert collect(provider)[0] == "Hello from the fake model."
    finally:
        provider.close()
    assert fake.connections - before == 2


# -- the Responses API, and reasoning ----------------------------------------------------------

def responses_provider(fake: FakeModelServer, summary: str | None = "auto") -> OpenAICompatible:
    import openai

    client = openai.OpenAI(api_key="k", base_url=fake.url + "/v1", max_retries=0)
    return OpenAICompatible(client, "gpt-fake", api="responses", reasoning_summary=summary)


def stream_of(provider: OpenAICompatible, content: str) -> list[Any]:
    try:
        return list(provider.stream([{"role": "system", "content": "Be brief."},
                                     {"role": "assistant", "content": "Earlier."},
                                     {"role": "user", "content": content}]))
    finally:
        provider.close()


def test_the_responses_api_streams_reasoning_text_and_usage(fake: FakeModelServer) -> None:
    items = stream_of(responses_provider(fake), "why? " + directive(
        reasoning="Weighing <b>both</b> sides.", reply="Because **yes**."))
    assert "".join(i.text for i in items if isinstance(i, Reasoning)) == (
        "Weighing <b>both</b> sides.")
    assert "".join(i for i in items if isinstance(i, str)) == "Because **yes**."
    assert isinstance(items[-1], Usage)
    assert items[-1].completion_tokens
    request = fake.requests[-1]
    assert request["path"] == "/v1/responses"
    body = request["body"]
    assert body["instructions"] == "Be brief."
    assert [m["role"] for m in body["input"]] == ["assistant", "user"]
    assert body["reasoning"] == {"summary": "auto"}
    assert body["stream"] is True
    assert body["store"] is False


def test_the_responses_api_without_a_reasoning_summary_asks_for_none(
        fake: FakeModelServer) -> None:
    items = stream_of(responses_provider(fake, None), "hi " + directive(reply="Hi."))
    assert [i for i in items if isinstance(i, str)] == ["Hi."]
    assert "reasoning" not in fake.requests[-1]["body"]


@pytest.mark.parametrize(("fault", "code"), [
    ({"fault": "status", "status": 500}, "upstream_error"),
    ({"fault": "status", "status": 429}, "rate_limited"),
    ({"fault": "content_filter_prompt"}, "content_filter"),
    ({"fault": "context_length"}, "context_length_exceeded"),
    ({"fault": "content_filter_answer", "after": 2}, "content_filter"),
    ({"fault": "malformed", "after": 2}, "upstream_bad_response"),
    ({"fault": "drop", "after": 2}, "stream_interrupted"),
])
def test_the_responses_api_faults_are_told_plainly(fake: FakeModelServer, fault: dict[str, Any],
                                                   code: str) -> None:
    provider = responses_provider(fake)
    items: list[Any] = []
    stream = provider.stream([{"role": "user", "content": directive(**fault)}])
    with pytest.raises(ProviderError) as caught:
        items.extend(stream)
    provider.close()
    assert caught.value.code == code
    assert "fake model" not in caught.value.message  # the upstream's words stay in the log
    if fault.get("after"):
        assert "".join(i for i in items if isinstance(i, str))  # the text before it is kept


def test_the_responses_api_cut_at_its_limit_ends_as_an_answer(fake: FakeModelServer) -> None:
    items = stream_of(responses_provider(fake), directive(fault="length", tokens=5))
    assert "".join(i for i in items if isinstance(i, str))
    assert isinstance(items[-1], Usage)


def test_the_responses_api_on_azure_keyless(fake: FakeModelServer) -> None:
    import openai

    client = openai.AzureOpenAI(azure_endpoint=fake.url, api_version="2025-04-01-preview",
                                azure_ad_token_provider=lambda: "entra-token", max_retries=0)
    items = stream_of(OpenAICompatible(client, "gpt-5-mini", api="responses"),
                      directive(reply="Keyless."))
    assert [i for i in items if isinstance(i, str)] == ["Keyless."]
    request = fake.requests[-1]
    assert request["path"] == "/openai/responses?api-version=2025-04-01-preview"
    assert request["headers"]["authorization"] == "Bearer entra-token"
    assert request["body"]["model"] == "gpt-5-mini"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "think"])
def test_chat_completions_reasoning_in_each_form_comes_apart(fake: FakeModelServer,
                                                             tmp_path: Path, field: str) -> None:
    settings = load_settings({"OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "r1"},
                             tmp_path)
    provider = build_provider(settings)
    try:
        items = list(provider.stream([{"role": "user", "content": directive(
            reasoning="First this, then that.", reasoning_field=field, reply="Done.")}]))
    finally:
        provider.close()
    assert "".join(i.text for i in items if isinstance(i, Reasoning)) == (
        "First this, then that.")
    assert "".join(i for i in items if isinstance(i, str)) == "Done."
