"""A small model run in this process with Hugging Face transformers (the `brook[local]` extra).

The model (`BROOK_LOCAL_MODEL`: a hub id or a folder) is loaded once, on the first answer, in
a generating thread: the first answer downloads it into the Hugging Face cache, with
huggingface_hub's progress bars on the console. Answers are generated with the model's chat
template and streamed token by token.

Generation runs in real OS threads, also under gunicorn's gevent worker, and tokens come
back through a channel the reader waits on (`providers/threads.py`).

At most `LOCAL_MODEL_CONCURRENCY` answers generate at once (one per worker); up to
`LOCAL_MODEL_QUEUE` more wait their turn; beyond that an answer fails at once with
`model_busy`. A reader that stops reading (Stop, or the service closing the iterator)
cancels its generation at the next token.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from ..config import Settings, library_environment, local_model_name
from ..messages import ChatMessage
from .base import ProviderError, Usage
from .threads import Channel, Gate, Job, Worker, real

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_END = object()
CLOSE_WAIT_SECONDS = 5.0
SET_HINT = ("set BROOK_LOCAL_MODEL to a local folder that holds the model (see "
            "docs/local-model.md), or configure another model service")


class LocalModel:
    """The `Provider` for an in-process transformers model."""

    def __init__(self, settings: Settings,
                 on_token: Callable[[], None] | None = None) -> None:
        self.model: str | None = local_model_name(settings.local_model)
        self.source = settings.local_model
        self.device_choice = settings.local_model_device
        self.max_tokens = settings.local_model_max_tokens
        self.gate = Gate(settings.local_model_concurrency, settings.local_model_queue,
                          self._generate)
        self.on_token = on_token  # called in the generating thread per token (tests pace it)
        self._load_lock = real("_thread", "allocate_lock")()  # waited on in workers only
        self._loaded: tuple[Any, Any] | None = None
        self._jobs: set[Job] = set()

    @property
    def running(self) -> int:
        """Answers generating now (a cancelled one counts until its worker has stopped)."""
        return self.gate.running

    def stream(self, messages: Sequence[ChatMessage]) -> Generator[str | Usage, None, None]:
        worker: object = self.gate.enter()
        if isinstance(worker, Channel):
            turn = worker
            try:
                worker = turn.get()  # a worker, or the error that the model is closing
            except BaseException:  # the reader was killed while queued
                self.gate.abandon(turn)
                raise
            finally:
                turn.close()
            if isinstance(worker, ProviderError):
                raise worker
        assert isinstance(worker, Worker)
        job = Job(list(messages))
        self._jobs.add(job)
        worker.inbox.put(job)
        try:
            while True:
                item = job.channel.get()
                if item is _END:
                    return
                if isinstance(item, ProviderError):
                    raise item
                assert isinstance(item, str | Usage)
                yield item
        finally:
            job.cancelled = True  # the reader is gone or done: stop at the next token
            job.channel.close()
            self._jobs.discard(job)

    def close(self) -> None:
        for job in list(self._jobs):
            job.cancelled = True  # each stops at its next token
        self.gate.close(CLOSE_WAIT_SECONDS)
        self._loaded = None

    # -- in a worker thread --------------------------------------------------------------------

    def _generate(self, job: Job) -> None:
        try:
            self._answer(job)  # its tensors are freed when it returns, before _END is sent
        except ProviderError as exc:
            job.channel.put(exc)
        except Exception as exc:
            log.exception("local model %s failed while answering", self.model)
            error = ProviderError("local_model_failed",
                                  "The local model failed while writing this answer. Details "
                                  "are in the server log.")
            error.__cause__ = exc
            job.channel.put(error)
        finally:
            job.channel.put(_END)

    def _answer(self, job: Job) -> None:
        model, tokenizer = self._load()
        if job.cancelled:
            return
        inputs, prompt_tokens, max_new = self._encode(model, tokenizer, job.messages)
        started = time.monotonic()
        output = model.generate(
            **inputs, max_new_tokens=max_new,
            streamer=_streamer(tokenizer, job.channel.put),
            stopping_criteria=_cancel_criteria(job, self.on_token),
            pad_token_id=_pad_token_id(model, tokenizer),
        )
        completion = int(output.shape[1]) - prompt_tokens
        log.info("local model %s: %d prompt tokens, %d new in %.1f s%s", self.model,
                 prompt_tokens, completion, time.monotonic() - started,
                 " (stopped)" if job.cancelled else "")
        job.channel.put(Usage(prompt_tokens, completion))

    def _load(self) -> tuple[Any, Any]:
        """Load the tokenizer and model once (downloading them into the HF cache if need be)."""
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load_now()
            return self._loaded

    def _load_now(self) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device, dtype = placement(self.device_choice)
        if device == "cpu" and library_environment().omp_num_threads is None:
            # Every core but one: the web server keeps one to serve pages and other streams.
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - 1))
        log.info("loading the local model %s on %s (the first time, it is downloaded into the "
                 "Hugging Face cache; progress is shown below)", self.source, device)
        started = time.monotonic()
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source)
            # Straight onto the device, in the dtype it runs best: never built in host
            # memory first and then copied.
            model: Any = AutoModelForCausalLM.from_pretrained(
                self.source, dtype=dtype, device_map=device)
        except OSError as exc:  # huggingface_hub's network and not-found errors are OSErrors
            log.error("could not load the local model %s: %s", self.source, exc)
            raise ProviderError(
                "local_model_unavailable",
                f"Could not download the model {self.model}: check that this server can reach "
                f"huggingface.co and that the model id is right, or {SET_HINT}.",
            ) from exc
        except Exception as exc:
            log.exception("could not load the local model %s", self.source)
            raise ProviderError(
                "local_model_failed",
                f"Could not load the model {self.model}: {SET_HINT}. Details are in the "
                "server log.",
            ) from exc
        if not getattr(tokenizer, "chat_template", None):
            raise ProviderError(
                "local_model_unsuitable",
                f"The model {self.model} has no chat template: set BROOK_LOCAL_MODEL to an "
                "instruct (chat) model such as Qwen/Qwen2.5-0.5B-Instruct.",
            )
        model.eval()
        log.info("local model %s ready on %s (%s) in %.1f s", self.model, model.device,
                 model.dtype, time.monotonic() - started)
        return model, tokenizer

    def _encode(self, model: Any, tokenizer: Any, messages: list[ChatMessage]
                ) -> tuple[dict[str, Any], int, int]:
        """The prompt through the chat template, oldest turns dropped to leave room to answer."""
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 32_768)
        room = min(self.max_tokens, max(limit // 4, 1))
        while True:
            encoded = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
            prompt_tokens = int(encoded["input_ids"].shape[1])
            first = 1 if messages and messages[0]["role"] == "system" else 0
            if prompt_tokens + room <= limit or len(messages) - first <= 1:
                break
            messages = messages[:first] + messages[first + 1:]
        if prompt_tokens + min(room, 16) > limit:
            raise ProviderError("context_length_exceeded",
                                "This message is too long for the local model. Please send a "
                                "shorter one.")
        inputs = {name: tensor.to(model.device) for name, tensor in encoded.items()}
        return inputs, prompt_tokens, min(self.max_tokens, limit - prompt_tokens)


def placement(choice: str) -> tuple[str, torch.dtype]:
    """The device (LOCAL_MODEL_DEVICE: auto, cpu or cuda) and the dtype the model runs in.

    bfloat16 on a GPU that computes in it natively (NVIDIA compute capability 8.0 on, i.e.
    Ampere and later), float16 on older GPUs (both halve the memory of float32 and run on
    tensor cores), float32 on the CPU, where half precision is emulated and slower.
    """
    import torch

    device = choice
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu", torch.float32
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "cuda:0", torch.bfloat16
    return "cuda:0", torch.float16


def _streamer(tokenizer: Any, emit: Callable[[str], None]) -> Any:
    """transformers' TextStreamer (whole words and lines, never half a character), into `emit`."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                emit(text)

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _cancel_criteria(job: Job, on_token: Callable[[], None] | None) -> Any:
    """Stops generation once the reader has gone (checked after every token)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any,
                     **kwargs: Any) -> torch.BoolTensor:
            if on_token is not None:
                on_token()
            return torch.full((input_ids.shape[0],), job.cancelled,  # type: ignore[return-value]
                              dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


def _pad_token_id(model: Any, tokenizer: Any) -> int | None:
    """The model's pad token, else the tokenizer's, else end-of-sequence (as generate would)."""
    for candidate in (model.generation_config.pad_token_id, tokenizer.pad_token_id,
                      tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return None
