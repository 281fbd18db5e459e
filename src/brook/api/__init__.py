"""The JSON API blueprint: conversations, messages and their streams, the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import conversations, messages, openapi  # noqa: E402, F401  (routes register on bp)
