"""Regenerate, edit-and-resend, and the CSRF guard, over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx

from .conftest import (
    LiveServer,
    directive,
    new_conversation,
    read_events,
    send,
    text_of,
    wait_for_answer,
)
from .fakemodel import FakeModelServer


def turn(client: httpx.Client, conversation_id: str, content: str) -> dict[str, str]:
    sent = send(client, conversation_id, content)
    wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
    return {"user": sent["user_message"]["id"], "answer": sent["assistant_message"]["id"]}


def contents(client: httpx.Client, conversation_id: str) -> list[tuple[str, str]]:
    messages = client.get(f"/api/conversations/{conversation_id}").json()["messages"]
    return [(m["role"], m["content"]) for m in messages]


def test_regenerate_replaces_the_last_answer(client: httpx.Client,
                                             fake: FakeModelServer) -> None:
    conversation_id = new_conversation(client)
    first = turn(client, conversation_id, "one")
    fake.reply = "A second opinion."
    second = turn(client, conversation_id, "two")
    fake.reply = "A third opinion."
    response = client.post(f"/api/messages/{second['answer']}/regenerate", json={})
    assert response.status_code == 202
    body = response.json()
    assert body["assistant_message"]["status"] == "streaming"
    assert body["stream_url"] == body["assistant_message"]["stream_url"]
    assert text_of(read_events(client, body["stream_url"])) == "A third opinion."
    wait_for_answer(client, conversation_id, body["assistant_message"]["id"])
    assert contents(client, conversation_id) == [
        ("user", "one"), ("assistant", "Hello from the fake model."),
        ("user", "two"), ("assistant", "A third opinion."),
    ]
    # The model was asked the same question with the same history.
    assert fake.requests[-1]["body"]["messages"][-1] == {"role": "user", "content": "two"}
    assert client.get(f"/api/messages/{second['answer']}/stream").status_code == 404
    # Only the last answer can be regenerated.
    response = client.post(f"/api/messages/{first['answer']}/regenerate", json={})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_last_answer"
    assert len(contents(client, conversation_id)) == 4


def test_regenerate_retries_a_failed_answer(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    failed = turn(client, conversation_id, "hi " + directive(fault="status", status=500))
    messages = client.get(f"/api/conversations/{conversation_id}").json()["messages"]
    assert messages[-1]["status"] == "error"
    response = client.post(f"/api/messages/{failed['answer']}/regenerate", json={})
    assert response.status_code == 202
    # The fault is in the question, so it fails again; the point is it was retried.
    again = wait_for_answer(client, conversation_id, response.json()["assistant_message"]["id"])
    assert again["status"] == "error"
    assert len(contents(client, conversation_id)) == 2


def test_regenerate_while_streaming_is_409(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    sent = send(client, conversation_id, "slow " + directive(tokens=300, gap=0.02))
    response = client.post(f"/api/messages/{sent['assistant_message']['id']}/regenerate",
                           json={})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "answer_in_progress"
    client.post(f"/api/messages/{sent['assistant_message']['id']}/stop", json={})


def test_edit_replaces_later_turns(client: httpx.Client, fake: FakeModelServer) -> None:
    conversation_id = new_conversation(client)
    first = turn(client, conversation_id, "one")
    turn(client, conversation_id, "two")
    turn(client, conversation_id, "three")
    fake.reply = "Edited answer."
    response = client.patch(f"/api/messages/{first['user']}", json={"content": "ONE"})
    assert response.status_code == 202
    body = response.json()
    assert body["user_message"]["id"] == first["user"]
    assert body["user_message"]["content"] == "ONE"
    wait_for_answer(client, conversation_id, body["assistant_message"]["id"])
    assert contents(client, conversation_id) == [("user", "ONE"),
                                                 ("assistant", "Edited answer.")]
    assert fake.requests[-1]["body"]["messages"][1:] == [{"role": "user", "content": "ONE"}]


def test_bad_edits(client: httpx.Client, live: LiveServer) -> None:
    conversation_id = new_conversation(client)
    ids = turn(client, conversation_id, "one")
    url = f"/api/messages/{ids['user']}"
    for body, status, code in [({"content": ""}, 422, "empty_message"),
                               ({"content": "   "}, 422, "empty_message"),
                               ({}, 422, "missing_field"),
                               ({"content": 1}, 422, "invalid_field"),
                               ({"content": "x" * 32_001}, 422, "message_too_long"),
                               ({"content": "x", "role": "assistant"}, 422, "unknown_field")]:
        response = client.patch(url, json=body)
        assert response.status_code == status, body
        assert response.json()["error"]["code"] == code
    # An answer is not the user's message to edit; unknown and foreign ids are 404.
    assert client.patch(f"/api/messages/{ids['answer']}", json={"content": "x"}
                        ).status_code == 404
    assert client.patch(f"/api/messages/{uuid.uuid4()}", json={"content": "x"}
                        ).status_code == 404
    assert client.post(f"/api/messages/{ids['user']}/regenerate", json={}).status_code == 404
    with live.client() as stranger:
        assert stranger.patch(url, json={"content": "mine"}).status_code == 404
        assert stranger.post(f"/api/messages/{ids['answer']}/regenerate",
                             json={}).status_code == 404
    assert contents(client, conversation_id) == [("user", "one"),
                                                 ("assistant", "Hello from the fake model.")]
    # Editing while an answer streams is refused, and changes nothing.
    slow = send(client, conversation_id, "slow " + directive(tokens=300, gap=0.02))
    response = client.patch(url, json={"content": "changed"})
    assert response.status_code == 409
    assert contents(client, conversation_id)[0] == ("user", "one")
    client.post(f"/api/messages/{slow['assistant_message']['id']}/stop", json={})


def test_cross_site_requests_are_refused(client: httpx.Client) -> None:
    conversation_id = new_conversation(client)
    cross = [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
             {"Origin": "https://evil.example"}, {"Origin": "null"}]
    for headers in cross:
        for method, url, body in [
            ("POST", "/api/conversations", {}),
            ("POST", f"/api/conversations/{conversation_id}/messages", {"content": "hi"}),
            ("PATCH", f"/api/conversations/{conversation_id}", {"title": "pwned"}),
            ("DELETE", f"/api/conversations/{conversation_id}", None),
        ]:
            response = client.request(method, url, json=body, headers=headers)
            assert response.status_code == 403, (headers, method, url)
            assert response.json()["error"]["code"] == "cross_site_request"
    conversations = client.get("/api/conversations").json()["conversations"]
    assert [(c["id"], c["title"]) for c in conversations] == [(conversation_id, "")]
    assert contents(client, conversation_id) == []
    # The page's own requests pass.
    same = {"Sec-Fetch-Site": "same-origin", "Origin": str(client.base_url).rstrip("/")}
    assert client.post("/api/conversations", json={}, headers=same).status_code == 201
    # Reading is never refused.
    assert client.get("/api/conversations", headers=cross[0]).status_code == 200
