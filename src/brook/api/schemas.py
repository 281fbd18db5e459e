"""The API's request and response models: declared once, they validate what comes in, shape
what goes out, and are what the OpenAPI document (openapi.py) is generated from.

Request models carry Brook's own error codes: a check that fails raises a
`PydanticCustomError` whose type is the code the client sees (requests.py turns it into a
422), so a rule and its error live side by side.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictStr,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from ..chat.service import BrookExport, ChatGPTExport
from ..models import SYSTEM_PROMPT_MAX, Status

# Whitespace as Python's str.split() and str.strip() see it, spelled out: JSON Schema's `\s`
# (ECMAScript's) is another set, and a schema must refuse exactly what the server refuses.
WHITESPACE = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{WHITESPACE}]"  # a pattern searches: "has a character not whitespace"
_NOT_BLANK = re.compile(NOT_BLANK)
TITLE_MAX = 200
# PostgreSQL's text cannot hold U+0000 (SQLite's can): refused everywhere alike.
NO_NUL = {"not": {"pattern": r"\x00"}}


def _no_nul(value: str, what: str) -> None:
    if "\x00" in value:
        raise PydanticCustomError("nul_character",
                                  f"The {what} contains a NUL character (U+0000), which "
                                  f"Brook cannot store.")


class Model(BaseModel):
    """Every shape is closed: an unknown field is an error in, and never sent out."""

    model_config = ConfigDict(extra="forbid")


# -- timestamps ---------------------------------------------------------------------------------

def _utc(value: datetime) -> datetime:
    # SQLite hands back the naive UTC it stored; PostgreSQL an aware time in the session's
    # zone. Either way the client gets UTC with its offset (RFC 3339 `date-time`).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]


# -- responses ----------------------------------------------------------------------------------

LimitName = Literal["answers_per_minute", "concurrent_answers", "tokens_per_day",
                    "conversations_per_day", "stored_conversations", "budget_tokens_per_day"]


class ErrorDetail(Model):
    code: str = Field(description="Stable and machine-readable, e.g. `not_found`.")
    message: str = Field(description="Plain words for the user; never an upstream's raw text.")


class LimitUse(Model):
    limit: int | None = Field(description="The limit (null: none for this owner).")
    used: int | None = Field(description="How much of it is used now (the budget's: null "
                                         "where there is none).")
    remaining: int | None = Field(description="`limit` - `used`, at least 0; null: no limit.")
    resets_at: datetime | None = Field(description="When the count starts again (null: it "
                                                   "is a count of what exists now).")


class UsageNow(Model):
    """An owner's usage today (UTC) against their limits (0 in a setting: no limit)."""

    day: date
    answers_today: int = Field(ge=0)
    tokens_today: int = Field(ge=0, description="Prompt and answer tokens of today's answers "
                                                "that have ended: as the model reported them, "
                                                "or estimated.")
    limits: dict[LimitName, LimitUse]


class Error(Model):
    """Every error: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class LimitErrorDetail(ErrorDetail):
    limit: LimitName = Field(description="Which limit.")
    limit_value: int = Field(description="The limit.")
    resets_at: datetime | None = Field(
        description="When the limit lets the owner go on (null: when one of their answers "
                    "ends, or they delete a conversation); `Retry-After` says the same in "
                    "seconds.")


class LimitError(Model):
    """A request over a limit (`429`): `{"error": {"code": "limit_exceeded", "message",
    "limit", "limit_value", "resets_at"}}`."""

    error: LimitErrorDetail


class Usage(Model):
    prompt_tokens: int | None
    completion_tokens: int | None


TitleSource = Literal["none", "message", "pending", "model", "user"]


class Conversation(Model):
    id: uuid.UUID
    title: str = Field(description="Empty until set, or until the first message names it.")
    title_source: TitleSource = Field(description=(
        "Who wrote the title: `none` (untitled), `message` (the first message's first words), "
        "`pending` (the model is being asked for one, after the first answer), `model`, or "
        "`user` (never overwritten)."))
    model: str | None = Field(description="The model its next answers are asked of (an id "
                                           "of GET /api/models); null: the default.")
    system_prompt: str | None = Field(description="Its system prompt; null: the "
                                                   "deployment's (SYSTEM_PROMPT).")
    temperature: float | None = Field(description="Its temperature, for models that take "
                                                  "one; null: the model's own.")
    created_at: Timestamp
    updated_at: Timestamp


class ModelInfo(Model):
    id: str = Field(description="What a conversation's `model` names.")
    name: str = Field(description="The name to show.")
    default: bool = Field(description="Whether conversations use it unless they choose.")
    temperature: bool = Field(description="Whether it takes a temperature.")


class ModelList(Model):
    """The models a conversation may use, the default first."""

    models: list[ModelInfo]


class Message(Model):
    id: uuid.UUID
    conversation_id: uuid.UUID
    role: Literal["user", "assistant"]
    content: str = Field(description="An answer's text so far while it is `streaming`.")
    reasoning: str = Field(description="An answer's reasoning (a reasoning model's summary or "
                                       "thinking), empty where it has none; never sent back "
                                       "to the model. The stream's offsets count it first.")
    status: Status
    model: str | None = Field(description="The model that wrote an answer.")
    usage: Usage | None
    error: ErrorDetail | None = Field(description="Why an answer has status `error`.")
    created_at: Timestamp
    updated_at: Timestamp
    stream_url: str | None = Field(description="An answer's event stream; null for the "
                                               "user's messages.")


class ConversationWithMessages(Conversation):
    messages: list[Message] = Field(description="Oldest first.")


class ConversationList(Model):
    conversations: list[Conversation] = Field(description="Newest activity first.")


class Turn(Model):
    """A stored question and the answer now being written to it."""

    user_message: Message
    assistant_message: Message
    stream_url: str = Field(description="The answer's event stream.")


class Regenerated(Model):
    assistant_message: Message
    stream_url: str = Field(description="The new answer's event stream.")


class Document(RootModel[dict[str, Any]]):
    """An OpenAPI document."""


# -- the answer's event stream ------------------------------------------------------------------
# An event as an SSE parser hands it over (the shape of OpenAPI 3.2's `itemSchema` for
# text/event-stream): `event`, `id`, `retry` and `data`, a string that here is always one
# line of JSON of the event's data model.

EVENT_ID = Field(pattern=r"^[0-9]+$",
                 description="Characters of the answer delivered up to and including this "
                             "event: send it back as Last-Event-ID (or ?after=) to resume.")


def json_of(model: type[BaseModel]) -> Any:
    """A `data` field: a string of JSON, described by `model`."""
    return Field(json_schema_extra={"contentMediaType": "application/json",
                                    "contentSchema": {"$ref": f"#/components/schemas/"
                                                              f"{model.__name__}"}})


class StartData(Model):
    message_id: uuid.UUID
    model: str | None


class TextData(Model):
    text: str = Field(description="The next piece of the answer.")


class FileProgress(Model):
    name: str = Field(description="The file, as the model's repository names it.")
    done: int = Field(ge=0, description="Bytes of it downloaded.")
    total: int | None = Field(None, ge=0, description="Its size in bytes, where known.")


class ProgressData(Model):
    model: str | None = Field(description="The model being made ready.")
    phase: Literal["download", "load", "ready"] = Field(
        description="`download`: its files come into the cache; `load`: it is loaded into "
                    "memory (the files are done); `ready`: it is loaded, and the answer "
                    "begins or waits its turn.")
    waiting: bool = Field(description="This answer waits for another answer's load of the "
                                      "model (queued behind it).")
    done: int = Field(ge=0, description="Bytes downloaded, all files together.")
    total: int | None = Field(None, ge=0, description="Bytes to download in all, where known.")
    files: list[FileProgress]


class EndData(Model):
    status: Status = Field(description="The answer's final status.")
    usage: Usage | None


class StartEvent(Model):
    """First, unless the stream resumes; its id is 0."""

    event: Literal["start"]
    id: str = EVENT_ID
    retry: int | None = Field(None, ge=0, description="Milliseconds before EventSource "
                                                      "reconnects.")
    data: str = json_of(StartData)


class TextEvent(Model):
    """The next piece of the answer."""

    event: Literal["message"]
    id: str = EVENT_ID
    data: str = json_of(TextData)


class ProgressEvent(Model):
    """Before the first text, while the model is made ready (the local model's first
    download and load): the latest report, again on resume. Its id is 0."""

    event: Literal["progress"]
    id: str = EVENT_ID
    data: str = json_of(ProgressData)


class ErrorEvent(Model):
    """The answer failed (a user-safe message and a code); always followed by `end`."""

    event: Literal["error"]
    id: str = EVENT_ID
    data: str = json_of(ErrorDetail)


class EndEvent(Model):
    """Last. Its id is where the answer ends: lower than the reader's Last-Event-ID only for
    an answer `interrupted` after the reader had read text that did not survive its writer
    (show the stored answer instead)."""

    event: Literal["end"]
    id: str = EVENT_ID
    data: str = json_of(EndData)


STREAM_EVENTS = (StartEvent, ProgressEvent, TextEvent, ErrorEvent, EndEvent)
EVENT_DATA = (StartData, ProgressData, TextData, ErrorDetail, EndData)


# -- requests -----------------------------------------------------------------------------------

class Body(Model):
    """A JSON request body. `MISSING` says, per required field, what to send if it's absent."""

    MISSING: ClassVar[dict[str, str]] = {}


def _title(value: str) -> str:
    _no_nul(value, "title")
    if len(value) > TITLE_MAX:
        raise PydanticCustomError("title_too_long",
                                  f"The title can be at most {TITLE_MAX} characters.")
    title = " ".join(value.split())
    if not title:
        raise PydanticCustomError("empty_title", "The title cannot be empty.")
    return title


Title = Annotated[StrictStr, AfterValidator(_title), Field(
    json_schema_extra={"minLength": 1, "maxLength": TITLE_MAX, "pattern": NOT_BLANK, **NO_NUL},
    description="Not only whitespace, and no U+0000; runs of whitespace become one space.")]


def _content(value: str, info: ValidationInfo) -> str:
    limit: int = (info.context or {})["max_message_chars"]
    _no_nul(value, "message")
    if not _NOT_BLANK.search(value):
        raise PydanticCustomError("empty_message", "The message is empty.")
    if len(value) > limit:
        raise PydanticCustomError("message_too_long",
                                  f"The message is {len(value):,} characters long; the limit "
                                  f"is {limit:,}.")
    return value


# maxLength is the deployment's MAX_MESSAGE_CHARS: openapi.py fills it in.
Content = Annotated[StrictStr, AfterValidator(_content), Field(
    json_schema_extra={"minLength": 1, "pattern": NOT_BLANK, **NO_NUL},
    description="Not only whitespace, and no U+0000; at most MAX_MESSAGE_CHARS characters.")]


def _system_prompt(value: str) -> str:
    _no_nul(value, "system prompt")
    if len(value) > SYSTEM_PROMPT_MAX:
        raise PydanticCustomError("system_prompt_too_long",
                                  f"The system prompt can be at most {SYSTEM_PROMPT_MAX:,} "
                                  "characters.")
    if not value.strip():
        raise PydanticCustomError("empty_system_prompt", "The system prompt cannot be empty: "
                                  "send null for the default.")
    return value


SystemPrompt = Annotated[StrictStr, AfterValidator(_system_prompt), Field(
    json_schema_extra={"minLength": 1, "maxLength": SYSTEM_PROMPT_MAX, "pattern": NOT_BLANK,
                       **NO_NUL},
    description="Not only whitespace, no U+0000, at most 8,000 characters; null: the "
                "deployment's SYSTEM_PROMPT.")]
def _model_id(value: str) -> str:
    if not value or len(value) > 100:
        raise PydanticCustomError("unknown_model", "There is no such model: choose one of "
                                  "GET /api/models.")
    return value


def _temperature(value: float) -> float:
    if not 0 <= value <= 2:
        raise PydanticCustomError("invalid_temperature",
                                  "The temperature must be a number from 0 to 2.")
    return value


# The document's bounds are json_schema_extra, not Field constraints, so that a value out of
# them gets Brook's own error code (above) rather than pydantic's.
ModelId = Annotated[StrictStr, AfterValidator(_model_id), Field(
    json_schema_extra={"minLength": 1, "maxLength": 100},
    description="An id of GET /api/models.")]
Temperature = Annotated[float, AfterValidator(_temperature), Field(
    json_schema_extra={"minimum": 0, "maximum": 2},
    description="From 0 to 2; null: the model's own.")]


def _no_empty_defaults(schema: dict[str, Any]) -> None:
    """A field left out is not sent as "" (which is refused like any blank value): the
    document must not offer "" as its default."""
    for field in schema["properties"].values():
        if field.get("default") == "":
            field.pop("default")


class NewConversation(Body):
    # Absent means untitled (the first message names it); "" is refused like any blank
    # title, so the document must not offer it as a default.
    model_config = ConfigDict(json_schema_extra=_no_empty_defaults)
    title: Title = ""
    model: ModelId = ""
    system_prompt: SystemPrompt | None = None
    temperature: Temperature | None = None


def _at_least_one_field(schema: dict[str, Any]) -> None:
    _no_empty_defaults(schema)
    schema["minProperties"] = 1


class ConversationUpdate(Body):
    """What to change; fields left out stay as they are (at least one)."""

    MISSING: ClassVar[dict[str, str]] = {
        "title": "Send at least one of title, model, system_prompt and temperature."}
    model_config = ConfigDict(json_schema_extra=_at_least_one_field)
    title: Title = ""
    model: ModelId = ""
    system_prompt: SystemPrompt | None = None
    temperature: Temperature | None = None


class MessageBody(Body):
    MISSING: ClassVar[dict[str, str]] = {
        "content": "Send the message text in the field content."}
    content: Content


class NoBody(Body):
    """Nothing to send: an empty body, or `{}`."""


# -- query parameters ---------------------------------------------------------------------------

class ListQuery(Model):
    limit: int = Field(100, ge=1, le=500, description="How many conversations at most.")


SEARCH_QUERY_MAX = 200


def _search_words(value: str) -> str:
    _no_nul(value, "query")
    return value


class SearchQuery(Model):
    q: Annotated[str, AfterValidator(_search_words)] = Field(
        min_length=1, max_length=SEARCH_QUERY_MAX, json_schema_extra={"not": {"pattern": r"\x00"}},
        description="Plain words (no query syntax: quotes, `*`, `-`, `:`, `OR` are words or "
                    "separators), each matching the start of a word, case and accents aside; "
                    "every word must match. No U+0000.")
    limit: int = Field(20, ge=1, le=50, description="How many results at most.")


class Highlight(Model):
    start: int = Field(ge=0, description="Where a matched word starts in `snippet`.")
    end: int = Field(ge=0, description="Where it ends (exclusive).")


class SearchHit(Model):
    conversation_id: uuid.UUID
    title: str = Field(description="The conversation's title (plain text).")
    message_id: uuid.UUID | None = Field(description="The message that matched, to jump to; "
                                                     "null where the title matched.")
    role: Literal["user", "assistant"] | None = Field(description="The message's; null for "
                                                                  "a title.")
    snippet: str = Field(description="Plain text (never HTML) around the best match: the "
                                     "title, or about 160 characters of the message, with "
                                     "\"…\" where it is cut.")
    highlights: list[Highlight] = Field(description="The matched words in `snippet`, in "
                                                    "order: offsets in Unicode code points.")
    rank: float = Field(description="Higher is a better match; comparable within one "
                                    "response only.")
    created_at: Timestamp = Field(description="When the message was written; for a title, "
                                              "the conversation's latest activity.")


class SearchResults(Model):
    """Matches among the owner's conversations, best first. Messages are found once stored
    final: an answer still being written is found when it ends."""

    results: list[SearchHit]


class UsageQuery(Model):
    days: int = Field(7, ge=1, le=90, description="How many days back, today included (UTC).")


class OwnerDay(Model):
    day: date
    owner: str = Field(description="The owner: `anon:<id>` for an anonymous browser, or the "
                                   "signed-in user's id.")
    answers: int = Field(ge=0, description="Answers started that day.")
    tokens: int = Field(ge=0, description="Tokens of that day's answers that have ended.")
    conversations: int = Field(ge=0, description="Conversations started that day (counted "
                                                 "where a limit on them is on).")


class UsageByOwner(Model):
    """Every owner's usage per day, newest day first, most tokens first."""

    days: list[OwnerDay]


class StreamQuery(Model):
    after: int | None = Field(None, ge=0, description="Resume after this event id (the "
                                                      "Last-Event-ID header wins).")


# -- export and import (api/transfer.py) --------------------------------------------------------
# Brook's document (BrookExport) and ChatGPT's (ChatGPTExport) are chat's: chat/transfer.py
# writes the one and reads both.

class ExportQuery(Model):
    format: Literal["json", "markdown"] = Field(
        "json", description="`json`: Brook's document, which the import takes back; "
                            "`markdown`: a transcript to read.")


class ImportBody(RootModel[BrookExport | ChatGPTExport]):
    """The file's content, as it is: Brook's JSON export (an object), or ChatGPT's
    `conversations.json` (a list), up to 20 MB."""


class Imported(Model):
    """What an import made: every conversation of the file that had something to import."""

    imported: int = Field(ge=1, description="How many conversations were made.")
    skipped: int = Field(ge=0, description="The file's conversations with nothing to import "
                                           "(ChatGPT's with no text on their shown branch).")
    conversations: list[Conversation] = Field(description="The new conversations, in the "
                                                          "file's order.")
