"""Server-sent events framing.

Each event's data is one line of JSON, so newlines in model output never break the framing.
Event ids are character offsets into the answer: a reader that resumes after id N gets the
answer from character N on, whichever process or store serves it.
"""

from __future__ import annotations

import json
from typing import Any

KEEPALIVE = ": keep-alive\n\n"
RETRY_MS = 1000


def encode(event: str, data: dict[str, Any], event_id: int) -> str:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event}\ndata: {payload}\n\n"


def parse(stream: str) -> list[dict[str, Any]]:
    """Parse an event stream into `{"id", "event", "data"}` dicts (for tests and tools)."""
    events: list[dict[str, Any]] = []
    for block in stream.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            fields.setdefault("event", "message")
            events.append(fields)
    return events
