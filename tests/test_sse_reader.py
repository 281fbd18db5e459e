"""The upstream event-stream reader, byte by byte: what any split of the network reads gives."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from brook.providers import ProviderError, Reasoning, Usage
from brook.providers.openai_compat import Item, _read_response_event, _read_stream
from brook.providers.reasoning import ThinkSplitter


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


def read(chunks: Iterator[bytes] | list[bytes]) -> list[Item]:
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


def read_to_failure(raw: str) -> tuple[list[Item], Exception]:
    """What the reader hands out before it fails, and the failure."""
    items: list[Item] = []
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


# -- reasoning ------------------------------------------------------------------------------------

def joined(items: Sequence[Item]) -> tuple[str, str]:
    """The reasoning and the answer text that `items` hold."""
    return ("".join(i.text for i in items if isinstance(i, Reasoning)),
            "".join(i for i in items if isinstance(i, str)))


def delta_event(**delta: str) -> str:
    body = {"id": "c1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
@pytest.mark.parametrize("size", [1, 5, 10_000])
def test_reasoning_deltas_of_chat_completions_come_apart(field: str, size: int) -> None:
    raw = (delta_event(**{field: "Let me "}) + delta_event(**{field: "think."})
           + event("The answer") + event(" is 42.") + "data: [DONE]\n\n").encode()
    items = read(splits(raw, size))
    assert joined(items) == ("Let me think.", "The answer is 42.")
    first_text = next(i for i, item in enumerate(items) if isinstance(item, str))
    assert all(isinstance(item, Reasoning) for item in items[:first_text])


THINKING = "<think>\nFirst <b>this</b>, then that.\n</think>\n\nThe answer is 42."


@pytest.mark.parametrize("size", [1, 2, 3, 6, 7, 8, 9, 100])
def test_a_leading_think_block_is_reasoning_however_it_is_split(size: int) -> None:
    raw = "".join(event(THINKING[i:i + size]) for i in range(0, len(THINKING), size))
    items = read([(raw + "data: [DONE]\n\n").encode()])
    assert joined(items) == ("\nFirst <b>this</b>, then that.\n", "The answer is 42.")


@pytest.mark.parametrize("text", [
    "The tag <think> here is text.", "  <thinking> is not the tag", "<th", "",
    "Answer first.<think>not reasoning</think>"])
def test_text_that_does_not_open_with_the_tag_is_left_alone(text: str) -> None:
    splitter = ThinkSplitter()
    out = [piece for ch in text for piece in splitter.feed(ch)] + splitter.end()
    assert joined(out) == ("", text if text.strip() else "")


def test_a_think_block_that_never_closes_is_all_reasoning() -> None:
    splitter = ThinkSplitter()
    out = splitter.feed("<think>still thinking</th") + splitter.end()
    assert joined(out) == ("still thinking</th", "")


def response_event(kind: str, **fields: object) -> str:
    return (f"event: {kind}\ndata: "
            + json.dumps({"type": kind, "sequence_number": 1, **fields}) + "\n\n")


RESPONSE = (
    response_event("response.created", response={"id": "r1", "status": "in_progress"})
    + response_event("response.reasoning_summary_text.delta", item_id="rs1", delta="Weighing ")
    + response_event("response.reasoning_summary_text.delta", item_id="rs1", delta="it.")
    + response_event("response.output_text.delta", item_id="m1", delta="Forty")
    + response_event("response.output_text.delta", item_id="m1", delta="-two.")
    + response_event("response.output_text.done", item_id="m1", text="Forty-two.")
    + response_event("response.completed", response={
        "id": "r1", "status": "completed", "usage": {"input_tokens": 9, "output_tokens": 4}}))


@pytest.mark.parametrize("size", [1, 4, 10_000])
def test_a_responses_api_stream(size: int) -> None:
    items = list(_read_stream(splits(RESPONSE.encode(), size), _read_response_event))
    assert joined(items) == ("Weighing it.", "Forty-two.")
    assert items[-1] == Usage(9, 4)


def test_a_responses_api_stream_without_its_end_is_interrupted() -> None:
    cut = RESPONSE[:RESPONSE.index("event: response.completed")]
    with pytest.raises(ProviderError) as caught:
        list(_read_stream(iter([cut.encode()]), _read_response_event))
    assert caught.value.code == "stream_interrupted"


@pytest.mark.parametrize(("end", "code"), [
    (response_event("response.incomplete", response={
        "status": "incomplete", "incomplete_details": {"reason": "content_filter"}}),
     "content_filter"),
    (response_event("response.failed", response={
        "status": "failed", "error": {"code": "server_error", "message": "upstream secret"}}),
     "upstream_error"),
    (response_event("error", code="rate_limit_exceeded", message="upstream secret"),
     "upstream_error"),
])
def test_a_responses_api_failure_keeps_the_text_before_it(end: str, code: str) -> None:
    raw = response_event("response.output_text.delta", delta="kept") + end
    items: list[Item] = []
    with pytest.raises(ProviderError) as caught:
        items.extend(_read_stream(iter([raw.encode()]), _read_response_event))
    assert caught.value.code == code
    assert "secret" not in caught.value.message
    assert items == ["kept"]


def test_a_responses_api_answer_cut_at_its_token_limit_ends_normally() -> None:
    raw = (response_event("response.output_text.delta", delta="Cut")
           + response_event("response.incomplete", response={
               "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
               "usage": {"input_tokens": 1, "output_tokens": 1}}))
    assert list(_read_stream(iter([raw.encode()]), _read_response_event)) == ["Cut", Usage(1, 1)]
