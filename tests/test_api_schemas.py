"""The API's models and document generator, without a server: request bodies get Brook's
error codes, timestamps leave in UTC, and the document refuses an undescribed route."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Blueprint, Flask
from openapi_spec_validator import validate

from brook.api import bp as api_blueprint
from brook.api import openapi, schemas
from brook.api.requests import json_body, whole_numbers
from brook.errors import APIError

CONTEXT = {"max_message_chars": 10}


def _refusal(app: Flask, model: type[schemas.Body], **request: Any) -> tuple[int, str]:
    with app.test_request_context("/", method="POST", **request), \
            pytest.raises(APIError) as refused:
        json_body(model, context=CONTEXT)
    return refused.value.status, refused.value.code


@pytest.mark.parametrize(("request_", "status", "code"), [
    ({"json": {}}, 422, "missing_field"),
    ({"data": "", "content_type": "application/json"}, 422, "missing_field"),
    ({"json": {"content": " \t\u3000\x1f"}}, 422, "empty_message"),
    ({"json": {"content": "x" * 11}}, 422, "message_too_long"),
    ({"json": {"content": "a\x00b"}}, 422, "nul_character"),
    ({"json": {"content": 1}}, 422, "invalid_field"),
    ({"json": {"content": None}}, 422, "invalid_field"),
    ({"json": {"content": "hi", "role": "x", "a": 1}}, 422, "unknown_field"),
    ({"json": ["hi"]}, 400, "invalid_json"),
    ({"data": " \n", "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": "{", "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": "content=hi", "content_type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    ({"data": ""}, 415, "unsupported_media_type"),  # a body is required here
])
def test_a_message_body_is_refused_with_its_code(request_: dict[str, Any], status: int,
                                                 code: str) -> None:
    assert _refusal(Flask(__name__), schemas.MessageBody, **request_) == (status, code)


def test_bodies_are_read_strictly_and_titles_tidied() -> None:
    app = Flask(__name__)
    with app.test_request_context("/", method="POST", json={"content": " hi "}):
        assert json_body(schemas.MessageBody, context=CONTEXT).content == " hi "
    with app.test_request_context("/", method="POST", json={"title": "  a \n b "}):
        assert json_body(schemas.ConversationUpdate).title == "a b"
    with app.test_request_context("/", method="POST"):  # an optional body may be absent
        assert json_body(schemas.NewConversation, required=False).title == ""
        assert json_body(schemas.NoBody, required=False) == schemas.NoBody()
    update = schemas.ConversationUpdate
    assert _refusal(app, update, json={"title": "t" * 201}) == (422, "title_too_long")
    assert _refusal(app, update, json={"title": "\u2028"}) == (422, "empty_title")
    with app.test_request_context("/", method="POST", data="x", content_type="text/plain"), \
            pytest.raises(APIError, match="JSON"):
        json_body(schemas.NoBody, required=False)


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=1&limit=2", "limit=",
                                   "limit=%EF%BC%95", "limit=1.0", "limit=" + "9" * 19])
def test_query_numbers_are_whole_given_once_and_in_bounds(query: str) -> None:
    with Flask(__name__).test_request_context("/?" + query), pytest.raises(APIError) as bad:
        whole_numbers(schemas.ListQuery, "invalid_limit", "no")
    assert (bad.value.status, bad.value.code) == (400, "invalid_limit")
    with Flask(__name__).test_request_context("/?limit=007"):
        assert whole_numbers(schemas.ListQuery, "invalid_limit", "no").limit == 7


def test_blank_means_the_same_to_the_document_and_the_server() -> None:
    """JSON Schema's `\\s` is ECMAScript's; the document spells out Python's instead."""
    blank = {chr(c) for c in range(0x110000) if not re.search(schemas.NOT_BLANK, chr(c))}
    assert blank == {chr(c) for c in range(0x110000) if chr(c).isspace()}


def test_timestamps_leave_in_utc_with_an_offset() -> None:
    naive = datetime(2026, 12, 4, 15, 9, 40, 889433)  # as SQLite gives it back
    aware = datetime(2026, 12, 4, 16, 9, 40, 889433, tzinfo=timezone(timedelta(hours=1)))
    for stamp in (naive, aware):
        sent = schemas.Conversation(id=uuid.uuid4(), title="", title_source="none", model=None,
                                    system_prompt=None, temperature=None, created_at=stamp,
                                    updated_at=stamp).model_dump(mode="json")
        assert sent["created_at"] == "2026-12-04T15:09:40.889433Z"


def test_a_route_without_a_description_fails_the_document() -> None:
    app = Flask(__name__)
    app.config["BROOK_SETTINGS"] = SimpleNamespace(max_message_chars=10)
    api = Blueprint("api", __name__)
    api.add_url_rule("/api/undescribed", "undescribed", lambda: "")
    app.register_blueprint(api)
    with pytest.raises(LookupError, match="undescribed"):
        openapi.build(app)


def test_the_document_is_valid_openapi() -> None:
    app = Flask(__name__)
    app.config["BROOK_SETTINGS"] = SimpleNamespace(max_message_chars=32_000)
    app.extensions["brook.chat"] = SimpleNamespace(model_list=lambda: [{"id": "gpt-a"},
                                                                       {"id": "llama"}])
    app.register_blueprint(api_blueprint)
    document = openapi.build(app)
    validate(document)  # raises on anything OpenAPI 3.1 does not allow
    content = document["components"]["schemas"]["MessageBody"]["properties"]["content"]
    assert content["maxLength"] == 32_000  # this deployment's MAX_MESSAGE_CHARS
    for body in ("NewConversation", "ConversationUpdate"):  # ... and its models
        model = document["components"]["schemas"][body]["properties"]["model"]
        assert model["enum"] == ["gpt-a", "llama"]
