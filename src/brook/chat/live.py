"""The in-process stream bus: answers being generated, shared by their writer and readers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any


class LiveAnswer:
    """The growing text of one answer.

    The generator appends; readers wait for text past their offset. `seal` freezes the text
    (later appends are dropped) so the final database write and what readers see agree
    exactly; `finish` then records the outcome and wakes every reader.

    The text is one string plus the pieces appended since it was last read, joined on the
    next read: a list of every token would hold a string object per token for the whole
    answer, several times the text's own size.

    A model's reasoning comes first: the text is its reasoning, then its answer, one
    stream whose character offsets are the events' ids. `reasoning_length` is where the
    answer begins: it grows with the reasoning until the answer's first text, and is fixed
    from then on (reasoning that comes later is dropped), so every offset means the same
    character for every reader, from the bus or from the database's two columns.
    """

    def __init__(self, message_id: uuid.UUID, model: str | None) -> None:
        self.message_id = message_id
        self.model = model
        self.stop_requested = threading.Event()
        self.finalizing = threading.Lock()
        self.flushed = 0  # characters already written to the database
        self.length = 0
        self.reasoning_length = 0  # the leading characters that are reasoning
        self.answering = False  # the answer's text has begun: the reasoning is fixed
        self.status = "streaming"
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, str] | None = None
        # The provider's latest report on getting ready (the local model's download), until
        # the first text; `progress_seq` counts the reports.
        self.progress: dict[str, Any] | None = None
        self.progress_seq = 0
        # The answer's tokens for its owner's usage, given its final text (set by the writer).
        self.count_tokens: Callable[[str], int] | None = None
        # Its conversation and question, when a complete answer is to title it (titles.py).
        self.titles: tuple[uuid.UUID, str] | None = None
        self._text = ""
        self._tail: list[str] = []
        self._sealed = False
        self._done = False
        self._cond = threading.Condition(threading.Lock())

    @property
    def done(self) -> bool:
        return self._done

    def append(self, text: str) -> None:
        with self._cond:
            if self._sealed:
                return
            self.answering = True
            self._tail.append(text)
            self.length += len(text)
            self._cond.notify_all()

    def append_reasoning(self, text: str) -> bool:
        """Add reasoning; False (dropped) once the answer's text has begun."""
        with self._cond:
            if self._sealed or self.answering:
                return False
            self._tail.append(text)
            self.length += len(text)
            self.reasoning_length = self.length
            self._cond.notify_all()
            return True

    def set_progress(self, progress: dict[str, Any]) -> None:
        """The provider's latest progress; ignored once text (or reasoning) has come."""
        with self._cond:
            if self.length or self._sealed:
                return
            self.progress = progress
            self.progress_seq += 1
            self._cond.notify_all()

    def _joined(self) -> str:
        # Called with the lock held.
        if self._tail:
            self._text += "".join(self._tail)
            self._tail.clear()
        return self._text

    def text(self) -> str:
        with self._cond:
            return self._joined()

    def snapshot(self) -> tuple[str, int]:
        """The text and where its reasoning ends, read together."""
        with self._cond:
            return self._joined(), self.reasoning_length

    def parts(self, length: int | None = None) -> tuple[str, str]:
        """The reasoning and the answer, of the text's first `length` characters (all)."""
        with self._cond:
            text = self._joined()
            return split(text if length is None else text[:length], self.reasoning_length)

    def seal(self) -> tuple[str, str]:
        """Freeze the text and return its reasoning and answer."""
        with self._cond:
            self._sealed = True
            return split(self._joined(), self.reasoning_length)

    def finish(self, status: str, usage: dict[str, Any] | None,
               error: dict[str, str] | None) -> None:
        with self._cond:
            self._sealed = True
            self.status, self.usage, self.error = status, usage, error
            self._done = True
            self._cond.notify_all()

    def read(self, offset: int, timeout: float, progress_seq: int = 0
             ) -> tuple[str, int, bool]:
        """Text after `offset` (waiting up to `timeout` for some, or for progress past
        `progress_seq`), where the reasoning in it ends, and whether it is all."""
        with self._cond:
            if self.length <= offset and not self._done and self.progress_seq == progress_seq:
                self._cond.wait(timeout)
            if self.length <= offset:
                return "", self.reasoning_length, self._done
            return self._joined()[offset:], self.reasoning_length, False


def split(text: str, reasoning_length: int) -> tuple[str, str]:
    """An answer's text (its reasoning, then its answer) as the two."""
    return text[:reasoning_length], text[reasoning_length:]


class LiveRegistry:
    """Answers generated by this process, by message id."""

    def __init__(self) -> None:
        self._answers: dict[uuid.UUID, LiveAnswer] = {}
        self._lock = threading.Lock()

    def add(self, answer: LiveAnswer) -> None:
        with self._lock:
            self._answers[answer.message_id] = answer

    def get(self, message_id: uuid.UUID) -> LiveAnswer | None:
        return self._answers.get(message_id)

    def remove(self, message_id: uuid.UUID) -> None:
        with self._lock:
            self._answers.pop(message_id, None)

    def answers(self) -> list[LiveAnswer]:
        with self._lock:
            return list(self._answers.values())

    def __len__(self) -> int:
        return len(self._answers)
