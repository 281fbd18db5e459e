"""Reading requests strictly, through the models in schemas.py: every malformed input gets a
clear 4xx that names what is wrong, and stores nothing."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import APIError
from .schemas import Body

B = TypeVar("B", bound=Body)
Q = TypeVar("Q", bound=BaseModel)

WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")  # longer is no offset, nor a limit, of ours
TYPE_NAMES = {"string_type": "string", "int_type": "number", "bool_type": "boolean"}


def json_body(model: type[B], *, required: bool = True,
              context: dict[str, Any] | None = None) -> B:
    """The request's JSON object, validated by `model` (strictly: no type is coerced).

    A body must say `Content-Type: application/json`: a cross-site HTML form cannot send
    that, which is part of Brook's CSRF defence. An operation whose body is optional also
    takes none at all, with no Content-Type (a form always sends one).
    """
    raw = request.get_data(cache=True)
    empty = not raw  # no body; whitespace alone is not JSON
    if not request.is_json and not (not required and empty and not request.content_type):
        raise APIError(415, "unsupported_media_type",
                       "Send the request body as JSON with Content-Type: application/json.")
    body = {} if empty else request.get_json(silent=True)
    if body is None:
        raise APIError(400, "invalid_json", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "The request body must be a JSON object.")
    unknown = sorted(set(body) - set(model.model_fields))
    if unknown:
        raise APIError(422, "unknown_field", f"Unknown field: {unknown[0]}.")
    try:
        return model.model_validate(body, strict=True, context=context)
    except ValidationError as exc:
        raise _field_error(model, exc.errors()[0]) from None


def _field_error(model: type[Body], error: ErrorDetails) -> APIError:
    name = str(error["loc"][0]) if error["loc"] else ""
    kind = error["type"]
    if kind == "missing":
        return APIError(422, "missing_field",
                        model.MISSING.get(name, f"Send the field {name}."))
    if kind.endswith("_type"):
        return APIError(422, "invalid_field",
                        f"The field {name} must be a {TYPE_NAMES.get(kind, kind[:-5])}.")
    # A rule of Brook's own (a PydanticCustomError): its type is the error code.
    return APIError(422, kind, error["msg"])


def whole_numbers(model: type[Q], code: str, message: str) -> Q:
    """Query parameters that are whole numbers, each given at most once, within `model`'s
    bounds; anything else is a 400 with this `code` and `message`."""
    values: dict[str, int] = {}
    for name in model.model_fields:
        given = request.args.getlist(name)
        if not given:
            continue
        if len(given) > 1 or not WHOLE_NUMBER.fullmatch(given[0]):
            raise APIError(400, code, message)
        values[name] = int(given[0])
    try:
        return model.model_validate(values)
    except ValidationError:
        raise APIError(400, code, message) from None
