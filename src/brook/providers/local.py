"""A small model run in this process with Hugging Face transformers (the `brook[local]` extra).

The model (`BROOK_LOCAL_MODEL`: a hub id or a folder) is loaded once, on the first answer, in
a generating thread: the first answer downloads it into the Hugging Face cache, file by file,
and every answer waiting for it (the first, and those queued behind it) streams `Progress`:
bytes done and total per file, then the load into memory. A load that fails is tried again
only for an answer that comes after a back-off (LOCAL_MODEL_RETRY_SECONDS, doubling up to
ten minutes while it keeps failing); answers meanwhile fail at once, saying why. Answers are
generated with the model's chat template and streamed token by token.

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
import re
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_LOCAL_MODEL, Settings, library_environment, local_model_name
from ..messages import ChatMessage
from .base import Progress, ProviderError, Reasoning, Usage
from .reasoning import ThinkSplitter
from .threads import Channel, Gate, Job, Worker, real

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_END = object()
CLOSE_WAIT_SECONDS = 5.0
SET_HINT = ("set BROOK_LOCAL_MODEL to a local folder that holds the model (see "
            "docs/local-model.md), or configure another model service")
RETRY_CAP = 600.0  # the longest back-off after failed loads, in seconds
REPORT_EVERY = 0.25  # seconds between two progress reports within one file
# The weights transformers loads (a single file or an index and its shards); other weight
# files in a repository (other formats, consolidated copies, adapters) are not downloaded.
SAFETENSORS = re.compile(r"model(-\d+-of-\d+)?\.safetensors(\.index\.json)?")
PYTORCH = re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin(\.index\.json)?")
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".gguf",
           ".onnx", ".ot", ".index.json")


class Loading:
    """The model's load, as the answers waiting for it see it.

    Each waiting answer's channel watches it (the answer loading the model, and those queued
    behind it or waiting for it in another worker); a report goes to every one of them, so
    a reader anywhere sees the same progress. `waiting` marks the answers that wait for
    another's load.
    """

    def __init__(self) -> None:
        self._lock = real("_thread", "allocate_lock")()
        self._watchers: dict[Channel, bool] = {}  # the channel, and whether it only waits
        self._latest: Progress | None = None

    def watch(self, channel: Channel, waiting: bool) -> None:
        with self._lock:
            self._watchers[channel] = waiting
            latest = self._latest
        if latest is not None:
            channel.put(replace(latest, waiting=waiting))

    def unwatch(self, channel: Channel) -> None:
        with self._lock:
            self._watchers.pop(channel, None)

    def report(self, progress: Progress) -> None:
        """From the loading thread: the latest progress."""
        with self._lock:
            self._latest = progress
            watchers = list(self._watchers.items())
        for channel, waiting in watchers:
            channel.put(replace(progress, waiting=waiting))

    def end(self, model: str | None, ready: bool) -> None:
        """The load is over. If it succeeded, its watchers hear that the model is ready (an
        answer queued behind it then waits for its turn, not for the model); if it failed,
        its error follows."""
        with self._lock:
            self._latest = None
            watchers = list(self._watchers) if ready else []
        for channel in watchers:
            channel.put(Progress(model, "ready"))


class LocalModel:
    """The `Provider` for an in-process transformers model."""

    def __init__(self, settings: Settings,
                 on_token: Callable[[], None] | None = None) -> None:
        self.model: str | None = local_model_name(settings.local_model)
        self.source = settings.local_model
        self.device_choice = settings.local_model_device
        self.max_tokens = settings.local_model_max_tokens
        self.thinking = settings.local_model_thinking  # the chat template's enable_thinking
        self.gate = Gate(settings.local_model_concurrency, settings.local_model_queue,
                          self._generate)
        self.on_token = on_token  # called in the generating thread per token (tests pace it)
        self.retry = settings.local_model_retry
        self.loading = Loading()
        self._load_lock = real("_thread", "allocate_lock")()  # waited on in workers only
        self._loaded: tuple[Any, Any] | None = None
        self._failed: tuple[ProviderError, float, float] | None = None  # error, when, back-off
        self._jobs: set[Job] = set()

    @property
    def running(self) -> int:
        """Answers generating now (a cancelled one counts until its worker has stopped)."""
        return self.gate.running

    def stream(self, messages: Sequence[ChatMessage], *, temperature: float | None = None
               ) -> Generator[str | Reasoning | Usage | Progress, None, None]:
        worker: object = self.gate.enter()
        if isinstance(worker, Channel):
            turn = worker
            if self._loaded is None:
                self.loading.watch(turn, waiting=True)
            try:
                worker = turn.get()  # a worker, the error that the model is closing, progress
                while isinstance(worker, Progress):
                    yield worker
                    worker = turn.get()
            except BaseException:  # the reader was killed or went away while queued
                self.gate.abandon(turn)
                raise
            finally:
                self.loading.unwatch(turn)
                turn.close()
            if isinstance(worker, ProviderError):
                raise worker
        assert isinstance(worker, Worker)
        job = Job(list(messages), temperature=temperature)
        self._jobs.add(job)
        if self._loaded is None:
            self.loading.watch(job.channel, waiting=True)
        worker.inbox.put(job)
        think = ThinkSplitter()  # a thinking model's <think> block is its reasoning
        try:
            while True:
                item = job.channel.get()
                if item is _END:
                    yield from think.end()
                    return
                if isinstance(item, ProviderError):
                    raise item
                assert isinstance(item, str | Usage | Progress)
                if isinstance(item, str):
                    yield from think.feed(item)
                else:
                    yield item
        finally:
            job.cancelled = True  # the reader is gone or done: stop at the next token
            self.loading.unwatch(job.channel)
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
        model, tokenizer = self._load(job)
        if job.cancelled:
            return
        inputs, prompt_tokens, max_new = self._encode(model, tokenizer, job.messages)
        started = time.monotonic()
        sampling: dict[str, Any] = {}
        if job.temperature is not None:  # 0: greedy; otherwise sampled at that temperature
            sampling = ({"do_sample": False} if job.temperature == 0
                        else {"do_sample": True, "temperature": job.temperature})
        output = model.generate(
            **inputs, max_new_tokens=max_new, **sampling,
            streamer=_streamer(tokenizer, job.channel.put),
            stopping_criteria=_cancel_criteria(job, self.on_token),
            pad_token_id=_pad_token_id(model, tokenizer),
        )
        completion = int(output.shape[1]) - prompt_tokens
        log.info("local model %s: %d prompt tokens, %d new in %.1f s%s", self.model,
                 prompt_tokens, completion, time.monotonic() - started,
                 " (stopped)" if job.cancelled else "")
        job.channel.put(Usage(prompt_tokens, completion))

    def _load(self, job: Job) -> tuple[Any, Any]:
        """Load the tokenizer and model once (downloading them into the HF cache if need be).

        After a failure, answers fail at once with its error until the back-off is over.
        """
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded
            if self._failed is not None:
                error, failed_at, backoff = self._failed
                wait = failed_at + backoff - time.monotonic()
                if wait > 0:
                    raise ProviderError(error.code, f"{error.message} {_retry_note(wait)}")
            self.loading.watch(job.channel, waiting=False)  # this answer loads it
            try:
                self._loaded = self._load_now()
            except ProviderError as exc:
                backoff = self.retry if self._failed is None else min(
                    self._failed[2] * 2, max(RETRY_CAP, self.retry))
                self._failed = (exc, time.monotonic(), backoff)
                raise ProviderError(exc.code, f"{exc.message} {_retry_note(backoff)}") from exc
            finally:
                self.loading.end(self.model, ready=self._loaded is not None)
            self._failed = None
            return self._loaded

    def _load_now(self) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device, dtype = placement(self.device_choice)
        if device == "cpu" and library_environment().omp_num_threads is None:
            # Every core but one: the web server keeps one to serve pages and other streams.
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - 1))
        started = time.monotonic()
        folder, files = self._fetch()
        self.loading.report(Progress(self.model, "load", files))
        log.info("loading the local model %s on %s", self.model, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            # Straight onto the device, in the dtype it runs best: never built in host
            # memory first and then copied.
            model: Any = AutoModelForCausalLM.from_pretrained(
                folder, dtype=dtype, device_map=device)
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
                f"instruct (chat) model such as {DEFAULT_LOCAL_MODEL}.",
            )
        model.eval()
        log.info("local model %s ready on %s (%s) in %.1f s", self.model, model.device,
                 model.dtype, time.monotonic() - started)
        return model, tokenizer

    def _fetch(self) -> tuple[str, tuple[tuple[str, int, int | None], ...]]:
        """The model's folder (BROOK_LOCAL_MODEL's, or its snapshot in the Hugging Face
        cache, downloaded file by file as progress reports) and its files.

        Without the hub (no network, HF_HUB_OFFLINE), a snapshot already in the cache is used.
        """
        if os.path.isdir(self.source):
            return self.source, ()
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )

        try:
            info = HfApi().model_info(self.source, files_metadata=True)
        except (RepositoryNotFoundError, GatedRepoError) as exc:
            raise self._unavailable(exc) from exc
        except Exception as exc:  # the hub is out of reach: a copy in the cache will do
            try:
                folder: str = snapshot_download(self.source, local_files_only=True)
            except LocalEntryNotFoundError:
                raise self._unavailable(exc) from exc
            log.info("the Hugging Face hub is out of reach (%s): using the cached %s",
                     exc, self.source)
            return folder, ()
        sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or ()}
        # The small files first: a model that cannot load fails before its weights come.
        wanted = sorted(_weights_and_configs(list(sizes)), key=lambda name: sizes[name] or 0)
        done = dict.fromkeys(wanted, 0)
        last: list[Any] = [0.0, None]  # when the last report went, and what it said

        def report(now: bool = False) -> None:
            files = tuple((name, done[name], sizes[name]) for name in wanted)
            if files != last[1] and (now or time.monotonic() - last[0] >= REPORT_EVERY):
                last[:] = time.monotonic(), files
                self.loading.report(Progress(self.model, "download", files))

        total = sum(size or 0 for size in sizes.values() if size)
        log.info("downloading the local model %s (%d files, %.0f MB) into the Hugging Face "
                 "cache", self.source, len(wanted), total / 1e6)
        report(now=True)
        folder = ""
        for name in wanted:
            def progress(bytes_done: int, bytes_total: int | None, name: str = name) -> None:
                done[name] = bytes_done
                if bytes_total is not None:
                    sizes[name] = bytes_total
                report()

            try:
                path = hf_hub_download(self.source, name, revision=info.sha,
                                       tqdm_class=_counting_bar(progress))
            except Exception as exc:
                raise self._unavailable(exc) from exc
            folder = os.path.dirname(path)
            done[name] = sizes[name] = os.path.getsize(path)
            report(now=True)
        return folder, tuple((name, done[name], sizes[name]) for name in wanted)

    def _unavailable(self, exc: Exception) -> ProviderError:
        """The error for a download that failed, in words; the details go to the log."""
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

        log.error("could not load the local model %s: %s", self.source, exc)
        if isinstance(exc, GatedRepoError):
            why = ("the model is gated: accept its terms on huggingface.co and give this "
                   "server a token (HF_TOKEN)")
        elif isinstance(exc, RepositoryNotFoundError):
            why = "the Hugging Face hub has no such model (or it is private)"
        elif isinstance(exc, HfHubHTTPError) and exc.response is not None:
            why = (f"the Hugging Face hub answered HTTP {exc.response.status_code}; it may be "
                   "a passing fault")
        elif isinstance(exc, (ConnectionError, TimeoutError)) or _is_network_error(exc):
            why = ("this server cannot reach the Hugging Face hub: check its internet "
                   "access (or proxy)")
        else:
            why = "the download failed (the details are in the server log)"
        return ProviderError(
            "local_model_unavailable",
            f"Could not download the model {self.model}: {why}. Check that the model id is "
            f"right, or {SET_HINT}.",
        )

    def _encode(self, model: Any, tokenizer: Any, messages: list[ChatMessage]
                ) -> tuple[dict[str, Any], int, int]:
        """The prompt through the chat template, oldest turns dropped to leave room to answer."""
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 32_768)
        room = min(self.max_tokens, max(limit // 4, 1))
        while True:
            encoded = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt",
                enable_thinking=self.thinking)  # templates without thinking ignore it
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


def _retry_note(seconds: float) -> str:
    return f"Brook tries again for a message sent in {max(1, round(seconds))} s or later."


def _weights_and_configs(names: list[str]) -> list[str]:
    """The files of a hub repository that transformers loads the model from: every file at
    the top (configurations, tokenizer, licence) but weights it does not need."""
    top = [name for name in names if "/" not in name and not name.startswith(".")]
    safetensors = any(SAFETENSORS.fullmatch(name) for name in top)

    def needed(name: str) -> bool:
        if SAFETENSORS.fullmatch(name):
            return True
        if PYTORCH.fullmatch(name):
            return not safetensors
        return not name.endswith(WEIGHTS)

    return [name for name in top if needed(name)]


def _is_network_error(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a failure to reach a server (httpx's errors)."""
    while exc is not None:
        if type(exc).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout",
                                  "TimeoutException", "RemoteProtocolError",
                                  "OfflineModeIsEnabled"):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _counting_bar(report: Callable[[int, int | None], None]) -> type:
    """huggingface_hub's progress bar for one file, which also reports its bytes.

    A bar that huggingface_hub disables (on a console that is not a terminal, as a server's
    is) counts nothing itself, so the bytes are counted here. A Xet download's second bar
    (bytes received, "….transfer") is left out: the first counts the bytes written.
    """
    from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

    class CountingBar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._counts = not str(kwargs.get("name") or "").endswith(".transfer")
            self._bytes = int(kwargs.get("initial") or 0)
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
            if self._counts:
                report(self._bytes, self.total)

        def update(self, n: float | None = 1) -> bool | None:
            if self._counts and n:
                self._bytes += int(n)
                report(self._bytes, self.total)
            result: bool | None = super().update(n)
            return result

    return CountingBar


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
