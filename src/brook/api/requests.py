"""Reading request bodies strictly: every malformed input gets a clear 4xx and stores nothing."""

from __future__ import annotations

from typing import Any

from flask import request

from ..errors import APIError


def json_body(fields: dict[str, type]) -> dict[str, Any]:
    """The request's JSON object, with only `fields`, each of its type (missing ones omitted).

    A POST or PATCH must say `Content-Type: application/json`: a cross-site HTML form cannot
    send that, which is part of Brook's CSRF defence.
    """
    if not request.is_json:
        raise APIError(415, "unsupported_media_type",
                       "Send the request body as JSON with Content-Type: application/json.")
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    body = request.get_json(silent=True)
    if body is None:
        raise APIError(400, "invalid_json", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "The request body must be a JSON object.")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise APIError(422, "unknown_field", f"Unknown field: {unknown[0]}.")
    for name, kind in fields.items():
        if name in body and not isinstance(body[name], kind):
            raise APIError(422, "invalid_field",
                           f"The field {name} must be a {_type_name(kind)}.")
    return body


def _type_name(kind: type) -> str:
    return {str: "string", int: "number", bool: "boolean"}.get(kind, kind.__name__)


def message_content(body: dict[str, Any], limit: int) -> str:
    """The `content` of a message body: present, not blank, at most `limit` characters."""
    content: str | None = body.get("content")
    if content is None:
        raise APIError(422, "missing_field", "Send the message text in the field content.")
    if not content.strip():
        raise APIError(422, "empty_message", "The message is empty.")
    if len(content) > limit:
        raise APIError(422, "message_too_long",
                       f"The message is {len(content):,} characters long; the limit is "
                       f"{limit:,}.")
    return content


def title_from(value: str) -> str:
    title = " ".join(value.split())
    if not title:
        raise APIError(422, "empty_title", "The title cannot be empty.")
    if len(title) > 200:
        raise APIError(422, "title_too_long", "The title can be at most 200 characters.")
    return title
