"""What an import stores, whatever file it came from (transfer.py reads Brook's, chatgpt.py
ChatGPT's), and how a file is refused: the bounds of one import, and its errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from pydantic_core import PydanticCustomError

MAX_IMPORT_BYTES = 20 * 1024 * 1024  # a request body: the file
MAX_CONVERSATIONS = 10_000  # in one file
MAX_MESSAGES = 10_000  # in one conversation
# An imported message may be longer than MAX_MESSAGE_CHARS, which bounds what a user types
# here: an answer has no such bound, nor has a message written in another app.
MAX_TEXT_CHARS = 1_000_000
TITLE_MAX = 200  # the column's
MODEL_MAX = 200  # the column's
MAX_TOKENS = 2**31 - 1  # an INTEGER column
# PostgreSQL's text cannot hold U+0000 (SQLite's can): refused everywhere alike.
NO_NUL = {"not": {"pattern": r"\x00"}}
T = TypeVar("T")


class ImportRefused(Exception):
    """A file that cannot be imported: its HTTP status (400 or 422), a code and plain words."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "it contains a NUL character (U+0000), "
                                                   "which Brook cannot store")
    return value


# The bounds of one file, checked after its parts (they are not in the JSON Schema: a
# generator of test requests would build files of 10,000 conversations to probe them).

def bounded_text(value: str) -> str:
    no_nul(value)
    if len(value) > MAX_TEXT_CHARS:
        raise PydanticCustomError("message_too_long",
                                  f"the text is {len(value):,} characters long; Brook imports "
                                  f"at most {MAX_TEXT_CHARS:,}")
    return value


def bounded_messages(value: list[T]) -> list[T]:
    if len(value) > MAX_MESSAGES:
        raise PydanticCustomError("too_many_messages",
                                  f"the conversation holds {len(value):,} messages; Brook "
                                  f"imports at most {MAX_MESSAGES:,} in one")
    return value


def bounded_conversations(value: list[T]) -> list[T]:
    if len(value) > MAX_CONVERSATIONS:
        raise PydanticCustomError("too_many_conversations",
                                  f"The file holds {len(value):,} conversations; Brook imports "
                                  f"at most {MAX_CONVERSATIONS:,} at once")
    return value


@dataclass(frozen=True)
class NewMessage:
    role: str
    content: str
    status: str
    created_at: datetime
    reasoning: str = ""
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class NewConversation:
    title: str
    created_at: datetime
    updated_at: datetime
    messages: Sequence[NewMessage]
    # Its own settings (Brook's files only); None: the deployment's.
    model: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class ImportFile:
    """A file's conversations, ready to store, and how many of its conversations had nothing
    to import (a ChatGPT conversation with no text on its shown branch)."""

    kind: Literal["brook", "chatgpt"]
    conversations: Sequence[NewConversation]
    skipped: int = 0


def plain_title(title: str) -> str:
    """Runs of whitespace as one space, as the API stores a title."""
    return " ".join(title.split())
