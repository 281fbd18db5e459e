"""The one small interface every model provider implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..messages import ChatMessage


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True)
class Reasoning:
    """Text of the model's reasoning (a reasoning summary, `reasoning_content`, a leading
    `<think>` block), kept apart from the answer: shown, stored, never sent back."""

    text: str


@dataclass(frozen=True)
class Progress:
    """How far a provider is in getting ready, before its first text: the local model's
    download (`phase` "download": bytes done and total per file), its load into memory
    ("load"), and "ready" once it is loaded. `waiting`: this answer waits for another
    answer's load."""

    model: str | None
    phase: str
    files: tuple[tuple[str, int, int | None], ...] = ()  # (name, bytes done, total)
    waiting: bool = False

    def data(self) -> dict[str, Any]:
        """The `progress` event's data."""
        totals = [total for _, _, total in self.files]
        return {
            "model": self.model, "phase": self.phase, "waiting": self.waiting,
            "done": sum(done for _, done, _ in self.files),
            "total": None if None in totals else sum(t for t in totals if t is not None),
            "files": [{"name": name, "done": done, "total": total}
                      for name, done, total in self.files],
        }


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

    def stream(self, messages: Sequence[ChatMessage], *, temperature: float | None = None
               ) -> Iterator[str | Reasoning | Usage | Progress]:
        """Yield the answer as text deltas, then (when the service reports it) one `Usage`;
        before the first delta, any number of `Progress` reports (the local model's load),
        and `Reasoning` deltas (before the answer's text, as models send them).

        `temperature`: the conversation's (None: the model's own default).
        Raises `ProviderError` on any failure, possibly after some deltas.
        """
        ...

    def close(self) -> None: ...


class Unconfigured:
    """Stands in when no model is configured: every answer is an error that says what to set."""

    def __init__(self, help_text: str) -> None:
        self.model: str | None = None
        self.help_text = help_text

    def stream(self, messages: Sequence[ChatMessage], *, temperature: float | None = None
               ) -> Iterator[str | Reasoning | Usage | Progress]:
        raise ProviderError("model_not_configured", self.help_text)

    def close(self) -> None:
        pass
