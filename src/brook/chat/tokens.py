"""Token counting and the prompt budget.

tiktoken downloads its encodings on first use, which fails (or hangs) offline. Brook asks
tiktoken for an encoding only when its file is already in tiktoken's cache, and otherwise
counts with a conservative estimate: never a network call on the request path, never a crash.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import tiktoken

from ..config import library_environment
from ..messages import ChatMessage

log = logging.getLogger(__name__)

ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# OpenAI's documented framing cost: each message costs a few tokens beyond its text, and
# every reply is primed with a few more.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


def _cache_dir() -> Path:
    # Where tiktoken itself looks: TIKTOKEN_CACHE_DIR from the process environment.
    return library_environment().tiktoken_cache_dir


def cached_encoding(name: str = "o200k_base") -> tiktoken.Encoding | None:
    """The tiktoken encoding `name` if its file is cached locally, else None."""
    key = hashlib.sha1(ENCODING_URL.format(name=name).encode()).hexdigest()  # noqa: S324
    if not (_cache_dir() / key).exists():
        log.info("tiktoken encoding %s is not cached; estimating token counts", name)
        return None
    try:
        return tiktoken.get_encoding(name)
    except Exception:  # a corrupt cache must not stop the app
        log.warning("tiktoken encoding %s could not be loaded; estimating", name, exc_info=True)
        return None


class TokenCounter:
    """Counts tokens exactly with an encoding, or estimates on the high side without one."""

    def __init__(self, encoding: tiktoken.Encoding | None) -> None:
        self.encoding = encoding

    @property
    def exact(self) -> bool:
        return self.encoding is not None

    def count_text(self, text: str) -> int:
        if self.encoding is not None:
            return len(self.encoding.encode(text, disallowed_special=()))
        # Byte-level BPE averages about 4 bytes per token in English and about one token per
        # CJK character (3 bytes); dividing UTF-8 bytes by 3 errs towards counting more.
        return -(-len(text.encode("utf-8")) // 3)

    def count_message(self, message: ChatMessage) -> int:
        return TOKENS_PER_MESSAGE + self.count_text(message["content"])

    def count_exchange(self, prompt: Sequence[ChatMessage], answer: str) -> int:
        """An answer's tokens where the model reported none: its prompt's and its text's."""
        return sum(self.count_message(m) for m in prompt) + self.count_text(answer)


def fit_to_budget(system_prompt: str, history: Sequence[ChatMessage], budget: int,
                  counter: TokenCounter) -> list[ChatMessage]:
    """The messages to send: the system prompt, then as many of the newest turns as fit.

    The oldest turns are dropped first. The system prompt and the newest message (the user's
    question) are always kept, even when they alone exceed the budget: the model service then
    decides, and its "context length exceeded" reaches the user as a plain error.
    """
    system: ChatMessage = {"role": "system", "content": system_prompt}
    if not history:
        return [system]
    used = TOKENS_PER_REPLY + counter.count_message(system) + counter.count_message(history[-1])
    kept = [history[-1]]
    for message in reversed(history[:-1]):
        used += counter.count_message(message)
        if used > budget:
            break
        kept.append(message)
    kept.reverse()
    # A kept assistant turn without the user turn before it reads oddly; start with a user turn.
    while len(kept) > 1 and kept[0]["role"] != "user":
        kept.pop(0)
    return [system, *kept]
