"""The upstream event-stream reader, byte by byte: what any split of the network reads gives."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from brook.providers import ProviderError, Usage
from brook.providers.openai_compat import _read_stream


def event(text: str | None = None, *, usage: bool = False, finish: str | None = None) -> str:
    choices = [] if text is None and finish is None else [
        {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]
    body: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk", "choices": choices}
    if usage:
        body["usage"] = {"prompt_tokens": 3, "completion_tokens": 2}
    return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"


STREAM = (": a comment\n\nevent: message\n" + event("Hel") + event("lo, ") + event("wörld")
          + event(finish="stop") + event(usage=True) + "data: [DONE]\n\n")


def splits(raw: bytes, size: int) -> Iterator[bytes]:
    return (raw[i:i + size] for i in range(0, len(raw), size))


def read(chunks: Iterator[bytes] | list[bytes]) -> list[str | Usage]:
    return list(_read_stream(iter(chunks)))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 10_000])
def test_any_split_and_line_ending_gives_the_same_answer(newline: str, size: int) -> None:
    raw = STREAM.replace("\n", newline).encode()
    items = read(splits(raw, size))
    assert "".join(i for i in items if isinstance(i, str)) == "Hello, wörld"
    assert items[-1] == Usage(3, 2)


def test_events_in_one_read_are_one_piece() -> None:
    assert read([STREAM.encode()]) == ["Hello, wörld", Usage(3, 2)]


def test_done_without_a_final_newline() -> None:
    assert read([(event("hi") + "data: [DONE]").encode()]) == ["hi"]


def test_text_after_done_is_ignored() -> None:
    assert read([(event("hi") + "data: [DONE]\n\n" + event("more")).encode()]) == ["hi"]


def test_no_done_is_an_interrupted_stream() -> None:
    with pytest.raises(ProviderError) as caught:
        read([event("partial").encode()])
    assert caught.value.code == "stream_interrupted"


def read_to_failure(raw: str) -> tuple[list[str | Usage], Exception]:
    """What the reader hands out before it fails, and the failure."""
    items: list[str | Usage] = []
    try:
        items.extend(_read_stream(iter([raw.encode()])))
    except Exception as exc:
        return items, exc
    raise AssertionError(f"no failure after {items}")


def test_text_before_a_malformed_event_is_kept() -> None:
    items, failure = read_to_failure(event("kept") + "data: {not json\n\n")
    assert items == ["kept"]
    assert isinstance(failure, json.JSONDecodeError)  # translated to upstream_bad_response


def test_an_error_event_ends_the_answer_after_the_text_before_it() -> None:
    items, failure = read_to_failure(
        event("kept") + 'data: {"error": {"message": "upstream secret"}}\n\n')
    assert items == ["kept"]
    assert isinstance(failure, ProviderError)
    assert failure.code == "upstream_error"
    assert "secret" not in failure.message


def test_content_filter_keeps_the_text_before_it() -> None:
    items, failure = read_to_failure(event("kept") + event("x", finish="content_filter"))
    assert items == ["keptx"]
    assert isinstance(failure, ProviderError)
    assert failure.code == "content_filter"


def test_a_character_split_between_reads() -> None:
    raw = (event("ö€😀") + "data: [DONE]\n\n").encode()
    cut = raw.index("€".encode()) + 1  # inside the euro sign's three bytes
    assert read([raw[:cut], raw[cut:]]) == ["ö€😀"]
