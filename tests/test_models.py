"""Several models and per-conversation settings: MODELS, GET /api/models, a conversation's
model, system prompt and temperature, on SQLite and PostgreSQL, against the fake model
server (which records the model, API, system prompt and temperature it was asked with)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Page, expect

from brook.config import ConfigError, load_settings

from .conftest import AppFactory, LiveServer, new_conversation, read_events, send
from .fakemodel import FakeModelServer
from .test_a11y import axe_violations, open_page

MODELS = [
    {"id": "fast", "name": "Fast (chat)", "provider": "openai", "model": "fake-fast"},
    {"id": "deep", "name": "Deep (responses)", "provider": "openai", "model": "fake-deep",
     "api": "responses", "reasoning_summary": "auto", "temperature": False, "default": True},
]


@pytest.fixture
def site(make_app: AppFactory, serve: Any, database_url: str) -> LiveServer:
    live: LiveServer = serve(make_app(database_url, MODELS=json.dumps(MODELS)))
    return live


def ask(client: httpx.Client, conversation_id: str, text: str = "hi") -> dict[str, Any]:
    sent = send(client, conversation_id, text)
    events = read_events(client, sent["stream_url"])
    assert events[-1]["data"]["status"] == "complete", events[-1]
    return sent


def test_the_models_are_listed_default_first(site: LiveServer) -> None:
    with site.client() as client:
        listed = client.get("/api/models").json()["models"]
    assert listed == [
        {"id": "deep", "name": "Deep (responses)", "default": True, "temperature": False},
        {"id": "fast", "name": "Fast (chat)", "default": False, "temperature": True}]


def test_a_conversation_uses_its_model(site: LiveServer, fake: FakeModelServer) -> None:
    with site.client() as client:
        conversation_id = new_conversation(client)
        sent = ask(client, conversation_id)
        assert sent["assistant_message"]["model"] == "deep"  # the default
        assert fake.requests[-1]["path"] == "/v1/responses"
        assert fake.requests[-1]["body"]["model"] == "fake-deep"
        assert fake.requests[-1]["body"]["reasoning"] == {"summary": "auto"}
        changed = client.patch(f"/api/conversations/{conversation_id}", json={"model": "fast"})
        assert changed.status_code == 200
        assert changed.json()["model"] == "fast"
        sent = ask(client, conversation_id)
        assert sent["assistant_message"]["model"] == "fast"
        assert fake.requests[-1]["path"] == "/v1/chat/completions"
        assert fake.requests[-1]["body"]["model"] == "fake-fast"
        messages = client.get(f"/api/conversations/{conversation_id}").json()["messages"]
        # Every answer keeps the model that wrote it.
        assert [m["model"] for m in messages if m["role"] == "assistant"] == ["deep", "fast"]
        created = client.post("/api/conversations", json={"model": "fast"}).json()
        assert created["model"] == "fast"
        sent = ask(client, created["id"])
        assert sent["assistant_message"]["model"] == "fast"


def test_system_prompt_and_temperature_apply_from_the_next_answer(
        site: LiveServer, fake: FakeModelServer) -> None:
    with site.client() as client:
        conversation_id = client.post("/api/conversations", json={
            "model": "fast", "system_prompt": "Answer like a pirate.",
            "temperature": 0.3}).json()["id"]
        ask(client, conversation_id)
        body = fake.requests[-1]["body"]
        assert body["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
        assert body["temperature"] == 0.3
        back = client.patch(f"/api/conversations/{conversation_id}",
                            json={"system_prompt": None, "temperature": None}).json()
        assert (back["system_prompt"], back["temperature"]) == (None, None)
        ask(client, conversation_id)
        body = fake.requests[-1]["body"]
        assert body["messages"][0]["content"] == "You are a helpful assistant. Answer in Markdown."
        assert "temperature" not in body
        # A model that takes no temperature is not sent one; the system prompt is its
        # instructions in the Responses API.
        client.patch(f"/api/conversations/{conversation_id}", json={
            "model": "deep", "temperature": 1.5, "system_prompt": "Be terse."})
        ask(client, conversation_id)
        body = fake.requests[-1]["body"]
        assert body["instructions"] == "Be terse."
        assert "temperature" not in body
        got = client.get(f"/api/conversations/{conversation_id}").json()
        assert (got["model"], got["system_prompt"], got["temperature"]) == (
            "deep", "Be terse.", 1.5)


def test_a_renamed_title_is_the_users(site: LiveServer) -> None:
    with site.client() as client:
        conversation_id = new_conversation(client)
        assert client.get(f"/api/conversations/{conversation_id}").json()[
            "title_source"] == "none"
        ask(client, conversation_id, "What is a brook, in short?")
        first = client.get(f"/api/conversations/{conversation_id}").json()
        assert first["title"] == "What is a brook, in short?"
        assert first["title_source"] in ("message", "model")
        renamed = client.patch(f"/api/conversations/{conversation_id}",
                               json={"title": "Brooks"}).json()
        assert (renamed["title"], renamed["title_source"]) == ("Brooks", "user")
        titled = client.post("/api/conversations", json={"title": "Mine"}).json()
        assert titled["title_source"] == "user"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 422, "missing_field"),
    ({"model": "nope"}, 422, "unknown_model"),
    ({"model": ""}, 422, "unknown_model"),
    ({"model": 3}, 422, "invalid_field"),
    ({"temperature": 2.5}, 422, "invalid_temperature"),
    ({"temperature": -0.1}, 422, "invalid_temperature"),
    ({"temperature": "hot"}, 422, "invalid_field"),
    ({"system_prompt": " \n"}, 422, "empty_system_prompt"),
    ({"system_prompt": "x" * 8_001}, 422, "system_prompt_too_long"),
    ({"system_prompt": "a\u0000b"}, 422, "nul_character"),
    ({"colour": "red"}, 422, "unknown_field"),
])
def test_bad_settings_are_refused_and_nothing_changes(site: LiveServer, body: dict[str, Any],
                                                      status: int, code: str) -> None:
    with site.client() as client:
        conversation_id = new_conversation(client)
        before = client.get(f"/api/conversations/{conversation_id}").json()
        response = client.patch(f"/api/conversations/{conversation_id}", json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert client.get(f"/api/conversations/{conversation_id}").json() == before
        if body and "colour" not in body:
            created = client.post("/api/conversations", json=body)
            assert created.status_code == status
            assert created.json()["error"]["code"] == code


def test_a_model_no_longer_configured_gives_way_to_the_default(
        make_app: AppFactory, serve: Any, sqlite_url: str, fake: FakeModelServer) -> None:
    first = serve(make_app(sqlite_url, MODELS=json.dumps(MODELS)))
    with first.client() as client:
        conversation_id = client.post("/api/conversations", json={"model": "fast"}).json()["id"]
        cookies = dict(client.cookies)
    first.stop()
    again = serve(make_app(sqlite_url, MODELS=json.dumps(MODELS[1:])))
    with httpx.Client(base_url=again.url, cookies=cookies, timeout=20) as client:
        sent = ask(client, conversation_id)
    assert sent["assistant_message"]["model"] == "deep"
    assert fake.requests[-1]["body"]["model"] == "fake-deep"


# -- MODELS itself ------------------------------------------------------------------------------

BASE = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}


@pytest.mark.parametrize(("models", "says"), [
    ("not json", "MODELS is not a valid list of models"),
    ('{"id": "a"}', "MODELS is not a valid list of models"),
    ('[{"id": "a", "provider": "nope", "api_key": "sk-SECRET"}]', "0.provider"),
    ('[{"id": "a b", "provider": "openai"}]', "0.id"),
    ('[{"id": "a", "provider": "openai", "colour": "red"}]', "0.colour"),
    ("[]", "MODELS is an empty list"),
    ('[{"id": "a", "provider": "openai"}, {"id": "a", "provider": "openai"}]', "id twice"),
    ('[{"id": "a", "provider": "openai", "default": true},'
     ' {"id": "b", "provider": "openai", "default": true}]', "more than one model as the default"),
    ('[{"id": "a", "provider": "azure"}]', "needs an endpoint"),
])
def test_bad_models_stop_the_start_with_what_to_set(models: str, says: str,
                                                    tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "MODELS": models}, tmp_path)
    assert says in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_models_take_the_single_model_variables_as_defaults(tmp_path: Path) -> None:
    settings = load_settings({
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-openai",
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "MODELS": json.dumps([
            {"id": "a", "provider": "openai"},
            {"id": "b", "provider": "azure", "model": "dep-b", "api": "responses",
             "api_version": "2025-04-01-preview", "api_key": "sk-azure"}])}, tmp_path)
    a, b = settings.model_specs
    assert (a.name, a.model, a.base_url, a.api_key) == ("a", "a", "http://127.0.0.1:9/v1",
                                                        "sk-openai")
    assert (b.model, b.endpoint, b.api_version) == (
        "dep-b", "https://x.openai.azure.com", "2025-04-01-preview")
    assert settings.provider == "none"  # each model names its own
    assert "sk-azure" not in repr(settings)
    assert "sk-openai" not in repr(settings)


def test_without_models_the_one_configured_model_is_the_list(tmp_path: Path) -> None:
    settings = load_settings({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                              "OPENAI_MODEL": "llama3"}, tmp_path)
    assert [(s.id, s.provider, s.model) for s in settings.model_specs] == [
        ("llama3", "openai", "llama3")]
    assert load_settings({"MODEL_PROVIDER": "none"}, tmp_path).model_specs == []


# -- the page -----------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pick_a_model_change_settings_and_see_the_title_come(
        make_app: AppFactory, serve: Any, sqlite_url: str, fake: FakeModelServer, page: Page,
        scheme: Literal["light", "dark"]) -> None:
    live = serve(make_app(sqlite_url, MODELS=json.dumps(MODELS), MODEL_TITLES="true"))
    errors = open_page(page, live, scheme)
    picker = page.get_by_label("Model", exact=True)
    expect(picker).to_be_visible()
    expect(picker).to_have_value("deep")
    expect(page.locator("#model-warning")).to_have_count(0)  # models are configured
    expect(picker.locator("option")).to_have_text(["Deep (responses)", "Fast (chat)"])
    # A new chat's choice goes with its first message.
    picker.select_option("fast")
    fake.reply = "Rivers and Brooks"
    page.locator("#prompt").fill("Tell me about rivers")
    page.locator("#prompt").press("Enter")
    answer = page.locator('.message[data-role="assistant"]').last
    expect(answer).to_have_attribute("data-status", "complete")
    answered = [r for r in fake.requests if "Tell me about rivers" in json.dumps(r["body"])]
    assert answered[0]["body"]["model"] == "fake-fast"
    # The model that wrote it, on hover.
    model = answer.locator(".answer-model")
    expect(model).to_have_text(" · Fast (chat)")
    answer.hover()
    expect(model).to_have_css("visibility", "visible")
    # The title the model wrote comes into the sidebar, and into another tab.
    other = page.context.new_page()
    other.goto(live.url + "/")
    for tab in (page, other):
        expect(tab.locator("#conversation-list li.conversation-item").first).to_contain_text(
            "Rivers and Brooks", timeout=15_000)
    other.close()
    expect(page.locator("#conversation-title")).to_have_text("Rivers and Brooks")
    # The conversation's settings, from the next answer on.
    page.get_by_role("button", name="Conversation settings").click()
    dialog = page.get_by_role("dialog", name="Conversation settings")
    expect(dialog).to_be_visible()
    assert axe_violations(page, live) == []
    dialog.get_by_label("System prompt").fill("Answer like a pirate.")
    dialog.get_by_label("Temperature").fill("3")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_have_text(
        "The temperature must be a number from 0 to 2.")
    dialog.get_by_label("Temperature").fill("0.4")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    page.locator("#prompt").fill("And brooks?")
    page.locator("#prompt").press("Enter")
    expect(page.locator('.message[data-role="assistant"]')).to_have_count(2)
    expect(page.locator('.message[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete")
    body = next(r for r in fake.requests if "And brooks?" in json.dumps(r["body"]))["body"]
    assert body["messages"][0]["content"] == "Answer like a pirate."
    assert body["temperature"] == 0.4
    # The reasoning model takes no temperature: the dialog says so.
    picker.select_option("deep")
    page.get_by_role("button", name="Conversation settings").click()
    expect(dialog.get_by_label("Temperature")).to_be_disabled()
    expect(dialog.get_by_text("This model takes no temperature.")).to_be_visible()
    assert axe_violations(page, live) == []
    dialog.get_by_role("button", name="Cancel").click()
    page.reload()
    expect(picker).to_have_value("deep")
    assert axe_violations(page, live) == []
    assert errors == []
