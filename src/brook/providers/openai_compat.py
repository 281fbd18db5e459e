"""OpenAI, Azure OpenAI and every OpenAI-compatible server, through the `openai` SDK.

The SDK owns the connection: base URLs, Azure's deployment paths, keys or Entra ID tokens,
timeouts, and retries with Retry-After on the initial request. The stream itself is read as
raw SSE lines and decoded with `json.loads`: building the SDK's typed object for every chunk
costs more CPU than everything else Brook does per token.

Two APIs, chosen per model (`api`): Chat Completions (`POST /chat/completions`, every
OpenAI-compatible server) and the Responses API (`POST /responses`; OpenAI's and Azure
OpenAI's newest models, with reasoning summaries). Reasoning comes apart from the answer:
the Responses API's reasoning summary events, `reasoning_content` or `reasoning` deltas of
Chat Completions servers (vLLM, DeepSeek, Ollama, OpenRouter), or a leading `<think>` block
in the text (reasoning.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from typing import Any, Literal

import httpx2
import openai
from azure.core.credentials import TokenCredential

from ..background import spawn
from ..config import ModelSpec, Settings
from ..messages import ChatMessage
from .base import ProviderError, Reasoning, Usage
from .reasoning import ThinkSplitter

log = logging.getLogger(__name__)

AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
Api = Literal["chat", "responses"]
Item = str | Reasoning | Usage
# Reads one event's data into the items; True at the stream's end.
ReadEvent = Callable[[bytes, list[Item]], bool]


class OpenAICompatible:
    def __init__(self, client: openai.OpenAI, model: str,
                 on_close: Callable[[], None] | None = None, *, api: Api = "chat",
                 reasoning_summary: str | None = None) -> None:
        self.client = client
        self.model: str | None = model
        self.api = api
        # The Responses API's `reasoning.summary` ("auto", "concise", "detailed"): asked only
        # of models that reason (others refuse the parameter).
        self.reasoning_summary = reasoning_summary
        self._on_close = on_close

    @classmethod
    def from_settings(cls, settings: Settings,
                      credential: TokenCredential | None = None) -> OpenAICompatible:
        """The one model the single-model variables configure (see `from_spec`)."""
        return cls.from_spec(settings.model_specs[0], settings, credential)

    @classmethod
    def from_spec(cls, spec: ModelSpec, settings: Settings,
                  credential: TokenCredential | None = None) -> OpenAICompatible:
        """Build the client once, at start-up, for one model (`spec`, filled in).

        Keyless Azure uses `credential`, by default a `DefaultAzureCredential` (managed
        identity in Azure, developer sign-in locally).
        """
        timeout = openai.Timeout(settings.model_timeout, connect=settings.model_connect_timeout)
        # One gevent worker streams thousands of answers at once, each on its own connection;
        # the SDK's default pool stops at 1,000.
        http_client = openai.DefaultHttpxClient(
            timeout=timeout,
            limits=httpx2.Limits(max_connections=20_000, max_keepalive_connections=1_000),
        )
        options: dict[str, Any] = {"api": spec.api, "reasoning_summary": spec.reasoning_summary}
        if spec.provider == "azure":
            assert spec.endpoint
            on_close = None
            if spec.api_key:
                auth: dict[str, Any] = {"api_key": spec.api_key}
            else:
                # Keyless: managed identity in Azure, developer credentials locally. The token
                # provider asks the credential for a token on each request; the credential
                # caches it and refreshes it before it expires.
                from azure.identity import DefaultAzureCredential, get_bearer_token_provider

                if credential is None:
                    default = DefaultAzureCredential()
                    credential, on_close = default, default.close
                auth = {"azure_ad_token_provider": get_bearer_token_provider(credential,
                                                                             AZURE_SCOPE)}
            client: openai.OpenAI = openai.AzureOpenAI(
                azure_endpoint=spec.endpoint,
                api_version=spec.api_version,
                timeout=timeout,
                max_retries=settings.model_max_retries,
                http_client=http_client,
                **auth,
            )
            return cls(client, spec.model, on_close, **options)
        client = openai.OpenAI(
            # Local servers (Ollama, vLLM, llama.cpp) accept any key; the SDK insists on one.
            api_key=spec.api_key or "not-needed",
            base_url=spec.base_url,
            timeout=timeout,
            max_retries=settings.model_max_retries,
            http_client=http_client,
        )
        return cls(client, spec.model, **options)

    def close(self) -> None:
        self.client.close()
        if self._on_close is not None:
            self._on_close()

    def _request(self, messages: Sequence[ChatMessage], temperature: float | None
                 ) -> tuple[str, dict[str, Any], ReadEvent]:
        """The path, body and event reader of this model's API."""
        if self.api == "chat":
            chat: dict[str, Any] = {
                "model": self.model or "", "messages": list(messages), "stream": True,
                "stream_options": {"include_usage": True}}
            if temperature is not None:
                chat["temperature"] = temperature
            return "/chat/completions", chat, _read_chat_event
        body: dict[str, Any] = {
            "model": self.model or "", "stream": True, "store": False,
            "instructions": "\n\n".join(m["content"] for m in messages
                                         if m["role"] == "system") or None,
            "input": [{"role": m["role"], "content": m["content"]} for m in messages
                      if m["role"] != "system"]}
        if self.reasoning_summary:
            body["reasoning"] = {"summary": self.reasoning_summary}
        if temperature is not None:
            body["temperature"] = temperature
        return "/responses", body, _read_response_event

    def stream(self, messages: Sequence[ChatMessage], *, temperature: float | None = None
               ) -> Iterator[Item]:
        path, body, read_event = self._request(messages, temperature)
        try:
            # The SDK's documented way to a raw response: it still builds the URL (Azure's
            # deployment paths too), signs in, retries and raises on error statuses, but
            # skips type-checking the whole prompt on every request.
            response: httpx2.Response = self.client.post(  # type: ignore[assignment]
                path,
                cast_to=httpx2.Response,
                body=body,
                stream=True,
                stream_cls=openai.Stream[Any],  # unused: `cast_to` asks for the raw response
            )
            chunks = response.iter_bytes()
            try:
                yield from _read_stream(chunks, read_event)
            except BaseException:  # a failure, or the consumer stopped (Stop)
                response.close()
                raise
            # The answer is complete; what follows `[DONE]` is read after it, in the background.
            spawn(lambda: _drain(chunks, response), "brook-drain")
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc) from exc


def _drain(rest: Iterator[bytes], response: httpx2.Response) -> None:
    """Read what follows `[DONE]`, so that the connection goes back to the pool for reuse."""
    try:
        for _ in rest:
            pass
    except Exception as exc:  # the answer is complete; only the connection is lost
        log.debug("could not read the end of a model response: %r", exc)
    finally:
        response.close()


def _read_stream(chunks: Iterable[bytes], read_event: ReadEvent | None = None
                 ) -> Iterator[Item]:
    """The answer's text from the raw event stream, one piece per network read.

    Each read's complete `data:` lines are decoded together and their text goes out as one
    piece, so when the model is faster than Brook reads, several tokens cost one hand-over
    to readers. Lines end with LF, CRLF or CR, as the SSE format allows. A leading
    `<think>` block of the text goes out as reasoning.
    """
    if read_event is None:
        read_event = _read_chat_event
    think = ThinkSplitter()
    pending = b""
    for chunk in chain(chunks, (b"\n",)):  # the newline ends a last line left open
        buffer = pending + chunk if pending else chunk
        end = max(buffer.rfind(b"\n"), buffer.rfind(b"\r")) + 1
        pending = buffer[end:]
        items: list[Item] = []
        done, failure = False, None
        try:
            for line in buffer[:end].splitlines():
                # Only data lines: not blank separators, comments or `event:` lines.
                if line.startswith(b"data:") and read_event(line[5:].strip(), items):
                    done = True
                    break
        except Exception as exc:  # the text before it still counts
            failure = exc
        for item in items:
            if isinstance(item, str):
                yield from think.feed(item)
            else:
                yield item
        if failure is not None:
            raise failure
        if done:
            yield from think.end()
            return
    raise ProviderError(
        "stream_interrupted",
        "The connection to the model service broke off before the answer was complete.",
    )


def _add(items: list[Item], item: str | Reasoning) -> None:
    """Add text or reasoning to `items`, joined to the same kind right before it."""
    if items:
        last = items[-1]
        if isinstance(item, str) and isinstance(last, str):
            items[-1] = last + item
            return
        if isinstance(item, Reasoning) and isinstance(last, Reasoning):
            items[-1] = Reasoning(last.text + item.text)
            return
    items.append(item)


def _read_chat_event(data: bytes, items: list[Item]) -> bool:
    """A Chat Completions chunk: its text, reasoning (`reasoning_content`, or `reasoning` as
    some servers name it) or usage into `items`; True at `[DONE]`."""
    if data == b"[DONE]":
        return True
    event = json.loads(data)
    if "error" in event:
        raise ProviderError("upstream_error", "The model service reported an error.")
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if thought and isinstance(thought, str):
            _add(items, Reasoning(thought))
        text = delta.get("content")
        if text:
            _add(items, text)
        if choice.get("finish_reason") == "content_filter":
            raise ProviderError("content_filter",
                                "The model service's content filter stopped this answer.")
    usage = event.get("usage")
    if usage:
        items.append(Usage(usage.get("prompt_tokens"), usage.get("completion_tokens")))
    return False


_REASONING_DELTAS = frozenset(("response.reasoning_summary_text.delta",
                               "response.reasoning_text.delta"))


def _read_response_event(data: bytes, items: list[Item]) -> bool:
    """A Responses API event: text, reasoning summary or the usage of `response.completed`
    into `items`; True at the response's end (completed, or cut at its token limit)."""
    event = json.loads(data)
    kind = event.get("type")
    if kind == "response.output_text.delta":
        _add(items, event.get("delta") or "")
    elif kind in _REASONING_DELTAS:
        _add(items, Reasoning(event.get("delta") or ""))
    elif kind in ("response.completed", "response.incomplete"):
        response = event.get("response") or {}
        reason = (response.get("incomplete_details") or {}).get("reason")
        if reason == "content_filter":
            raise ProviderError("content_filter",
                                "The model service's content filter stopped this answer.")
        usage = response.get("usage")
        if usage:
            items.append(Usage(usage.get("input_tokens"), usage.get("output_tokens")))
        return True
    elif kind in ("response.failed", "error"):
        raise ProviderError("upstream_error", "The model service reported an error.")
    return False


def translate(exc: BaseException) -> ProviderError:
    """Map an SDK, transport or decoding failure to a code and words a user understands."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("upstream_timeout",
                             "The model service took too long to answer. Please try again.")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("upstream_unreachable",
                             "Brook could not reach the model service. Please try again later.")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderError(
            "upstream_auth",
            "The model service refused Brook's credentials. The administrator needs to check "
            "the API key or the identity's access.",
        )
    if isinstance(exc, openai.RateLimitError):
        return ProviderError("rate_limited",
                             "The model service is busy right now. Please wait a moment and "
                             "try again.")
    if isinstance(exc, openai.NotFoundError):
        return ProviderError("upstream_not_found",
                             "The model service does not know the configured model or "
                             "deployment. The administrator needs to check its name.")
    if isinstance(exc, openai.BadRequestError):
        code = exc.code or ""
        if code == "content_filter":
            return ProviderError("content_filter",
                                 "The model service's content filter blocked this message.")
        if code == "context_length_exceeded":
            return ProviderError("context_length_exceeded",
                                 "This conversation is too long for the model. Please start "
                                 "a new conversation.")
        return ProviderError("upstream_rejected", "The model service rejected the request.")
    if isinstance(exc, openai.APIStatusError):
        return ProviderError("upstream_error",
                             "The model service had a problem. Please try again.")
    if isinstance(exc, ValueError):  # json.JSONDecodeError and friends
        return ProviderError("upstream_bad_response",
                             "The model service sent a reply Brook could not read.")
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderError("upstream_timeout",
                             "The model service stopped sending the answer. Please try again.")
    return ProviderError(
        "stream_interrupted",
        "The connection to the model service broke off before the answer was complete.",
    )
