"""Unit tests: the token budget, token counting offline, SSE framing."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiktoken

from brook import sse
from brook.chat.tokens import TokenCounter, cached_encoding, fit_to_budget
from brook.messages import ChatMessage


def turns(n: int, words: int = 10) -> list[ChatMessage]:
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"turn {i} " + "word " * words} for i in range(n)]


def test_everything_fits() -> None:
    history = turns(5)
    messages = fit_to_budget("sys", history, 10_000, TokenCounter(None))
    assert messages == [{"role": "system", "content": "sys"}, *history]


def test_oldest_turns_are_dropped_first() -> None:
    counter = TokenCounter(None)
    history = turns(9)
    per_turn = counter.count_message(history[0])
    budget = 3 + counter.count_message({"role": "system", "content": "sys"}) + per_turn * 4 + 2
    messages = fit_to_budget("sys", history, budget, counter)
    assert messages[0]["role"] == "system"
    assert messages[-1] == history[-1]
    # Only the newest turns, contiguous, starting with a user turn.
    kept = messages[1:]
    assert kept == history[-len(kept):]
    assert kept[0]["role"] == "user"
    assert 1 < len(kept) <= 4


def test_system_prompt_and_newest_message_are_always_kept() -> None:
    history = turns(3, words=2000)
    messages = fit_to_budget("a long system prompt " * 50, history, 10, TokenCounter(None))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[-1] == history[-1]
    assert fit_to_budget("sys", [], 10, TokenCounter(None)) == [
        {"role": "system", "content": "sys"}]


def test_estimate_without_encoding_errs_high() -> None:
    counter = TokenCounter(None)
    assert not counter.exact
    assert counter.count_text("") == 0
    # English runs about 4 characters a token; the estimate counts more.
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert counter.count_text(text) >= len(text) / 4
    # CJK: about one token per character; the estimate is not below that.
    assert counter.count_text("東京は日本の首都です") >= 10


def test_exact_count_with_an_encoding() -> None:
    # A byte-level encoding built here (no download): one token per byte.
    encoding = tiktoken.Encoding(name="bytes", pat_str=r"\S+|\s+",
                                 mergeable_ranks={bytes([i]): i for i in range(256)},
                                 special_tokens={})
    counter = TokenCounter(encoding)
    assert counter.exact
    assert counter.count_text("héllo") == len("héllo".encode())
    assert counter.count_text("<|endoftext|>") == 13  # special-token text is just text


def test_uncached_encoding_is_none_without_network(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert cached_encoding("o200k_base") is None
    # A corrupt cached file is not a crash either.
    import hashlib

    from brook.chat.tokens import ENCODING_URL

    key = hashlib.sha1(ENCODING_URL.format(name="o200k_base").encode()).hexdigest()
    (tmp_path / key).write_text("garbage")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    # tiktoken would re-download a file whose hash is wrong; point it nowhere routable.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert cached_encoding("o200k_base") is None


def test_sse_event_is_one_line_of_json() -> None:
    text = 'line one\nline two\r\n\n"quoted" ünï 🌊 \u2028 data: fake\n\nevent: end'
    frame = sse.encode("message", {"text": text}, 42)
    assert frame.endswith("\n\n")
    assert frame.count("\n") == 4  # id, event, data, blank line
    assert frame.startswith("id: 42\nevent: message\ndata: ")
    parsed = sse.parse(frame)
    assert parsed == [{"id": "42", "event": "message", "data": {"text": text}}]


def test_sse_parse_skips_comments_and_retry() -> None:
    stream = "retry: 1000\nid: 0\nevent: start\ndata: {}\n\n" + sse.KEEPALIVE + \
        sse.encode("end", {"status": "complete"}, 3)
    assert [e["event"] for e in sse.parse(stream)] == ["start", "end"]
