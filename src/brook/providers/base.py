"""The one small interface every model provider implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..messages import ChatMessage


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


class ProviderError(Exception):
    """A failure the user is told about in plain words.

    `code` is stable and machine-readable, `message` is safe to show in the browser; the
    upstream's own text goes only to the server log (as the exception's cause).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Provider(Protocol):
    model: str | None

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str | Usage]:
        """Yield the answer as text deltas, then (when the service reports it) one `Usage`.

        Raises `ProviderError` on any failure, possibly after some deltas.
        """
        ...

    def close(self) -> None: ...


class Unconfigured:
    """Stands in when no model is configured: every answer is an error that says what to set."""

    def __init__(self, help_text: str) -> None:
        self.model: str | None = None
        self.help_text = help_text

    def stream(self, messages: Sequence[ChatMessage]) -> Iterator[str | Usage]:
        raise ProviderError("model_not_configured", self.help_text)

    def close(self) -> None:
        pass
