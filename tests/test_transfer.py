"""Export and import (issue 16): a conversation or all of an owner's as Brook's JSON document
or a Markdown transcript, and the import of Brook's export and of ChatGPT's
`conversations.json`, through the API on SQLite and PostgreSQL and in the page.

Export, import, export again gives the same bytes; a bad or oversized file is refused with a
4xx that says why, and nothing of it is stored.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from flask import Flask
from playwright.sync_api import FilePayload, Page, expect
from sqlalchemy import create_engine, insert, text

from brook.chat import transfer
from brook.chat.imported import MAX_CONVERSATIONS, MAX_IMPORT_BYTES, MAX_MESSAGES, MAX_TEXT_CHARS

from .conftest import (
    AppFactory,
    LiveServer,
    directive,
    new_conversation,
    send,
    wait_for_answer,
    wait_until,
)
from .fakemodel import FakeModelServer
from .test_a11y import axe_violations, open_page
from .test_xss import INSTRUMENT, PAYLOADS, Watch, check_answers, check_page

Serve = Callable[[Flask], LiveServer]
FIXTURE = Path(__file__).parent / "fixtures" / "chatgpt_conversations.json"
IMPORT = "/api/conversations/import"
KALIMERA = "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1"  # Greek: good morning
TIMES = "\u00d7"
EXPORT_ALL = "/api/conversations/export"


def export_url(conversation_id: str, format: str = "json") -> str:
    return f"/api/conversations/{conversation_id}/export?format={format}"


def post_file(client: httpx.Client, body: bytes | str,
              content_type: str = "application/json") -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return client.post(IMPORT, content=data, headers={"Content-Type": content_type})


def imported(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def listed(client: httpx.Client) -> list[dict[str, Any]]:
    conversations: list[dict[str, Any]] = client.get(
        "/api/conversations?limit=500").json()["conversations"]
    return conversations


def stored_rows(database_url: str) -> tuple[int, int]:
    """Every owner's conversations and messages in the database."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        counts = (connection.execute(text("SELECT count(*) FROM conversations")).scalar_one(),
                  connection.execute(text("SELECT count(*) FROM messages")).scalar_one())
    engine.dispose()
    return counts


def seed(client: httpx.Client, fake: FakeModelServer) -> list[str]:
    """Conversations of every kind: renamed (non-ASCII), answered twice; an answer stopped;
    one failed; one empty and untitled."""
    fake.reply = ("Rust is fast; Python is friendly ☕. **Both** are fine.\n\n"
                  "```python\nprint('héllo')\n```")
    first = new_conversation(client)
    for question in ("Compare Rust and Python — briefly, s'il vous plaît", "And Go? 🐹"):
        sent = send(client, first, question)
        wait_for_answer(client, first, sent["assistant_message"]["id"])
    assert client.patch(f"/api/conversations/{first}",
                        json={"title": "Rust vs Python: café ☕ <b>"}).status_code == 200

    stopped = new_conversation(client)
    sent = send(client, stopped, "Count " + directive(tokens=400, gap=0.02))
    answer_id = sent["assistant_message"]["id"]

    def some_text() -> bool:
        messages = client.get(f"/api/conversations/{stopped}").json()["messages"]
        return bool(messages[1]["content"])

    wait_until(some_text, "some of the answer stored")
    assert client.post(f"/api/messages/{answer_id}/stop", json={}).status_code == 200
    assert wait_for_answer(client, stopped, answer_id)["status"] == "stopped"
    client.patch(f"/api/conversations/{stopped}", json={"title": "Stopped"})

    failed = new_conversation(client)
    sent = send(client, failed, "Fail " + directive(fault="status", status=500,
                                                    key=str(uuid.uuid4())))
    assert wait_for_answer(client, failed, sent["assistant_message"]["id"])["status"] == "error"
    client.patch(f"/api/conversations/{failed}", json={"title": "Failed"})
    return [first, stopped, failed, new_conversation(client)]


# -- export, import, export: the same bytes ------------------------------------------------------

def test_export_then_import_round_trips_byte_for_byte(
        live: LiveServer, fake: FakeModelServer) -> None:
    with live.client() as client, live.client() as other, live.client() as third:
        ids = seed(client, fake)
        everything = client.get(EXPORT_ALL)
        assert everything.status_code == 200
        assert everything.headers["Content-Type"] == "application/json"
        assert re.fullmatch(r'attachment; filename="Brook conversations \d{4}-\d\d-\d\d\.json"',
                            everything.headers["Content-Disposition"])
        # Another owner imports it, and exports the same bytes.
        made = imported(post_file(other, everything.content))
        assert (made["imported"], made["skipped"]) == (4, 0)
        assert [c["title"] for c in made["conversations"]] == [
            "Rust vs Python: café ☕ <b>", "Stopped", "Failed", ""]
        # A title the file brings is never written over by the model; none: named later.
        assert [c["title_source"] for c in made["conversations"]] == [
            "user", "user", "user", "none"]
        assert other.get(EXPORT_ALL).content == everything.content
        assert sorted(c["id"] for c in listed(other)) == sorted(
            c["id"] for c in made["conversations"])

        # One conversation: its file, imported, exported again.
        one = client.get(export_url(ids[0]))
        assert one.status_code == 200
        assert one.headers["Content-Disposition"] == (
            "attachment; filename=\"Rust vs Python cafe b.json\"; "
            "filename*=UTF-8''Rust%20vs%20Python%20caf%C3%A9%20%E2%98%95%20b.json")
        copy = imported(post_file(third, one.content))["conversations"][0]["id"]
        assert third.get(export_url(copy)).content == one.content
        # The same import twice makes two copies, as a user who imports twice expects.
        imported(post_file(third, one.content))
        assert len(listed(third)) == 2

    document = json.loads(everything.content)
    assert document["format"] == "brook.conversations"
    assert document["version"] == 1
    renamed, stopped, failed, empty = document["conversations"]  # oldest first
    # Nothing of where they were stored: no ids, no owner.
    assert set(renamed) == {"title", "created_at", "updated_at", "messages"}
    assert not re.search(r'"(id|owner|conversation_id|position)":', everything.text)
    assert [m["role"] for m in renamed["messages"]] == ["user", "assistant"] * 2
    question, answer = renamed["messages"][:2]
    assert question == {"role": "user",
                        "content": "Compare Rust and Python — briefly, s'il vous plaît",
                        "status": "complete", "created_at": question["created_at"]}
    assert answer["content"].startswith("Rust is fast; Python is friendly ☕.")
    assert (answer["status"], answer["model"]) == ("complete", "fake-gpt")
    assert answer["usage"]["completion_tokens"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", answer["created_at"])
    assert stopped["messages"][1]["status"] == "stopped"
    assert stopped["messages"][1]["content"]
    assert failed["messages"][1]["status"] == "error"
    assert set(failed["messages"][1]["error"]) == {"code", "message"}
    assert empty == {"title": "", "created_at": empty["created_at"],
                     "updated_at": empty["updated_at"], "messages": []}
    # UTF-8 as it is, two spaces of indent, one newline at the end.
    assert "café ☕" in everything.content.decode("utf-8")
    assert everything.content.endswith(b"\n}\n")


def canonical(conversations: list[dict[str, Any]]) -> bytes:
    return (json.dumps({"format": "brook.conversations", "version": 1,
                        "conversations": conversations},
                       ensure_ascii=False, indent=2) + "\n").encode()


# A document as Brook writes it, with every optional part and every final status.
WRITTEN: list[dict[str, Any]] = [
    {"title": "Ünïcödé 日本語 and emoji 🎉", "created_at": "2001-02-03T04:05:06.000007Z",
     "updated_at": "2001-02-03T04:06:00.000000Z", "model": "gpt-5",
     "system_prompt": "Answer in French.\n\nBriefly.", "temperature": 0.7, "messages": [
         {"role": "user", "content": "  Spaces kept,\n\nnew lines too. ", "status": "complete",
          "created_at": "2001-02-03T04:05:06.000007Z"},
         {"role": "assistant", "content": "An answer.", "reasoning": "First, think.",
          "status": "complete", "created_at": "2001-02-03T04:05:07.500000Z",
          "model": "gpt-5", "usage": {"prompt_tokens": 12, "completion_tokens": None}},
         {"role": "user", "content": "Again", "status": "complete",
          "created_at": "2001-02-03T04:05:30.000000Z"},
         {"role": "assistant", "content": "", "status": "error",
          "created_at": "2001-02-03T04:05:31.000000Z", "model": "gpt-5",
          "error": {"code": "upstream_error", "message": "The model failed."}},
     ]},
    {"title": "Cut short", "created_at": "2030-12-31T23:59:59.999999Z",
     "updated_at": "2031-01-01T00:00:00.000000Z", "messages": [
         {"role": "user", "content": "Long one", "status": "complete",
          "created_at": "2030-12-31T23:59:59.999999Z"},
         {"role": "assistant", "content": "Half", "status": "interrupted",
          "created_at": "2031-01-01T00:00:00.000000Z"},
         {"role": "assistant", "content": "Stopped", "status": "stopped",
          "created_at": "2031-01-01T00:00:00.000000Z",
          "usage": {"prompt_tokens": 2147483647, "completion_tokens": 0}},
     ]},
]


def test_a_document_as_brook_writes_it_comes_back_the_same(client: httpx.Client) -> None:
    written = canonical(WRITTEN)
    made = imported(post_file(client, written))
    assert made["imported"] == 2
    assert client.get(EXPORT_ALL).content == written
    # Its settings are the conversation's own, as the API shows them.
    settled = next(c for c in made["conversations"] if c["title"].startswith("Ünïcödé"))
    shown = client.get(f"/api/conversations/{settled['id']}").json()
    assert (shown["model"], shown["system_prompt"], shown["temperature"]) == (
        "gpt-5", "Answer in French.\n\nBriefly.", 0.7)
    # Times with other offsets, in another order, with whitespace in titles: the same
    # conversations, written as Brook writes them.
    shuffled = json.loads(written)
    shuffled["conversations"].reverse()
    first = shuffled["conversations"][1]
    first["title"] = "  Ünïcödé   日本語 and\nemoji 🎉 "
    first["created_at"] = "2001-02-03T05:05:06.000007+01:00"
    with httpx.Client(base_url=str(client.base_url), timeout=20) as other:
        imported(post_file(other, json.dumps(shuffled, indent=None)))
        assert other.get(EXPORT_ALL).content == written


def test_markdown_export(live: LiveServer, fake: FakeModelServer) -> None:
    with live.client() as client:
        ids = seed(client, fake)
        first = client.get(export_url(ids[0], "markdown"))
        stopped = client.get(export_url(ids[1], "markdown")).text
        failed = client.get(export_url(ids[2], "markdown")).text
        untitled = client.get(export_url(ids[3], "markdown"))
        everything = client.get(EXPORT_ALL + "?format=markdown").text
        for bad in ("pdf", "", "JSON", "json&format=markdown"):
            response = client.get(export_url(ids[0], bad))
            assert response.status_code == 400, bad
            assert response.json()["error"]["code"] == "invalid_format"
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "text/markdown; charset=utf-8"
    # The title as the file's name: ASCII for every browser, UTF-8 for those that read it.
    assert first.headers["Content-Disposition"] == (
        "attachment; filename=\"Rust vs Python cafe b.md\"; "
        "filename*=UTF-8''Rust%20vs%20Python%20caf%C3%A9%20%E2%98%95%20b.md")
    transcript = first.text
    assert transcript.startswith("# Rust vs Python: café ☕ \\<b\\>\n\n*Exported from Brook. "
                                 "Started ")
    assert "\n## You\n\nCompare Rust and Python — briefly, s'il vous plaît\n\n" in transcript
    assert "\n## Assistant (fake-gpt)\n\nRust is fast; Python is friendly ☕. **Both** are " \
           "fine.\n\n```python\nprint('héllo')\n```\n\n" in transcript
    assert transcript.count("## You") == 2
    assert "*Stopped before it was finished.*" in stopped
    assert "*Error: " in failed
    assert untitled.text.startswith("# Untitled chat\n")
    assert untitled.headers["Content-Disposition"] == 'attachment; filename="Untitled chat.md"'
    assert everything.count("\n---\n\n# ") == 3


def test_file_names_are_safe() -> None:
    from brook.api.transfer import file_name

    assert file_name("Plain title", "json") == 'attachment; filename="Plain title.json"'
    assert file_name('../../etc/passwd "x"\r\nSet-Cookie: a=b', "md") == (
        'attachment; filename="etc passwd x Set-Cookie a b.md"; '
        "filename*=UTF-8''etc%20passwd%20x%20Set-Cookie%20a%3Db.md")
    assert file_name("...", "md") == 'attachment; filename="conversation.md"'
    assert file_name("日本語", "json") == (
        "attachment; filename=\"conversation.json\"; "
        "filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.json")


# -- ChatGPT's export ---------------------------------------------------------------------------

def test_a_chatgpt_export_imports(client: httpx.Client, fake: FakeModelServer) -> None:
    made = imported(post_file(client, FIXTURE.read_bytes()))
    assert (made["imported"], made["skipped"]) == (4, 1)  # one has only a system prompt
    titles = [c["title"] for c in made["conversations"]]
    # No title: named by its first message, as Brook names a chat.
    assert titles == ["Plan a trip to Kyoto 🏯", "Cat picture and a sum",
                      "Résumé — naïve café 日本語", "Is a tomato a fruit?"]
    got = [client.get(f"/api/conversations/{c['id']}").json() for c in made["conversations"]]
    assert got[0]["created_at"] == "2024-12-05T15:20:00.123456Z"
    assert got[0]["updated_at"] == "2024-12-05T15:30:00.500000Z"

    def brief(conversation: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
        return [(m["role"], m["content"], m["status"], m["model"])
                for m in conversation["messages"]]

    # The shown branch (the regenerated answer, not the first); no system prompt, custom
    # instructions, tool call or browsing result.
    assert brief(got[0]) == [
        ("user", "Plan three days in Kyoto for me.", "complete", None),
        ("assistant", "**Day 1**: Fushimi Inari at dawn, then Gion.\n**Day 2**: Arashiyama's "
                      "bamboo grove.\n**Day 3**: Kinkaku-ji and Nishiki Market.",
         "complete", "gpt-4o"),
        ("user", "What about food? 🍜", "complete", None),
        ("assistant", "Try *kaiseki* in Gion, yudofu near Nanzen-ji, and matcha sweets in Uji.",
         "complete", "gpt-4o")]
    assert [m["created_at"] for m in got[0]["messages"]] == [
        "2024-12-05T15:20:01Z", "2024-12-05T15:20:50.250000Z", "2024-12-05T15:28:20Z",
        "2024-12-05T15:30:00.500000Z"]
    # The image part left out; the text around a code run joined into one answer.
    assert brief(got[1]) == [
        ("user", "What is in this picture?", "complete", None),
        ("assistant", "A cat sleeping on a keyboard.", "complete", "gpt-4o"),
        ("user", f"Compute 6 {TIMES} 7 in Python.", "complete", None),
        ("assistant", "Let me run that.\n\nThe result is **42**.", "complete", "o3")]
    # Unicode kept; an answer ChatGPT left unfinished is stopped.
    assert brief(got[2]) == [
        ("user", "Translate “good morning” into Japanese and Greek.", "complete", None),
        ("assistant", f"おはようございます (ohayō gozaimasu)\n\n{KALIMERA} (kaliméra) ☀️",
         "stopped", "gpt-4o")]
    # A message with no time takes the one before it (here the conversation's).
    assert got[3]["messages"][0]["created_at"] == "2024-12-10T03:06:40Z"
    assert got[3]["messages"][0]["content"] == "  Is a tomato a fruit?  "

    # An imported conversation is a conversation like any other: it can go on.
    sent = send(client, got[3]["id"], "And a cucumber?")
    assert wait_for_answer(client, got[3]["id"],
                           sent["assistant_message"]["id"])["status"] == "complete"
    history = fake.requests[-1]["body"]["messages"]
    assert [m["content"] for m in history[-3:]] == [
        "  Is a tomato a fruit?  ", "Botanically, yes; in the kitchen, a vegetable.",
        "And a cucumber?"]
    # And Brook's export of it imports again, the same.
    one = client.get(export_url(got[2]["id"])).content
    again = imported(post_file(client, one))["conversations"][0]["id"]
    assert client.get(export_url(again)).content == one


# -- owners ---------------------------------------------------------------------------------------

def test_imports_belong_to_the_importer_and_exports_to_the_owner(live: LiveServer) -> None:
    with live.client() as alice, live.client() as bob:
        made = imported(post_file(alice, FIXTURE.read_bytes()))
        mine = made["conversations"][0]["id"]
        assert listed(bob) == []
        for url in (export_url(mine), export_url(mine, "markdown")):
            response = bob.get(url)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
        assert bob.get(export_url(str(uuid.uuid4()))).status_code == 404
        assert json.loads(bob.get(EXPORT_ALL).content)["conversations"] == []
        assert len(json.loads(alice.get(EXPORT_ALL).content)["conversations"]) == 4
        # A request from another site's page is refused before anything is read.
        response = alice.post(IMPORT, content=FIXTURE.read_bytes(),
                              headers={"Content-Type": "application/json",
                                       "Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 403
        assert len(listed(alice)) == 4


# -- bad files ------------------------------------------------------------------------------------

def brook_message(**fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": "Hi", "status": "complete",
            "created_at": "2025-01-02T03:04:05.000006Z", **fields}


def brook_file(*last: dict[str, Any], **top: Any) -> str:
    """A Brook document whose first conversation is fine and whose last holds `last`."""
    good = {"title": "Fine", "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-01T00:00:00Z", "messages": [brook_message()]}
    bad = {"title": "Bad", "created_at": "2025-01-01T00:00:00Z",
           "updated_at": "2025-01-01T00:00:00Z", "messages": list(last)}
    return json.dumps({"format": "brook.conversations", "version": 1,
                       "conversations": [good, bad], **top})


def with_settings(**settings: Any) -> str:
    """A Brook document whose last conversation has these settings."""
    document = json.loads(brook_file(brook_message()))
    document["conversations"][-1].update(settings)
    return json.dumps(document)


def chatgpt_file(mapping: dict[str, Any], current: str | None) -> str:
    good = json.loads(FIXTURE.read_text())[0]
    return json.dumps([good, {"title": "Bad", "create_time": 1.0, "update_time": 2.0,
                              "mapping": mapping, "current_node": current}])


def chatgpt_node(parent: str | None, text: str = "Hi") -> dict[str, Any]:
    return {"message": {"author": {"role": "user"}, "content": {"content_type": "text",
                                                                "parts": [text]}},
            "parent": parent, "children": []}


def many_conversations(n: int) -> str:
    return json.dumps({"format": "brook.conversations", "version": 1, "conversations": [
        {"title": "", "created_at": "2025-01-01T00:00:00Z",
         "updated_at": "2025-01-01T00:00:00Z", "messages": []}] * n})


BAD_FILES: list[tuple[str, bytes | str, int, str]] = [
    ("empty", "", 400, "invalid_json"),
    ("whitespace", " \n", 400, "invalid_json"),
    ("not JSON", "{not json", 400, "invalid_json"),
    ("cut short", brook_file(brook_message())[:-20], 400, "invalid_json"),
    ("not UTF-8", b'{"format": "\xff"}', 400, "invalid_json"),
    ("a lone surrogate", brook_file(brook_message(content="\\ud800")).replace(
        "\\\\ud800", "\\ud800"), 400, "invalid_json"),
    ("a number", "42", 422, "unknown_format"),
    ("a string", '"conversations"', 422, "unknown_format"),
    ("another app's object", '{"messages": []}', 422, "unknown_format"),
    ("another format", brook_file(format="other.app"), 422, "unknown_format"),
    ("a later version", brook_file(version=2), 422, "unsupported_version"),
    ("no version", brook_file().replace('"version": 1, ', ""), 422, "unsupported_version"),
    ("no conversations", many_conversations(0), 422, "empty_import"),
    ("an empty ChatGPT list", "[]", 422, "empty_import"),
    ("conversations not a list",
     '{"format": "brook.conversations", "version": 1, "conversations": "x"}',
     422, "invalid_field"),
    ("an unknown field", brook_file(brook_message(owner="anon:x")), 422, "unknown_field"),
    ("an unknown top field", brook_file(id="x"), 422, "unknown_field"),
    ("a field missing", brook_file({"role": "user", "content": "Hi", "status": "complete"}),
     422, "missing_field"),
    ("a wrong role", brook_file(brook_message(role="system")), 422, "invalid_field"),
    ("content not text", brook_file(brook_message(content=42)), 422, "invalid_field"),
    ("a time without offset", brook_file(brook_message(created_at="2025-01-02T03:04:05")),
     422, "invalid_field"),
    ("not a time", brook_file(brook_message(created_at="yesterday")), 422, "invalid_field"),
    ("a time out of range", brook_file(brook_message(created_at="0001-01-01T00:00:00+01:00")),
     422, "invalid_timestamp"),
    ("still streaming", brook_file(brook_message(role="assistant", status="streaming")),
     422, "unfinished_message"),
    ("a NUL in a message", brook_file(brook_message(content="a\u0000b")), 422, "nul_character"),
    ("a NUL in a title", brook_file().replace('"Bad"', '"B\\u0000ad"'), 422, "nul_character"),
    ("tokens out of range", brook_file(brook_message(usage={"prompt_tokens": 2**31})),
     422, "invalid_field"),
    ("a title too long", brook_file().replace('"Bad"', json.dumps("x" * 201)), 422,
     "title_too_long"),
    ("a model id with a space", with_settings(model="a b"), 422, "invalid_field"),
    ("an empty system prompt", with_settings(system_prompt=""), 422, "invalid_field"),
    ("a blank system prompt", with_settings(system_prompt=" \n "), 422, "invalid_field"),
    ("a system prompt too long", with_settings(system_prompt="x" * 8_001), 422,
     "invalid_field"),
    ("a NUL in a system prompt", with_settings(system_prompt="a\u0000b"), 422,
     "nul_character"),
    ("a temperature too high", with_settings(temperature=2.5), 422, "invalid_field"),
    ("a temperature as text", with_settings(temperature="0.5"), 422, "invalid_field"),
    ("a temperature as true", with_settings(temperature=True), 422, "invalid_field"),
    ("a message too long", brook_file(brook_message(content="x" * (MAX_TEXT_CHARS + 1))),
     422, "message_too_long"),
    ("too many messages", brook_file(*[brook_message()] * (MAX_MESSAGES + 1)), 422,
     "too_many_messages"),
    ("too many conversations", many_conversations(MAX_CONVERSATIONS + 1), 422,
     "too_many_conversations"),
    ("ChatGPT: current node missing", chatgpt_file({"a": chatgpt_node(None)}, "b"), 422,
     "invalid_conversation"),
    ("ChatGPT: a parent missing", chatgpt_file({"a": chatgpt_node("z")}, "a"), 422,
     "invalid_conversation"),
    ("ChatGPT: parents in a loop",
     chatgpt_file({"a": chatgpt_node("b"), "b": chatgpt_node("a")}, "a"), 422,
     "invalid_conversation"),
    ("ChatGPT: a NUL", chatgpt_file({"a": chatgpt_node(None, "x\u0000")}, "a"), 422,
     "nul_character"),
    ("ChatGPT: no mapping", '[{"title": "x", "current_node": null}]', 422, "missing_field"),
    ("ChatGPT: nothing to import", json.dumps([json.loads(FIXTURE.read_text())[3]]), 422,
     "empty_import"),
]


def test_bad_files_are_refused_and_nothing_is_stored(live: LiveServer,
                                                     database_url: str) -> None:
    with live.client() as client:
        for name, body, status, code in BAD_FILES:
            response = post_file(client, body)
            assert (response.status_code, response.json()["error"]["code"]) == (
                status, code), f"{name}: {response.text[:300]}"
            message = response.json()["error"]["message"]
            assert message, name
            assert "Traceback" not in message, name
            if name in ("a wrong role", "a field missing", "still streaming"):
                assert message.startswith("In conversation 2, message 1"), message
        # Not sent as JSON: 415, as for every request body of the API.
        for content_type in ("text/plain", "multipart/form-data; boundary=x",
                             "application/x-www-form-urlencoded"):
            response = post_file(client, FIXTURE.read_bytes(), content_type)
            assert response.status_code == 415
            assert response.json()["error"]["code"] == "unsupported_media_type"
        assert listed(client) == []
    assert stored_rows(database_url) == (0, 0)


def test_an_oversized_file_is_413(live: LiveServer, database_url: str) -> None:
    def sized(size: int) -> bytes:
        """A Brook file of `size` bytes: its last message as long as that takes."""
        body = brook_file(brook_message(content="x")).encode()
        grown = body.replace(b'"x"', b'"' + b"x" * (size - len(body) + 1) + b'"')
        assert len(grown) == size
        return grown

    big = sized(MAX_IMPORT_BYTES + 1)
    with live.client() as client:
        # At the bound, the file is read (and its message refused as too long).
        response = post_file(client, sized(MAX_IMPORT_BYTES))
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "message_too_long"

        response = post_file(client, big)
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "request_entity_too_large"
        assert "20 MB" in error["message"]

        # Sent in chunks, with no Content-Length: refused once it has read past the bound.
        def chunks() -> Iterator[bytes]:
            for start in range(0, len(big), 1 << 20):
                yield big[start:start + (1 << 20)]

        response = client.post(IMPORT, content=chunks(),
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert listed(client) == []
    assert stored_rows(database_url) == (0, 0)


def test_a_failure_while_storing_leaves_nothing(
        make_app: AppFactory, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(database_url)
    chat = app.extensions["brook.chat"]
    def failing(table: Any) -> Any:
        if table is transfer.MESSAGES:
            raise RuntimeError("the database went away")
        return insert(table)

    monkeypatch.setattr(transfer, "insert", failing)
    with app.extensions["brook.sessions"]() as session, pytest.raises(RuntimeError):
        chat.import_file(session, "anon:someone", FIXTURE.read_bytes())
    assert stored_rows(database_url) == (0, 0)


# -- limits ---------------------------------------------------------------------------------------

def test_imports_count_against_the_stored_conversations(
        make_app: AppFactory, serve: Serve, database_url: str) -> None:
    live = serve(make_app(database_url, LIMIT_STORED_CONVERSATIONS="3",
                          LIMIT_CONVERSATIONS_PER_DAY="2"))
    three = canonical([*WRITTEN, {**WRITTEN[1], "title": "Third"}])
    with live.client() as client:
        new_conversation(client)
        response = post_file(client, three)
        assert response.status_code == 429, response.text
        assert int(response.headers["Retry-After"]) >= 1
        error = response.json()["error"]
        assert (error["code"], error["limit"], error["limit_value"], error["resets_at"]) == (
            "limit_exceeded", "stored_conversations", 3, None)
        assert error["message"] == ("You may keep 3 conversations and have 1; this file would "
                                    "add 3. Delete some, or import fewer.")
        assert len(listed(client)) == 1  # nothing of the file stored
        assert imported(post_file(client, canonical(WRITTEN)))["imported"] == 2
        # Imports are not conversations started today: one of today's two is left...
        usage = client.get("/api/usage").json()["limits"]
        assert usage["conversations_per_day"]["used"] == 1
        assert usage["stored_conversations"]["used"] == 3
        # ... but there is no room to keep it.
        response = client.post("/api/conversations", json={})
        assert response.status_code == 429
        assert response.json()["error"]["limit"] == "stored_conversations"
        assert post_file(client, canonical(WRITTEN[:1])).status_code == 429


# -- the page -------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_export_and_import_in_the_page(
        make_app: AppFactory, serve: Serve, sqlite_url: str, page: Page, tmp_path: Path,
        scheme: Literal["light", "dark"]) -> None:
    live = serve(make_app(sqlite_url))
    errors = open_page(page, live, scheme)
    menu_button = page.get_by_role("button", name="Export", exact=True)
    expect(menu_button).to_be_hidden()  # a new chat has nothing to export
    prompt = page.locator("#prompt")
    prompt.fill("Naïve question ☕")
    prompt.press("Enter")
    expect(page.locator('.message[data-role="assistant"]')).to_have_attribute(
        "data-status", "complete")

    # The conversation, as Markdown: the menu by mouse.
    expect(menu_button).to_be_visible()
    menu_button.click()
    expect(menu_button).to_have_attribute("aria-expanded", "true")
    menu = page.get_by_role("menu", name="Export as")
    expect(menu.get_by_role("menuitem", name="Markdown (.md)")).to_be_focused()
    assert axe_violations(page, live) == []
    with page.expect_download() as download:
        menu.get_by_role("menuitem", name="Markdown (.md)").click()
    assert download.value.suggested_filename == "Naïve question ☕.md"
    transcript = Path(download.value.path()).read_text(encoding="utf-8")
    assert transcript.startswith("# Naïve question ☕\n")
    assert "Hello from the fake model." in transcript
    expect(menu).to_be_hidden()
    expect(menu_button).to_be_focused()

    # As JSON: the menu by keyboard.
    menu_button.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Markdown (.md)")).to_be_focused()
    page.keyboard.press("ArrowDown")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename == "Naïve question ☕.json"
    one = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert [m["role"] for m in one["conversations"][0]["messages"]] == ["user", "assistant"]
    menu_button.press("Enter")
    expect(menu).to_be_visible()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(menu_button).to_be_focused()

    # All of them.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export all").click()
    assert re.fullmatch(r"Brook conversations \d{4}-\d\d-\d\d\.json",
                        download.value.suggested_filename)
    assert len(json.loads(Path(download.value.path()).read_bytes())["conversations"]) == 1

    # Import ChatGPT's file: the list shows what it made, and the page says how many.
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import").click()
    chooser.value.set_files(FIXTURE)
    status = page.locator("#import-status")
    expect(status).to_have_text("Imported 4 conversations from “chatgpt_conversations.json”. "
                                "1 conversation had nothing to import.")
    items = page.locator("#conversation-list button.conversation")
    expect(items).to_have_count(5)
    expect(page.locator("#conversation-list")).to_contain_text("Plan a trip to Kyoto 🏯")
    page.locator("#conversation-list button.conversation",
                 has_text="Résumé — naïve café 日本語").click()
    expect(page.locator(".message .content")).to_have_text([
        "Translate “good morning” into Japanese and Greek.",
        f"おはようございます (ohayō gozaimasu)\n{KALIMERA} (kaliméra) ☀️"])

    # A bad file: the server's reason, in plain words; nothing imported.
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import").click()
    chooser.value.set_files(FilePayload(
        name="notes.json", mimeType="application/json",
        buffer=b'{"format": "brook.conversations", "version": 7, "conversations": []}'))
    notice = page.locator("#notice")
    expect(notice).to_have_text("Could not import “notes.json”: This Brook export is version "
                                "7; this Brook imports version 1.")
    expect(items).to_have_count(5)
    assert axe_violations(page, live) == []
    assert errors == []


@pytest.mark.browser
def test_hostile_imported_titles_and_messages_stay_inert(
        make_app: AppFactory, serve: Serve, sqlite_url: str, page: Page) -> None:
    """The XSS corpus as imported titles and as imported answers, rendered from the database."""
    live = serve(make_app(sqlite_url))
    when = "2025-06-01T12:00:00.000000Z"
    messages: list[dict[str, Any]] = []
    for index, (_, payload) in enumerate(PAYLOADS):
        messages += [{"role": "user", "content": f"Payload {index}", "status": "complete",
                      "created_at": when},
                     {"role": "assistant", "content": payload, "status": "complete",
                      "created_at": when}]
    conversations: list[dict[str, Any]] = [
        {"title": payload, "created_at": when, "updated_at": when, "messages": []}
        for _, payload in PAYLOADS]
    conversations.append({"title": "The corpus as answers", "created_at": when,
                          "updated_at": "2025-06-02T00:00:00.000000Z", "messages": messages})
    watch = Watch(live.url)
    watch.attach(page)
    page.add_init_script(INSTRUMENT)
    page.goto(live.url + "/")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import").click()
    chooser.value.set_files(FilePayload(name="corpus.json", mimeType="application/json",
                                        buffer=canonical(conversations)))
    expect(page.locator("#import-status")).to_contain_text(
        f"Imported {len(PAYLOADS) + 1} conversations")
    items = page.locator("#conversation-list button.conversation")
    expect(items).to_have_count(len(PAYLOADS) + 1)
    # Each title is text: shown as written (whitespace runs as one space), no element in it.
    shown = items.evaluate_all(
        "buttons => buttons.map(b => [b.textContent, b.childElementCount])")
    expected = {" ".join(payload.split()) for _, payload in PAYLOADS}
    assert {title for title, _ in shown} == expected | {"The corpus as answers"}
    assert all(children == 0 for _, children in shown)
    check_page(page, watch, "the imported titles in the list")

    page.locator("#conversation-list button.conversation",
                 has_text="The corpus as answers").click()
    answers = page.locator('.message[data-role="assistant"]')
    expect(answers).to_have_count(len(PAYLOADS), timeout=15_000)
    # Every answer rendered as Markdown (older ones are upgraded from plain text in idle
    # time, js/backlog.js), each change watched by INSTRUMENT on the way.
    expect(page.locator("#messages")).not_to_have_attribute("aria-busy", "true",
                                                            timeout=15_000)
    check_answers(page, list(range(len(PAYLOADS))))
    check_page(page, watch, f"all {len(PAYLOADS)} payloads imported as answers")
    # A hostile title of the conversation open: the heading and the tab's title are text.
    hostile = page.locator("#conversation-list button.conversation").nth(1)
    title = hostile.text_content() or ""
    hostile.click()
    heading = page.locator("#conversation-title")
    expect(heading).to_have_text(title)
    assert heading.evaluate("h => h.childElementCount") == 0
    expect(page).to_have_title(f"{title} · Brook")
    assert watch.findings() == {}
