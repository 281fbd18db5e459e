"""A small model run in this process with Hugging Face transformers (the `brook[local]` extra).

The model (`BROOK_LOCAL_MODEL`: a hub id or a folder) is loaded once, on the first answer, in
a generating thread: the first answer downloads it into the Hugging Face cache, with
huggingface_hub's progress bars on the console. Answers are generated with the model's chat
template and streamed token by token.

Generation is CPU-bound and holds no socket, so it runs in real OS threads (`_Worker`s),
also under gunicorn's gevent worker, where a `threading.Thread` is a greenlet that would stop
every other stream while torch computes. Tokens come back through a `_Channel`: a deque the
worker appends to, plus a wake-up the reader waits on: a `threading.Event` in plain threads,
and under gevent a `gevent.event.Event` set by an `async_` watcher of the reader's hub, which
any thread may `send()`.

At most `LOCAL_MODEL_CONCURRENCY` answers generate at once (one per worker); up to
`LOCAL_MODEL_QUEUE` more wait their turn; beyond that an answer fails at once with
`model_busy`. A reader that stops reading (Stop, or the service closing the iterator)
cancels its generation at the next token.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..chat.tokens import ChatMessage
from ..config import Settings, local_model_name
from .base import ProviderError, Usage

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_END = object()
CLOSE_WAIT_SECONDS = 5.0
SET_HINT = ("set BROOK_LOCAL_MODEL to a local folder that holds the model (see "
            "docs/local-model.md), or configure another model service")


def _closed() -> ProviderError:
    return ProviderError("shutting_down", "Brook is shutting down. Please try again in a moment.")


def _patched() -> bool:
    """Whether gevent has patched `threading` (gunicorn's gevent worker, `brook serve`)."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("threading"))


def _real(module: str, name: str) -> Any:
    """The standard library's own `module.name`, even where gevent has replaced it."""
    if _patched():
        from gevent import monkey

        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


def _start_os_thread(target: Callable[[], None]) -> None:
    # Not threading.Thread: under gevent even the original class starts a greenlet, since it
    # calls the patched `_thread.start_new_thread`. The original of that starts an OS thread.
    _real("_thread", "start_new_thread")(target, ())


class _Channel:
    """Items from any OS thread to the one thread (or greenlet) that reads them.

    The reader's wake-up is bound where it first reads. Under gevent it is an `async_` watcher
    of that thread's hub: `send()` is safe from any thread, and while the watcher is started it
    keeps the loop alive, so a reader waiting on it is never taken for a deadlock. Elsewhere it
    is a `threading.Event`. No polling: a waiting reader costs nothing.
    """

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._ready: Any = None
        self._watcher: Any = None
        self._wake: Callable[[], None] = lambda: None

    def put(self, item: object) -> None:
        """Any thread: a deque append is atomic, and the wake-up is thread-safe."""
        self._items.append(item)
        self._wake()

    def get(self) -> object:
        if self._ready is None:
            self._bind()
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                pass
            self._ready.wait()
            self._ready.clear()  # then look again: a put after this sets it anew

    def _bind(self) -> None:
        # The wake-up is in place before the first look at the deque: an item put before
        # that is found by the look, one put after it wakes the reader.
        if _patched():
            import gevent
            from gevent.event import Event

            self._ready = Event()
            self._watcher = gevent.get_hub().loop.async_()  # this thread's hub
            self._watcher.start(self._ready.set)
            self._wake = self._watcher.send
        else:
            self._ready = threading.Event()
            self._wake = self._ready.set

    def close(self) -> None:
        """The reader's side, when it is done. A `send()` racing with this is harmless (libev
        allows it on a stopped watcher), so the watcher is only stopped, never freed here."""
        if self._watcher is not None:
            self._watcher.stop()


@dataclass(eq=False)
class _Job:
    messages: list[ChatMessage]
    channel: _Channel = field(default_factory=_Channel)  # to the reader: text, Usage, errors
    cancelled: bool = False  # set by the reader, read by the generating thread


_STOP = _Job([])


class _Worker:
    """One OS thread that generates answers, one at a time, from its inbox.

    Long-lived on purpose: under gevent, the libraries running here (transformers' weight
    loading pool, tqdm's monitor) start "threads" that are greenlets of this thread's hub.
    Between answers this thread waits in that hub, so those greenlets run and finish instead
    of being stranded, which would hang the process at exit.
    """

    def __init__(self, run: Callable[[_Job], None], done: Callable[[_Worker], None]) -> None:
        self.inbox = _Channel()
        self._run, self._done = run, done
        self.alive = _real("_thread", "allocate_lock")()  # held while the thread runs
        self.alive.acquire()
        _start_os_thread(self._main)

    def _main(self) -> None:
        try:
            while True:
                job = self.inbox.get()
                if job is _STOP:
                    self.inbox.close()
                    return
                assert isinstance(job, _Job)
                try:
                    self._run(job)  # never raises: failures go to the job's reader
                finally:
                    self._done(self)
        finally:
            self.alive.release()

    def join(self, timeout: float) -> bool:
        if self.alive.acquire(timeout=max(timeout, 0)):
            self.alive.release()
            return True
        return False


class _Gate:
    """At most `slots` answers generate (one per worker); up to `queue` wait; beyond that,
    `model_busy`. A real lock guards it, held for a few instructions only."""

    def __init__(self, slots: int, queue: int, run: Callable[[_Job], None]) -> None:
        self.slots, self.queue, self._run = slots, queue, run
        self.running = 0
        self.closed = False
        self.workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._waiting: deque[_Channel] = deque()
        self._lock = _real("_thread", "allocate_lock")()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def enter(self) -> _Worker | _Channel:
        """A worker to use now, or a channel that will carry one when it is this one's turn."""
        with self._lock:
            if self.closed:
                raise _closed()
            if self.running < self.slots:
                self.running += 1
                if self._idle:
                    return self._idle.pop()
                self.workers.append(_Worker(self._run, self.leave))
                return self.workers[-1]
            if len(self._waiting) >= self.queue:
                raise ProviderError(
                    "model_busy",
                    "The local model is busy with other answers right now. Please try again "
                    "in a moment.",
                )
            turn = _Channel()
            self._waiting.append(turn)
            return turn

    def leave(self, worker: _Worker) -> None:
        """From any thread: hand the worker to the first waiter, or let it idle."""
        with self._lock:
            if self._waiting and not self.closed:
                self._waiting.popleft().put(worker)
            else:
                self.running -= 1
                self._idle.append(worker)

    def abandon(self, turn: _Channel) -> None:
        """A waiter gave up: leave the queue, or pass on the worker it was just handed."""
        with self._lock:
            if turn in self._waiting:
                self._waiting.remove(turn)
                return
        worker = turn.get()
        if isinstance(worker, _Worker):
            self.leave(worker)

    def close(self, timeout: float) -> None:
        """Stop the workers and wait for them: a thread still freeing tensors while Python
        shuts down is killed inside torch's C++ code, and the process aborts."""
        with self._lock:
            self.closed = True
            workers, self.workers, self._idle = self.workers, [], []
            waiting, self._waiting = self._waiting, deque()
        for turn in waiting:
            turn.put(_closed())
        for worker in workers:
            worker.inbox.put(_STOP)
        deadline = time.monotonic() + timeout
        for worker in workers:
            if not worker.join(deadline - time.monotonic()):
                log.warning("a local model thread is still busy (loading the model?)")


class LocalModel:
    """The `Provider` for an in-process transformers model."""

    def __init__(self, settings: Settings,
                 on_token: Callable[[], None] | None = None) -> None:
        self.model: str | None = local_model_name(settings.local_model)
        self.source = settings.local_model
        self.device_choice = settings.local_model_device
        self.max_tokens = settings.local_model_max_tokens
        self.gate = _Gate(settings.local_model_concurrency, settings.local_model_queue,
                          self._generate)
        self.on_token = on_token  # called in the generating thread per token (tests pace it)
        self._load_lock = _real("_thread", "allocate_lock")()  # waited on in workers only
        self._loaded: tuple[Any, Any] | None = None
        self._jobs: set[_Job] = set()

    @property
    def running(self) -> int:
        """Answers generating now (a cancelled one counts until its worker has stopped)."""
        return self.gate.running

    def stream(self, messages: Sequence[ChatMessage]) -> Generator[str | Usage, None, None]:
        worker: object = self.gate.enter()
        if isinstance(worker, _Channel):
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
        assert isinstance(worker, _Worker)
        job = _Job(list(messages))
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

    def _generate(self, job: _Job) -> None:
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

    def _answer(self, job: _Job) -> None:
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

        device = self.device_choice
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # Every core but one: the web server keeps one to serve pages and other streams.
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - 1))
        log.info("loading the local model %s on %s (the first time, it is downloaded into the "
                 "Hugging Face cache; progress is shown below)", self.source, device)
        started = time.monotonic()
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source)
            model: Any = AutoModelForCausalLM.from_pretrained(
                self.source, dtype=torch.float32 if device == "cpu" else "auto")
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
        model.to(device)
        model.eval()
        log.info("local model %s ready on %s in %.1f s", self.model, device,
                 time.monotonic() - started)
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


def _streamer(tokenizer: Any, emit: Callable[[str], None]) -> Any:
    """transformers' TextStreamer (whole words and lines, never half a character), into `emit`."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                emit(text)

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _cancel_criteria(job: _Job, on_token: Callable[[], None] | None) -> Any:
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
