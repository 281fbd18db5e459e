"""The conversations API over HTTP: every endpoint, every bad input, ownership, OpenAPI."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import jsonschema
import pytest

from .conftest import LiveServer, new_conversation, send, wait_for_answer


def test_conversation_lifecycle(client: httpx.Client) -> None:
    assert client.get("/api/conversations").json() == {"conversations": []}
    first = new_conversation(client)
    named = client.post("/api/conversations", json={"title": "  Named   chat "})
    assert named.status_code == 201
    assert named.json()["title"] == "Named chat"
    second = named.json()["id"]

    # Newest first, by last activity.
    listed = [c["id"] for c in client.get("/api/conversations").json()["conversations"]]
    assert listed == [second, first]
    sent = send(client, first, "What is the   capital\nof France? " + "x" * 80)
    wait_for_answer(client, first, sent["assistant_message"]["id"])
    listed = client.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [first, second]
    # The title defaults to the start of the first message.
    assert listed[0]["title"].startswith("What is the capital of France? xxx")
    assert len(listed[0]["title"]) <= 60
    assert client.get("/api/conversations?limit=1").json()["conversations"][0]["id"] == first

    renamed = client.patch(f"/api/conversations/{first}", json={"title": "Geography"})
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "Geography"
    got = client.get(f"/api/conversations/{first}").json()
    assert got["title"] == "Geography"
    assert [m["role"] for m in got["messages"]] == ["user", "assistant"]
    assert got["messages"][1]["stream_url"] == sent["stream_url"]
    assert got["messages"][0]["stream_url"] is None

    assert client.delete(f"/api/conversations/{first}").status_code == 204
    assert client.get(f"/api/conversations/{first}").status_code == 404
    assert client.get(sent["stream_url"]).status_code == 404
    assert [c["id"] for c in client.get("/api/conversations").json()["conversations"]] == [second]


def test_deleting_a_conversation_stops_its_answer(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    send(client, conversation_id, 'slow @@fake{"tokens": 300, "gap": 0.02}')
    assert client.delete(f"/api/conversations/{conversation_id}").status_code == 204
    assert client.get(f"/api/conversations/{conversation_id}").status_code == 404


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": "", "headers": {"Content-Type": "application/json"}}, 422, "missing_field"),
        ({"json": {}}, 422, "missing_field"),
        ({"json": {"content": ""}}, 422, "empty_message"),
        ({"json": {"content": " \n\t "}}, 422, "empty_message"),
        ({"json": {"content": "x" * 32_001}}, 422, "message_too_long"),
        ({"json": {"content": 42}}, 422, "invalid_field"),
        ({"json": {"content": None}}, 422, "invalid_field"),
        ({"json": {"content": "hi", "role": "system"}}, 422, "unknown_field"),
        ({"json": ["hi"]}, 400, "invalid_json"),
        ({"content": "{not json", "headers": {"Content-Type": "application/json"}}, 400,
         "invalid_json"),
        ({"content": "content=hi",
          "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415,
         "unsupported_media_type"),
        ({"content": '{"content": "hi"}', "headers": {"Content-Type": "text/plain"}}, 415,
         "unsupported_media_type"),
        ({"content": "x" * 200_000, "headers": {"Content-Type": "application/json"}}, 413,
         "request_entity_too_large"),
    ],
)
def test_bad_messages_are_rejected_and_nothing_is_stored(
        client: httpx.Client, kwargs: dict[str, Any], status: int, code: str) -> None:
    conversation_id = new_conversation(client)
    response = client.post(f"/api/conversations/{conversation_id}/messages", **kwargs)
    _error(response, status, code)
    conversation = client.get(f"/api/conversations/{conversation_id}").json()
    assert conversation["messages"] == []
    assert conversation["title"] == ""


def test_message_at_the_limit_is_accepted(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "y" * 32_000)
    assert len(sent["user_message"]["content"]) == 32_000


def test_bad_conversation_input(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    url = f"/api/conversations/{conversation_id}"
    _error(client.patch(url, json={}), 422, "missing_field")
    _error(client.patch(url, json={"title": "   "}), 422, "empty_title")
    _error(client.patch(url, json={"title": "t" * 201}), 422, "title_too_long")
    _error(client.patch(url, json={"title": 5}), 422, "invalid_field")
    _error(client.patch(url, content="title=x",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
           415, "unsupported_media_type")
    _error(client.post("/api/conversations", json={"title": ""}), 422, "empty_title")
    _error(client.post("/api/conversations", json={"owner": "x"}), 422, "unknown_field")
    _error(client.post("/api/conversations", content="x", headers={"Content-Type": "text/plain"}),
           415, "unsupported_media_type")
    _error(client.get("/api/conversations?limit=0"), 400, "invalid_limit")
    _error(client.get("/api/conversations?limit=abc"), 400, "invalid_limit")
    _error(client.put(url, json={}), 405, "method_not_allowed")
    _error(client.get("/api/nothing-here"), 404, "not_found")
    assert client.get(url).json()["title"] == ""
    assert len(client.get("/api/conversations").json()["conversations"]) == 1


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    missing = uuid.uuid4()
    _error(client.get(f"/api/conversations/{missing}"), 404, "not_found")
    _error(client.patch(f"/api/conversations/{missing}", json={"title": "x"}), 404, "not_found")
    _error(client.delete(f"/api/conversations/{missing}"), 404, "not_found")
    _error(client.post(f"/api/conversations/{missing}/messages", json={"content": "x"}), 404,
           "not_found")
    _error(client.get(f"/api/messages/{missing}/stream"), 404, "not_found")
    _error(client.post(f"/api/messages/{missing}/stop", json={}), 404, "not_found")
    _error(client.get("/api/conversations/not-a-uuid"), 404, "not_found")


def test_another_owners_things_are_404_everywhere(client: httpx.Client,
                                                  live: LiveServer) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, 'slow @@fake{"tokens": 200, "gap": 0.02}')
    answer_id = sent["assistant_message"]["id"]
    user_message_id = sent["user_message"]["id"]
    with live.client() as stranger:
        assert stranger.get("/api/conversations").json() == {"conversations": []}
        _error(stranger.get(f"/api/conversations/{conversation_id}"), 404, "not_found")
        _error(stranger.patch(f"/api/conversations/{conversation_id}", json={"title": "mine"}),
               404, "not_found")
        _error(stranger.delete(f"/api/conversations/{conversation_id}"), 404, "not_found")
        _error(stranger.post(f"/api/conversations/{conversation_id}/messages",
                             json={"content": "hi"}), 404, "not_found")
        _error(stranger.get(sent["stream_url"]), 404, "not_found")
        _error(stranger.post(f"/api/messages/{answer_id}/stop", json={}), 404, "not_found")
    # A user message has no stream.
    _error(client.get(f"/api/messages/{user_message_id}/stream"), 404, "not_found")
    # Nothing the stranger did changed anything.
    conversation = client.get(f"/api/conversations/{conversation_id}").json()
    assert conversation["title"] != "mine"
    assert len(conversation["messages"]) == 2
    assert client.post(f"/api/messages/{answer_id}/stop", json={}).status_code == 200


def test_owner_cookie_is_signed_httponly_samesite(client: httpx.Client,
                                                  live: LiveServer) -> None:
    response = client.get("/api/conversations")
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    new_conversation(client)
    # A forged cookie is a new, empty owner, not an error and not someone else.
    with live.client() as forger:
        forger.cookies.set("brook_session", "eyJvd25lciI6ImFub246eCJ9.forged.sig")
        assert forger.get("/api/conversations").json() == {"conversations": []}


def test_app_service_principal_is_the_owner(make_app: Any, serve: Any, sqlite_url: str) -> None:
    live = serve(make_app(sqlite_url, WEBSITE_AUTH_ENABLED="true"))
    alice = {"X-MS-CLIENT-PRINCIPAL-ID": "alice-oid", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
    with live.client() as c1, live.client() as c2:
        _error(c1.get("/api/conversations"), 401, "unauthenticated")
        conversation_id = c1.post("/api/conversations", json={}, headers=alice).json()["id"]
        # Same principal from another browser: same conversations.
        listed = c2.get("/api/conversations", headers=alice).json()["conversations"]
        assert [c["id"] for c in listed] == [conversation_id]
        bob = {"X-MS-CLIENT-PRINCIPAL-ID": "bob-oid", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
        _error(c2.get(f"/api/conversations/{conversation_id}", headers=bob), 404, "not_found")


def test_principal_headers_are_ignored_without_app_service_auth(client: httpx.Client,
                                                                live: LiveServer) -> None:
    alice = {"X-MS-CLIENT-PRINCIPAL-ID": "alice-oid"}
    conversation_id = client.post("/api/conversations", json={}, headers=alice).json()["id"]
    with live.client() as spoofer:
        assert spoofer.get("/api/conversations", headers=alice).json() == {"conversations": []}
        _error(spoofer.get(f"/api/conversations/{conversation_id}", headers=alice), 404,
               "not_found")


def test_openapi_document_matches_the_app(client: httpx.Client, live: LiveServer) -> None:
    """The generated document names every API route, and real answers, errors and stream
    events keep to it (tests/test_api_contract.py tries it much harder)."""
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item}
    actual = set()
    for rule in live.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = rule.rule.replace("<uuid:", "{").replace(">", "}")
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:
                actual.add((path, method))
    assert documented == actual
    assert len({op["operationId"] for item in doc["paths"].values() for op in item.values()}) \
        == len(actual)

    def validate(instance: Any, schema: dict[str, Any]) -> None:
        jsonschema.validate(instance, {**schema, "components": doc["components"]})

    # Real responses validate against the documented schemas, at a documented status.
    def check(response: httpx.Response, path: str, method: str) -> dict[str, Any]:
        spec = doc["paths"][path][method]["responses"][str(response.status_code)]
        if "content" not in spec:
            assert not response.content
            return {}
        body: dict[str, Any] = response.json()
        validate(body, spec["content"]["application/json"]["schema"])
        return body

    conversation_id = new_conversation(client)
    messages = f"/api/conversations/{conversation_id}/messages"
    sent = check(client.post(messages, json={"content": "hi"}),
                 "/api/conversations/{conversation_id}/messages", "post")
    answer_id = sent["assistant_message"]["id"]
    wait_for_answer(client, conversation_id, answer_id)
    check(client.get("/api/conversations"), "/api/conversations", "get")
    check(client.post("/api/conversations", json={"title": "t"}), "/api/conversations", "post")
    got = check(client.get(f"/api/conversations/{conversation_id}"),
                "/api/conversations/{conversation_id}", "get")
    # Timestamps are RFC 3339 with an explicit offset: UTC.
    for stamp in [got["created_at"], got["updated_at"],
                  *(m[key] for m in got["messages"] for key in ("created_at", "updated_at"))]:
        assert stamp.endswith("Z")
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0)
    check(client.patch(f"/api/conversations/{conversation_id}", json={"title": "n"}),
          "/api/conversations/{conversation_id}", "patch")
    # Stop and regenerate take no body at all, as the document allows.
    check(client.post(f"/api/messages/{answer_id}/stop"),
          "/api/messages/{message_id}/stop", "post")
    check(client.post(f"/api/messages/{answer_id}/stop", json={}),
          "/api/messages/{message_id}/stop", "post")
    again = check(client.post(f"/api/messages/{answer_id}/regenerate"),
                  "/api/messages/{message_id}/regenerate", "post")
    wait_for_answer(client, conversation_id, again["assistant_message"]["id"])
    check(client.get(f"/api/conversations/{uuid.uuid4()}"),
          "/api/conversations/{conversation_id}", "get")
    check(client.post(messages, json={"content": ""}),
          "/api/conversations/{conversation_id}/messages", "post")
    check(client.post(messages, content="{", headers={"Content-Type": "application/json"}),
          "/api/conversations/{conversation_id}/messages", "post")
    check(client.post(messages, content="hi"), "/api/conversations/{conversation_id}/messages",
          "post")

    # Each event of a stream is one of the documented events, its data as documented.
    stream = "/api/messages/{message_id}/stream"
    replay = client.get(again["stream_url"])
    media = doc["paths"][stream]["get"]["responses"]["200"]["content"]["text/event-stream"]
    kinds = {}
    for ref in media["schema"]["oneOf"]:
        kind = doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["properties"]
        kinds[kind["event"]["const"]] = kind["data"]
    events = _raw_events(replay.text)
    assert [events[0]["event"], events[-1]["event"]] == ["start", "end"]
    for event in events:
        validate(event, media["schema"])
        assert kinds[event["event"]]["contentMediaType"] == "application/json"
        validate(json.loads(event["data"]), kinds[event["event"]]["contentSchema"])
    # A repeated or malformed resume offset is refused, as documented.
    for query in ["?after=1&after=x", "?after=1&after=2", "?after=", "?after=%EF%BC%95"]:
        refused = client.get(again["stream_url"] + query)
        _error(refused, 400, "invalid_after")
        check(refused, stream, "get")


def _raw_events(stream: str) -> list[dict[str, Any]]:
    """Events as an SSE parser hands them over: `data` is the raw string."""
    events = []
    for block in stream.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = int(value) if name == "retry" else value
        if "data" in fields:
            events.append(fields)
    return events


def test_page_and_security_headers(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text  # no inline script
    # The page itself hands a new browser its owner cookie.
    assert "brook_session" in page.headers["set-cookie"]
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_owner_cookie_is_signed_once_a_day(live: LiveServer) -> None:
    """Signing the cookie anew on every call cost as much as a call: it is set when the
    owner is new, then again only on the first response of a later day."""
    from datetime import date

    with live.client() as client:
        first = client.get("/api/conversations")
        assert "brook_session=" in first.headers.get("set-cookie", "")
        for _ in range(3):
            again = client.post("/api/conversations", json={})
            assert again.status_code == 201
            assert "set-cookie" not in again.headers
        owner = client.get("/api/conversations")
        serializer = live.app.session_interface.get_signing_serializer(  # type: ignore[attr-defined]
            live.app)
        yesterday = date.today().toordinal() - 1
        owner_id = serializer.loads(client.cookies["brook_session"])["owner"]
        client.cookies.clear()
        client.cookies.set("brook_session", serializer.dumps(
            {"owner": owner_id, "day": yesterday, "_permanent": True}))
        refreshed = client.get("/api/conversations")
        assert "brook_session=" in refreshed.headers["set-cookie"]
        assert "expires=" in refreshed.headers["set-cookie"].lower()
        assert serializer.loads(refreshed.cookies["brook_session"])["day"] == yesterday + 1
        assert refreshed.json() == owner.json()  # the same owner, same conversations
