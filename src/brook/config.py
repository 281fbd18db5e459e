"""Settings: read once from the environment (and an optional `.env`) in the app factory.

Every variable Brook reads is parsed here and nowhere else. A missing, malformed or
contradictory value raises `ConfigError` naming the variable and what to set, so start-up
stops with a message a person can act on instead of a stack trace later.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

T = TypeVar("T")

ProviderKind = Literal["openai", "azure", "local", "none"]
LocalDevice = Literal["auto", "cpu", "cuda"]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer in Markdown."
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# A small instruct model under Apache-2.0 (about 1 GB to download), run by the `local` extra.
DEFAULT_LOCAL_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


class ConfigError(ValueError):
    """A setting is missing, malformed or contradicts another one."""


@dataclass(frozen=True)
class Settings:
    """Typed settings. Field names mirror the environment variables in `.env.sample`."""

    database_url: str
    secret_key: str | None = None
    provider: ProviderKind = "none"
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    azure_openai_endpoint: str | None = None
    azure_openai_deployment: str | None = None
    azure_openai_api_key: str | None = field(default=None, repr=False)
    azure_openai_api_version: str = DEFAULT_AZURE_API_VERSION
    model_timeout: float = 60.0
    model_connect_timeout: float = 10.0
    model_max_retries: int = 2
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    prompt_token_budget: int = 16_000
    max_message_chars: int = 32_000
    flush_interval: float = 0.25
    flush_chars: int = 2_000
    database_entra_auth: bool = False
    database_pool_timeout: float = 30.0
    database_pool_size: int = 20
    appinsights_connection_string: str | None = field(default=None, repr=False)
    redis_url: str | None = field(default=None, repr=False)
    stream_coalesce: float = 0.025
    stream_keepalive: float = 15.0
    stream_lease: float = 10.0
    max_answers_per_worker: int = 300
    max_event_loop_lag: float = 2.0
    stream_expire: int = 600
    shutdown_grace: float = 25.0
    auth_appservice: bool = False
    trusted_proxies: int = 0
    log_level: str = "INFO"
    local_model: str = DEFAULT_LOCAL_MODEL
    local_model_concurrency: int = 1
    local_model_queue: int = 8
    local_model_max_tokens: int = 1024
    local_model_device: LocalDevice = "auto"

    @property
    def model_name(self) -> str | None:
        """The name stored with each answer: the Azure deployment, the OpenAI model, or the
        local model's hub id (a local folder's name only: its path stays on the server)."""
        if self.provider == "azure":
            return self.azure_openai_deployment
        if self.provider == "openai":
            return self.openai_model
        if self.provider == "local":
            return local_model_name(self.local_model)
        return None


MODEL_HELP = (
    "No language model is configured. Set OPENAI_API_KEY (and optionally OPENAI_MODEL), "
    "or OPENAI_BASE_URL for an OpenAI-compatible server such as Ollama, vLLM or "
    "llama.cpp, or AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT for Azure OpenAI, "
    "then restart Brook. To run a small model on this machine instead, install the local "
    "model extra (pip install torch==2.13.0, then pip install -e '.[local]'; `make run` does "
    "both) and restart Brook."
)


def local_model_installed() -> bool:
    """Whether the `local` extra (transformers and torch) is installed; imports neither."""
    return all(importlib.util.find_spec(name) is not None for name in ("transformers", "torch"))


def is_local_path(value: str) -> bool:
    """A filesystem path rather than a Hugging Face hub id (`org/name`)."""
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..") or (
        os.sep != "/" and os.sep in value)


def local_model_name(value: str) -> str:
    return Path(value).name if is_local_path(value) else value


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _parse(env: Mapping[str, str], name: str, default: T, convert: Callable[[str], T],
           what: str) -> T:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        return convert(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not valid: set it to {what}.") from None


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(raw)
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError(raw)
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def _database_url(env: Mapping[str, str], instance_path: Path) -> str:
    url = _get(env, "DATABASE_URL")
    if url is None:
        return f"sqlite:///{instance_path / 'brook.db'}"
    # Users and Azure hand out plain postgres URLs; Brook speaks psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith(("postgresql+psycopg://", "sqlite:")):
        return url
    raise ConfigError(
        f"DATABASE_URL={url.split('://')[0]}://… is not supported: set it to "
        "postgresql://user@host:5432/dbname (PostgreSQL) or sqlite:///path/to/file.db."
    )


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = _get(env, "REDIS_URL")
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "REDIS_URL is not a Redis URL: set it to redis://host:6379/0 (or rediss:// for "
            "TLS, as Azure Cache for Redis needs), or leave it unset for one process."
        )
    return url


def _provider(env: Mapping[str, str]) -> ProviderKind:
    choice = (_get(env, "MODEL_PROVIDER") or "auto").lower()
    has_azure = _get(env, "AZURE_OPENAI_ENDPOINT") is not None
    has_openai = any(_get(env, n) for n in ("OPENAI_API_KEY", "OPENAI_BASE_URL"))
    if choice == "auto":
        if has_azure and has_openai:
            raise ConfigError(
                "Both AZURE_OPENAI_ENDPOINT and OPENAI_API_KEY/OPENAI_BASE_URL are set: "
                "set MODEL_PROVIDER=azure or MODEL_PROVIDER=openai to choose one."
            )
        if has_azure:
            return "azure"
        if has_openai:
            return "openai"
        # Nothing configured: the in-process model when its extra is installed.
        return "local" if local_model_installed() else "none"
    if choice == "local" and not local_model_installed():
        raise ConfigError(
            "MODEL_PROVIDER=local needs the local model extra: run pip install torch==2.13.0, "
            "then pip install -e '.[local]' (or `make run`), or set MODEL_PROVIDER to another "
            "provider."
        )
    if choice in ("openai", "azure", "local", "none"):
        return choice  # type: ignore[return-value]
    raise ConfigError(
        f"MODEL_PROVIDER={choice!r} is not valid: set it to auto, openai, azure, local or none."
    )


def _local_model(env: Mapping[str, str], provider: ProviderKind) -> str:
    """BROOK_LOCAL_MODEL: a hub id, or a folder (made absolute; it must exist when used)."""
    value = _get(env, "BROOK_LOCAL_MODEL") or DEFAULT_LOCAL_MODEL
    if not is_local_path(value) and not Path(value).is_dir():
        return value
    path = Path(value).expanduser().resolve()
    if provider == "local" and not path.is_dir():
        raise ConfigError(
            f"BROOK_LOCAL_MODEL={value!r} is not a folder: set it to a folder holding a model "
            "saved with save_pretrained (config.json, the tokenizer and the weights), or to a "
            f"Hugging Face model id such as {DEFAULT_LOCAL_MODEL}."
        )
    return str(path)


def _local_device(env: Mapping[str, str]) -> LocalDevice:
    device = (_get(env, "LOCAL_MODEL_DEVICE") or "auto").lower()
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(
            f"LOCAL_MODEL_DEVICE={device!r} is not valid: set it to auto (a GPU when there is "
            "one), cpu or cuda."
        )
    return device  # type: ignore[return-value]


def load_settings(env: Mapping[str, str] | None = None,
                  instance_path: Path | None = None) -> Settings:
    """Build `Settings` from `env` (default: `os.environ`), failing fast on bad values."""
    env = os.environ if env is None else env
    instance_path = instance_path or Path(env.get("BROOK_INSTANCE_PATH")
                                          or "instance").resolve()
    provider = _provider(env)

    if provider == "azure":
        if _get(env, "AZURE_OPENAI_ENDPOINT") is None:
            raise ConfigError(
                "MODEL_PROVIDER=azure needs AZURE_OPENAI_ENDPOINT: set it to "
                "https://<resource>.openai.azure.com."
            )
        if _get(env, "AZURE_OPENAI_DEPLOYMENT") is None:
            raise ConfigError(
                "AZURE_OPENAI_ENDPOINT is set but AZURE_OPENAI_DEPLOYMENT is not: set it to "
                "the name of your chat model deployment."
            )
    if provider == "openai" and not any(
        _get(env, n) for n in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    ):
        raise ConfigError(
            "MODEL_PROVIDER=openai needs a model service: set OPENAI_API_KEY (OpenAI) or "
            "OPENAI_BASE_URL (an OpenAI-compatible server such as Ollama: http://localhost:11434/v1)."
        )

    database_url = _database_url(env, instance_path)
    entra = _parse(env, "DATABASE_ENTRA_AUTH", False, _bool, "true or false")
    if entra and not database_url.startswith("postgresql"):
        raise ConfigError(
            "DATABASE_ENTRA_AUTH=true needs a PostgreSQL DATABASE_URL: set it to "
            "postgresql://<identity name>@<server>.postgres.database.azure.com/<db>"
            "?sslmode=require, or set DATABASE_ENTRA_AUTH=false."
        )
    system_prompt = env.get("SYSTEM_PROMPT", "").strip() or DEFAULT_SYSTEM_PROMPT
    return Settings(
        database_url=database_url,
        secret_key=_get(env, "SECRET_KEY"),
        provider=provider,
        openai_api_key=_get(env, "OPENAI_API_KEY"),
        openai_base_url=_get(env, "OPENAI_BASE_URL"),
        openai_model=_get(env, "OPENAI_MODEL") or "gpt-4o-mini",
        azure_openai_endpoint=_get(env, "AZURE_OPENAI_ENDPOINT"),
        azure_openai_deployment=_get(env, "AZURE_OPENAI_DEPLOYMENT"),
        azure_openai_api_key=_get(env, "AZURE_OPENAI_API_KEY"),
        azure_openai_api_version=_get(env, "AZURE_OPENAI_API_VERSION")
        or DEFAULT_AZURE_API_VERSION,
        model_timeout=_parse(env, "MODEL_TIMEOUT", 60.0, _positive_float,
                             "a number of seconds greater than 0"),
        model_connect_timeout=_parse(env, "MODEL_CONNECT_TIMEOUT", 10.0, _positive_float,
                                     "a number of seconds greater than 0"),
        model_max_retries=_parse(env, "MODEL_MAX_RETRIES", 2, _non_negative_int,
                                 "a whole number, 0 or more"),
        system_prompt=system_prompt,
        prompt_token_budget=_parse(env, "PROMPT_TOKEN_BUDGET", 16_000, _positive_int,
                                   "a whole number of tokens greater than 0"),
        max_message_chars=_parse(env, "MAX_MESSAGE_CHARS", 32_000, _positive_int,
                                 "a whole number of characters greater than 0"),
        flush_interval=_parse(env, "FLUSH_INTERVAL_MS", 250, _positive_int,
                              "a whole number of milliseconds greater than 0") / 1000,
        flush_chars=_parse(env, "FLUSH_CHARS", 2_000, _positive_int,
                           "a whole number of characters greater than 0"),
        database_entra_auth=entra,
        database_pool_timeout=_parse(env, "DATABASE_POOL_TIMEOUT", 30.0, _positive_float,
                                     "a number of seconds greater than 0"),
        database_pool_size=_parse(env, "DATABASE_POOL_SIZE", 20, _positive_int,
                                  "a whole number of connections greater than 0"),
        appinsights_connection_string=_get(env, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
        redis_url=_redis_url(env),
        stream_coalesce=_parse(env, "STREAM_COALESCE_MS", 25, _non_negative_int,
                               "a whole number of milliseconds, 0 or more") / 1000,
        stream_keepalive=_parse(env, "STREAM_KEEPALIVE_SECONDS", 15.0, _positive_float,
                                "a number of seconds greater than 0"),
        stream_lease=_parse(env, "STREAM_LEASE_SECONDS", 10.0, _positive_float,
                            "a number of seconds greater than 0"),
        max_answers_per_worker=_parse(env, "MAX_ANSWERS_PER_WORKER", 300, _positive_int,
                                      "a whole number of answers greater than 0"),
        max_event_loop_lag=_parse(env, "MAX_EVENT_LOOP_LAG_MS", 2000, _positive_int,
                                  "a whole number of milliseconds greater than 0") / 1000,
        stream_expire=_parse(env, "STREAM_EXPIRE_SECONDS", 600, _positive_int,
                             "a whole number of seconds greater than 0"),
        shutdown_grace=_parse(env, "SHUTDOWN_GRACE_SECONDS", 25.0, _non_negative_float,
                              "a number of seconds, 0 or more"),
        auth_appservice=_parse(env, "WEBSITE_AUTH_ENABLED", False, _bool, "true or false"),
        trusted_proxies=_parse(env, "TRUSTED_PROXIES", 0, _non_negative_int,
                               "the number of reverse proxies in front of Brook (0 or more)"),
        log_level=_log_level(env),
        local_model=_local_model(env, provider),
        local_model_concurrency=_parse(env, "LOCAL_MODEL_CONCURRENCY", 1, _positive_int,
                                       "a whole number of answers greater than 0"),
        local_model_queue=_parse(env, "LOCAL_MODEL_QUEUE", 8, _non_negative_int,
                                 "a whole number of waiting answers, 0 or more"),
        local_model_max_tokens=_parse(env, "LOCAL_MODEL_MAX_TOKENS", 1024, _positive_int,
                                      "a whole number of tokens greater than 0"),
        local_model_device=_local_device(env),
    )


def _log_level(env: Mapping[str, str]) -> str:
    level = (_get(env, "LOG_LEVEL") or "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL={level!r} is not valid: set DEBUG, INFO, WARNING or ERROR.")
    return level
