"""A leading `<think>…</think>` block, split off a stream of text deltas as reasoning.

Local reasoning models (Qwen3, DeepSeek-R1's distillations) and OpenAI-compatible servers
without a reasoning parser send their thinking inside the answer's text, first, between
these tags. Only a block that opens the answer counts: an answer that mentions the tags
later is left as it is. The tags may arrive split across deltas.
"""

from __future__ import annotations

from .base import Reasoning

OPEN, CLOSE = "<think>", "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag` (a tag cut by a delta)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Feed it the answer's deltas in order; it returns them as answer text and `Reasoning`."""

    def __init__(self) -> None:
        self._state = "start"  # start, thinking, after (the block closed), answer
        self._held = ""

    def feed(self, text: str) -> list[str | Reasoning]:
        if self._state == "answer":  # the common case: one comparison per delta
            return [text]
        buffer, self._held = self._held + text, ""
        out: list[str | Reasoning] = []
        if self._state == "start":
            body = buffer.lstrip()
            if len(body) < len(OPEN) and OPEN.startswith(body):
                self._held = buffer  # only blanks so far, or the beginning of the tag
                return out
            if not body.startswith(OPEN):
                self._state = "answer"
                return [buffer]
            self._state, buffer = "thinking", body[len(OPEN):]
        if self._state == "thinking":
            end = buffer.find(CLOSE)
            if end < 0:
                keep = _partial_suffix(buffer, CLOSE)
                thought, self._held = buffer[:len(buffer) - keep], buffer[len(buffer) - keep:]
                if thought:
                    out.append(Reasoning(thought))
                return out
            if end:
                out.append(Reasoning(buffer[:end]))
            self._state, buffer = "after", buffer[end + len(CLOSE):]
        # After the block: the blank lines that separate it from the answer are not the answer.
        rest = buffer.lstrip()
        if rest:
            self._state = "answer"
            out.append(rest)
        return out

    def end(self) -> list[str | Reasoning]:
        """What is still held when the stream ends (a tag that never completed)."""
        held, self._held = self._held, ""
        if not held:
            return []
        if self._state == "thinking":
            return [Reasoning(held)]
        return [] if self._state == "after" or not held.strip() else [held]
