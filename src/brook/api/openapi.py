"""The OpenAPI 3.1 document, generated from the routes and the models of schemas.py.

Each view says what it takes and answers with `@operation(...)`; the document walks the
app's URL map, so a route without a description fails the document (and its test) instead of
going undocumented. The schemas are pydantic's own JSON Schema for the same models that
validate requests and shape responses.

A Flask integration (flask-openapi3, spectree) was weighed: each wants its own app or
blueprint class and answers validation errors in its own shape with one status, where Brook
keeps distinct codes (415, 400 `invalid_json`, 422 `missing_field`, ...) that its page and
tests rely on. The generator below is the small part of one that Brook needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Flask, Response, current_app
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from . import bp, schemas

F = TypeVar("F", bound=Callable[..., Any])

REF = "#/components/schemas/{model}"
SAFE = {"GET", "HEAD", "OPTIONS"}
DESCRIPTION = """\
Conversations, messages and streamed answers. Every operation acts for the current owner \
(an anonymous, signed cookie, the App Service signed-in principal, or the user signed in \
with OpenID Connect at /auth/login, a browser route outside this API): another owner's \
conversation or message is a 404. Request bodies are JSON (`Content-Type: \
application/json`). Requests that change data and come from another site (`Sec-Fetch-Site`, \
or `Origin`) get 403 `cross_site_request`. A 503 carries `Retry-After`: try again after that \
many seconds; nothing was stored. Timestamps are RFC 3339 in UTC.\
"""


@dataclass(frozen=True)
class Link:
    """A value of one response that another operation takes: OpenAPI links, which also lead
    stateful API testers from a created resource to the operations on it."""

    operation_id: str
    parameter: str
    source: str  # a JSON pointer into the response body


@dataclass(frozen=True)
class Operation:
    id: str
    summary: str
    ok: tuple[int, str, type[BaseModel] | None]  # status, description, body
    errors: dict[int, str] = field(default_factory=dict)  # status: the codes, and when
    description: str | None = None
    body: type[BaseModel] | None = None  # a schemas.Body; or a RootModel (a file's JSON)
    body_required: bool = True
    query: type[BaseModel] | None = None
    headers: tuple[dict[str, Any], ...] = ()
    links: tuple[Link, ...] = ()
    media: Literal["application/json", "text/event-stream"] = "application/json"
    # More media types of the OK response than its model's JSON (a download's Markdown):
    # {media type: its OpenAPI media type object}; and the OK response's headers.
    also: dict[str, dict[str, Any]] = field(default_factory=dict)
    ok_headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    uses_database: bool = True


OPERATIONS: dict[str, Operation] = {}


def operation(**spec: Any) -> Callable[[F], F]:
    """Describe a view of the API blueprint for the document (see `Operation`)."""
    def describe(view: F) -> F:
        OPERATIONS[f"{bp.name}.{view.__name__}"] = Operation(**spec)
        return view
    return describe


def links_to(source: str, parameter: str, *operation_ids: str) -> tuple[Link, ...]:
    return tuple(Link(op, parameter, source) for op in operation_ids)


# -- building the document ----------------------------------------------------------------------

def _schemas(ops: list[Operation], max_message_chars: int,
             model_ids: list[str]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(schemas.Error, "serialization"),
                                                           (schemas.LimitError, "serialization")]
    models += [(m, "serialization") for m in (*schemas.STREAM_EVENTS, *schemas.EVENT_DATA)]
    for op in ops:
        if op.ok[2] is not None:
            models.append((op.ok[2], "serialization"))
        if op.body is not None:
            models.append((op.body, "validation"))
    _, top = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    found: dict[str, Any] = top["$defs"]
    # The one limit that is a setting: this deployment's MAX_MESSAGE_CHARS.
    if "MessageBody" in found:
        found["MessageBody"]["properties"]["content"]["maxLength"] = max_message_chars
    # ... and the models this deployment configures, which a conversation may choose.
    for name in ("NewConversation", "ConversationUpdate"):
        if name in found and model_ids:
            found[name]["properties"]["model"]["enum"] = model_ids
    return found


def _model_ids(app: Flask) -> list[str]:
    chat = app.extensions.get("brook.chat")
    return [] if chat is None else [str(model["id"]) for model in chat.model_list()]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(op: Operation, method: str) -> dict[int, str]:
    """The operation's own errors, and those every operation of its kind can answer."""
    errors: dict[int, list[str]] = {status: [why] for status, why in op.errors.items()}

    def add(status: int, why: str) -> None:
        errors.setdefault(status, []).append(why)

    if op.body is not None:
        add(400, "`invalid_json`: the body is not a JSON object.")
        add(413, "`request_entity_too_large`: the body is far over any limit.")
        add(415, "`unsupported_media_type`: a body that is not `application/json`.")
        add(422, "`unknown_field`, `invalid_field` (of the wrong type)"
                 + (", `missing_field`" if getattr(op.body, "MISSING", None) else "") + ".")
    if method not in SAFE:
        add(403, "`cross_site_request`: sent from another site's page.")
    if op.uses_database:
        add(401, "`unauthenticated`: sign-in is required (AUTH_MODE appservice or oidc) "
                 "and no one signed in.")
        add(503, "`database_unavailable`, or `overloaded` (no database connection free "
                 "in time).")
    return {status: " ".join(why) for status, why in sorted(errors.items())}


def _error_response(status: int, why: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": why, "content": _json(
        schemas.LimitError if status == 429 else schemas.Error)}
    if status in (429, 503):
        response["headers"] = {"Retry-After": {
            "description": "Seconds to wait before trying again.", "required": True,
            "schema": {"type": "integer", "minimum": 1}}}
    return response


def _parameters(rule: str, op: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for converter, name in re.findall(r"<(?:(\w+):)?(\w+)>", rule):
        schema = {"type": "string", "format": "uuid"} if converter == "uuid" else \
            {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if op.query is not None:
        query = op.query.model_json_schema(ref_template=REF)
        for name, declared in query["properties"].items():
            kept: dict[str, Any] = {k: v for k, v in declared.items()
                                    if k not in ("title", "description", "anyOf")}
            for choice in declared.get("anyOf", []):  # optional means absent, never null
                if choice != {"type": "null"}:
                    kept = {**choice, **kept}
                    kept.pop("default", None)
            parameter = {"name": name, "in": "query", "schema": kept,
                         "required": name in query.get("required", [])}
            if "description" in declared:
                parameter["description"] = declared["description"]
            parameters.append(parameter)
    parameters.extend(op.headers)
    return parameters


def _operation(rule: str, method: str, op: Operation) -> dict[str, Any]:
    status, description, model = op.ok
    ok: dict[str, Any] = {"description": description}
    if op.media == "text/event-stream":
        # OpenAPI 3.1 has no word for a stream's items (3.2's `itemSchema`); its tools read
        # the schema of text/event-stream as that of each event.
        ok["content"] = {"text/event-stream": {"schema": {
            "description": "Each server-sent event: one of these.",
            "oneOf": [_ref(m) for m in schemas.STREAM_EVENTS]}}}
    elif model is not None:
        ok["content"] = _json(model)
    if op.also:
        ok["content"] = {**ok.get("content", {}), **op.also}
    if op.ok_headers:
        ok["headers"] = op.ok_headers
    if op.links:
        ok["links"] = {f"{link.operation_id}.{link.parameter}": {
            "operationId": link.operation_id,
            "parameters": {link.parameter: f"$response.body#{link.source}"},
        } for link in op.links}
    responses = {str(status): ok}
    for code, why in _errors(op, method).items():
        responses[str(code)] = _error_response(code, why)
    document: dict[str, Any] = {"operationId": op.id, "summary": op.summary}
    if op.description:
        document["description"] = op.description
    parameters = _parameters(rule, op)
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        document["requestBody"] = {"required": op.body_required, "content": _json(op.body)}
    document["responses"] = responses
    return document


def build(app: Flask) -> dict[str, Any]:
    """The document for this app's API routes (every one must have an `operation`)."""
    paths: dict[str, dict[str, Any]] = {}
    used: list[Operation] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.split(".")[0] != bp.name:
            continue
        op = OPERATIONS.get(rule.endpoint)
        if op is None:
            raise LookupError(f"{rule.endpoint} ({rule.rule}) has no @operation: describe it")
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule.rule, method, op)
            used.append(op)
    settings = app.config["BROOK_SETTINGS"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Brook API", "version": "0.1.0", "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": _schemas(used, settings.max_message_chars, _model_ids(app))},
    }


@bp.get("/openapi.json")
@operation(id="openapi", summary="This document",
           ok=(200, "The OpenAPI 3.1 document", schemas.Document), uses_database=False)
def openapi() -> Response:
    document: str | None = current_app.extensions.get("brook.openapi")
    if document is None:  # built once per app, in the order it is written in
        document = current_app.extensions["brook.openapi"] = json.dumps(build(current_app))
    return Response(document, mimetype="application/json")
