"""Export and import of conversations: Brook's own JSON document, a Markdown transcript, and
ChatGPT's `conversations.json` (read by chatgpt.py).

Brook's document (`format` "brook.conversations", `version` 1) holds what a conversation
is, its settings (model, system prompt, temperature) where it has its own, and nothing of
where it was stored: no ids, no owner. It is deterministic (keys in a
fixed order, conversations oldest first, timestamps in UTC with microseconds, UTF-8, two
spaces of indent), so exporting, importing that file and exporting what it made gives the
same bytes.

An import is validated whole (the models below, strictly) before anything is written, and
written in one transaction: a file is imported entirely or not at all. Imported
conversations count against the owner's LIMIT_STORED_CONVERSATIONS, checked under the lock
of the owner's usage row that creating a conversation takes, so parallel imports and
creations cannot overshoot it. They are not "conversations started today": an import
starts no model and costs no tokens, and a day's limit would refuse a long history.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from sqlalchemy import Connection, Table, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from ..config import MODEL_ID
from ..models import SYSTEM_PROMPT_MAX, Conversation, Message, utcnow
from . import chatgpt
from .imported import (
    MAX_CONVERSATIONS,
    MAX_MESSAGES,
    MAX_TEXT_CHARS,
    MAX_TOKENS,
    MODEL_MAX,
    NO_NUL,
    TITLE_MAX,
    ImportFile,
    ImportRefused,
    NewConversation,
    NewMessage,
    bounded_conversations,
    bounded_messages,
    bounded_text,
    no_nul,
    plain_title,
)
from .limits import STORED, USAGE, LimitExceeded, Quota

FORMAT = "brook.conversations"
VERSION = 1
MESSAGES = cast(Table, Message.__table__)


# -- Brook's document -------------------------------------------------------------------------

def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("invalid_timestamp",
                                  "the time is outside the years 1 to 9999 in UTC") from None


# The length first (a string's own constraint), then the NUL check.
Title = Annotated[StrictStr, Field(
    max_length=TITLE_MAX, json_schema_extra=NO_NUL,
    description="The conversation's title; empty: untitled. No U+0000."), AfterValidator(no_nul)]
Text = Annotated[StrictStr, Field(
    json_schema_extra=NO_NUL,
    description=f"As written (Markdown), at most {MAX_TEXT_CHARS:,} characters "
                "(`message_too_long`). No U+0000."), AfterValidator(bounded_text)]
ModelName = Annotated[StrictStr, Field(
    max_length=MODEL_MAX, json_schema_extra=NO_NUL, description="The model that wrote it."),
    AfterValidator(no_nul)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_utc), Field(
    description="RFC 3339, with its offset; exported in UTC.")]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedUsage(Closed):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None


class ExportedError(Closed):
    code: Annotated[StrictStr, Field(max_length=100, json_schema_extra=NO_NUL),
                    AfterValidator(no_nul)]
    message: Annotated[StrictStr, Field(max_length=2000, json_schema_extra=NO_NUL),
                       AfterValidator(no_nul)]


class ExportedMessage(Closed):
    role: Literal["user", "assistant"]
    content: Text
    reasoning: Text | None = Field(None, description="An answer's reasoning, where it had "
                                                     "any.")
    status: Literal["complete", "stopped", "error", "interrupted"] = Field(
        description="Final: an answer still being written when exported is `interrupted`.")
    created_at: Timestamp
    model: ModelName | None = None
    usage: ExportedUsage | None = Field(None, description="An answer's tokens.")
    error: ExportedError | None = Field(None, description="Why an answer has status `error`.")


class ExportedConversation(Closed):
    title: Title
    created_at: Timestamp
    updated_at: Timestamp
    model: Annotated[StrictStr, Field(
        pattern=MODEL_ID, description="Its own model (an id of `GET /api/models`); one this "
        "Brook does not have gives way to its default model.")] | None = None
    system_prompt: Annotated[StrictStr, Field(
        min_length=1, max_length=SYSTEM_PROMPT_MAX, pattern=r"\S",
        json_schema_extra=NO_NUL, description="Its own system prompt."),
        AfterValidator(no_nul)] | None = None
    temperature: Annotated[StrictFloat, Field(ge=0, le=2, description="Its own temperature.")
                           ] | None = None
    messages: Annotated[list[ExportedMessage], AfterValidator(bounded_messages)] = Field(
        description=f"Oldest first; at most {MAX_MESSAGES:,} (`too_many_messages`).")


class BrookExport(Closed):
    """Brook's export of conversations (`GET .../export?format=json`), which
    `POST /api/conversations/import` takes back."""

    format: Literal["brook.conversations"]
    version: Literal[1]
    conversations: Annotated[list[ExportedConversation],
                             AfterValidator(bounded_conversations)] = Field(
        description=f"Oldest first. An import takes 1 to {MAX_CONVERSATIONS:,} "
                    "(`empty_import`, `too_many_conversations`).")


# -- what an import stores ------------------------------------------------------------------------

def from_brook(document: BrookExport) -> ImportFile:
    if not document.conversations:
        raise ImportRefused(422, "empty_import", "The file holds no conversations.")
    return ImportFile("brook", [
        NewConversation(plain_title(c.title), c.created_at, c.updated_at, [
            NewMessage(m.role, m.content, m.status, m.created_at, m.reasoning or "", m.model,
                       m.usage.prompt_tokens if m.usage else None,
                       m.usage.completion_tokens if m.usage else None,
                       m.error.model_dump() if m.error else None)
            for m in c.messages], c.model, c.system_prompt, c.temperature)
        for c in document.conversations])


def read_import(raw: bytes) -> ImportFile:
    """The file's conversations, validated whole; raises `ImportRefused` (400: not JSON;
    422: not a file Brook imports, or a part of it wrong, named with where it is)."""
    body = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM, as some editors write
    first = body.lstrip(b" \t\r\n")[:1]
    if not first:
        raise ImportRefused(400, "invalid_json", "The file is empty.")
    try:
        if first == b"{":
            return from_brook(BrookExport.model_validate_json(body, strict=True))
        if first == b"[":
            return chatgpt.convert(chatgpt.ChatGPTExport.model_validate_json(body, strict=True))
    except ValidationError as exc:
        raise refusal(exc.errors()[0], "brook" if first == b"{" else "chatgpt") from None
    try:
        json.loads(body)
    except ValueError:
        raise ImportRefused(400, "invalid_json", "The file is not valid JSON.") from None
    raise _unknown_format()


def _unknown_format() -> ImportRefused:
    return ImportRefused(422, "unknown_format",
                         "This is not a file Brook can import: send a Brook export (JSON) or "
                         "ChatGPT's conversations.json.")


def where(loc: Sequence[int | str], kind: Literal["brook", "chatgpt"]) -> str:
    """A place in the file, in words: "conversation 2, message 5, status"."""
    parts = list(loc)
    words: list[str] = []
    if kind == "brook" and parts[:1] == ["conversations"]:
        parts = parts[1:]
    if parts and isinstance(parts[0], int):
        words.append(f"conversation {int(parts.pop(0)) + 1}")
    if kind == "brook" and len(parts) >= 2 and parts[0] == "messages":
        words.append(f"message {int(parts[1]) + 1}")
        parts = parts[2:]
    if parts:
        words.append(".".join(str(p) for p in parts))
    return ", ".join(words) or "the file"


def refusal(error: ErrorDetails, kind: Literal["brook", "chatgpt"]) -> ImportRefused:
    """The 4xx of a file's first error, in plain words."""
    loc, kind_of, ctx = error["loc"], error["type"], error.get("ctx") or {}
    place = where(loc, kind)
    last = loc[-1] if loc else ""
    if kind_of == "json_invalid":
        return ImportRefused(400, "invalid_json", "The file is not valid JSON (or not UTF-8).")
    if kind_of == "model_type" and not loc:
        return _unknown_format()
    if loc in (("format",), ()) and kind == "brook":
        return _unknown_format()
    if loc == ("version",):
        given = "of no version" if kind_of == "missing" else f"version {error['input']!r}"
        return ImportRefused(422, "unsupported_version",
                             f"This Brook export is {given}; this Brook imports version "
                             f"{VERSION}.")
    if kind_of == "too_short" and last in ("conversations", ""):
        return ImportRefused(422, "empty_import", "The file holds no conversations.")
    if kind_of == "too_many_conversations":
        return ImportRefused(422, kind_of, f"{error['msg']}.")
    if kind_of == "string_too_long":
        code = "title_too_long" if last == "title" else "invalid_field"
        return ImportRefused(422, code, f"In {place}: the text is longer than "
                                        f"{ctx.get('max_length', 0):,} characters.")
    if kind_of == "literal_error" and last == "status" and error["input"] == "streaming":
        return ImportRefused(422, "unfinished_message",
                             f"In {place}: the message is still being written (streaming); "
                             "an imported message must be finished.")
    if kind_of == "missing":
        return ImportRefused(422, "missing_field", f"In {place}: the field is missing.")
    if kind_of == "extra_forbidden":
        return ImportRefused(422, "unknown_field", f"In {place}: Brook has no such field.")
    if kind_of in ("nul_character", "invalid_timestamp", "message_too_long",
                   "too_many_messages"):
        return ImportRefused(422, kind_of, f"In {place}: {error['msg']}.")
    return ImportRefused(422, "invalid_field", f"In {place}: {error['msg']}.")


# -- storing an import ----------------------------------------------------------------------------

def _lock_owner_statement(dialect: str) -> Any:
    """The owner's usage row of today, made if missing and locked until the transaction ends
    (the lock creating a conversation takes, limits.py): the stored count read after it
    sees every conversation committed before."""
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = upsert(USAGE).values(owner=bindparam("b_owner"), day=bindparam("b_day"),
                                     answers=0, tokens=0, conversations=0, minute_answers=0)
    return statement.on_conflict_do_update(
        index_elements=[USAGE.c.owner, USAGE.c.day],
        set_={"conversations": USAGE.c.conversations})


def _within_stored_limit(connection: Connection, owner: str, quota: Quota, adding: int,
                         now: datetime) -> None:
    limit = quota.stored_conversations
    connection.execute(_lock_owner_statement(connection.dialect.name),
                       {"b_owner": owner, "b_day": now.date()})
    stored: int = connection.execute(STORED, {"b_owner": owner}).scalar_one()
    if stored + adding > limit:
        raise LimitExceeded(
            "stored_conversations", limit, None,
            f"You may keep {limit:,} conversation{'' if limit == 1 else 's'} and have "
            f"{stored:,}; this file would add {adding:,}. Delete some, or import fewer.", now)


def store_import(session: Session, owner: str, file: ImportFile, quota: Quota | None
                 ) -> list[Conversation]:
    """Store the file's conversations for `owner` in one transaction, and return them;
    raises `LimitExceeded` (nothing stored) over their LIMIT_STORED_CONVERSATIONS."""
    now = utcnow()
    conversations: list[Conversation] = []
    messages: list[dict[str, Any]] = []
    for new in file.conversations:
        # A title the file brings is kept as it is: the model never writes over it.
        row = Conversation(id=uuid.uuid4(), owner=owner, title=new.title,
                           title_source="user" if new.title else "none",
                           model=new.model, system_prompt=new.system_prompt,
                           temperature=new.temperature,
                           created_at=new.created_at, updated_at=new.updated_at)
        conversations.append(row)
        messages.extend(
            {"id": uuid.uuid4(), "conversation_id": row.id, "position": position,
             "role": m.role, "content": m.content, "reasoning": m.reasoning,
             "status": m.status, "model": m.model, "prompt_tokens": m.prompt_tokens,
             "completion_tokens": m.completion_tokens, "error": m.error, "worker": None,
             "lease_until": None, "stop_requested": False, "created_at": m.created_at,
             "updated_at": m.created_at}
            for position, m in enumerate(new.messages))
    try:
        if quota is not None and quota.stored_conversations:
            _within_stored_limit(session.connection(), owner, quota, len(conversations), now)
        session.add_all(conversations)  # one INSERT per batch (SQLAlchemy's insertmanyvalues)
        session.flush()
        if messages:
            session.connection().execute(insert(MESSAGES), messages)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return conversations


# -- export -------------------------------------------------------------------------------------

def owned_conversations(session: Session, owner: str, conversation_id: uuid.UUID | None
          ) -> list[Conversation]:
    """The owner's conversations with their messages: one, or (None) all of them."""
    query = (select(Conversation).where(Conversation.owner == owner)
             .options(selectinload(Conversation.messages)))
    if conversation_id is not None:
        query = query.where(Conversation.id == conversation_id)
    return list(session.scalars(query))


def utc_text(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, always the same width: "2026-12-04T15:09:40.889433Z".
    (SQLite gives back the naive UTC it stored, PostgreSQL an aware time.)"""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _message(row: Message) -> dict[str, Any]:
    exported: dict[str, Any] = {"role": row.role, "content": row.content}
    if row.reasoning:
        exported["reasoning"] = row.reasoning
    exported["status"] = "interrupted" if row.status == "streaming" else row.status
    exported["created_at"] = utc_text(row.created_at)
    if row.model is not None:
        exported["model"] = row.model
    if row.prompt_tokens is not None or row.completion_tokens is not None:
        exported["usage"] = {"prompt_tokens": row.prompt_tokens,
                             "completion_tokens": row.completion_tokens}
    if row.error:
        exported["error"] = {"code": str(row.error.get("code", "")),
                             "message": str(row.error.get("message", ""))}
    return exported


def _conversation(row: Conversation) -> dict[str, Any]:
    exported: dict[str, Any] = {"title": row.title, "created_at": utc_text(row.created_at),
                                "updated_at": utc_text(row.updated_at)}
    settings = {"model": row.model, "system_prompt": row.system_prompt,
                "temperature": row.temperature}
    exported.update((name, value) for name, value in settings.items() if value is not None)
    exported["messages"] = [_message(m) for m in row.messages]
    return exported


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def export_json(rows: Iterable[Conversation]) -> bytes:
    """Brook's document of these conversations, oldest first (then by what they hold, so
    that the order never depends on ids)."""
    conversations = sorted((_conversation(row) for row in rows),
                           key=lambda c: (c["created_at"], c["updated_at"], _dump(c)))
    document = {"format": FORMAT, "version": VERSION, "conversations": conversations}
    return (_dump(document) + "\n").encode()


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
NOTES = {"stopped": "Stopped before it was finished.",
         "interrupted": "Cut short: Brook stopped while writing it.",
         "streaming": "Still being written when exported."}


def _escape(text: str) -> str:
    """Text that Markdown shows as it is (a title, a model's name)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def markdown(row: Conversation) -> str:
    """A readable transcript: the title as a heading, each message under its author."""
    lines = [f"# {_escape(row.title or 'Untitled chat')}", "",
             f"*Exported from Brook. Started {utc_text(row.created_at)[:16].replace('T', ' ')}"
             " UTC.*", ""]
    for message in row.messages:
        who = "You" if message.role == "user" else "Assistant"
        if message.role == "assistant" and message.model:
            who += f" ({_escape(message.model)})"
        lines += [f"## {who}", ""]
        if message.reasoning:
            lines += ["<details><summary>Thinking</summary>", "", message.reasoning, "",
                      "</details>", ""]
        if message.content:
            lines += [message.content, ""]
        if message.status == "error":
            why = (message.error or {}).get("message") or "The answer failed."
            lines += [f"*Error: {_escape(str(why))}*", ""]
        elif message.status in NOTES:
            lines += [f"*{NOTES[message.status]}*", ""]
    return "\n".join(lines)


def export_markdown(rows: Iterable[Conversation]) -> bytes:
    """One transcript, or several oldest first, between rules."""
    ordered = sorted(rows, key=lambda c: (utc_text(c.created_at), utc_text(c.updated_at),
                                          c.title))
    return "\n---\n\n".join(markdown(row) for row in ordered).encode()
