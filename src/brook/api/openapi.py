"""Serves the OpenAPI document (src/brook/openapi.json); tests hold it to what the app does."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from . import bp

DOCUMENT = Path(__file__).parent.parent / "openapi.json"


@cache
def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return doc


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return document()
