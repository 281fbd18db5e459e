"""Settings: every environment variable Brook reads, typed, in one place.

Three pydantic-settings models, and nowhere else in Brook reads the environment:

- `ServingSettings`: where `brook serve` and gunicorn listen and how many workers they run.
  gunicorn's configuration (`gunicorn_conf.py`) needs only these, so it builds only these.
- `Settings`: the app's settings (database, model, streams, web), which include the serving
  ones. `create_app` reads them once, from the environment or from a mapping a test passes.
- `LibraryEnvironment`: variables that a library reads from the process environment itself
  (tiktoken, torch). Brook must read them there too, to agree with the library.

A missing, malformed or contradictory value raises `ConfigError` naming the variable and what
to set, so start-up stops with a message a person can act on instead of a stack trace later.
Values are stripped, and a blank one counts as unset (its default applies).

Without an explicit mapping Brook first loads `.env` from the working directory into the
process environment (python-dotenv; a variable already set wins). Into the process
environment rather than only into these models: the libraries that read their own variables
(azure-identity's AZURE_CLIENT_ID, tiktoken, torch, Hugging Face) and gunicorn's workers
see them too.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from dotenv import load_dotenv
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ProviderKind = Literal["openai", "azure", "local", "none"]
LocalDevice = Literal["auto", "cpu", "cuda"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
AuthMode = Literal["anonymous", "appservice", "oidc"]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer in Markdown."
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# A small instruct model under Apache-2.0 (1.5 GB to download), run by the `local` extra;
# why this one, its speed and the others: docs/local-model.md.
DEFAULT_LOCAL_MODEL = "Qwen/Qwen3-0.6B"


class ConfigError(ValueError):
    """A setting is missing, malformed or contradicts another one."""


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


def cuda_problem() -> str | None:
    """Why torch cannot use a CUDA GPU here, or None when it can. Imports torch (seconds):
    only asked when LOCAL_MODEL_DEVICE=cuda is set."""
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    if not torch.cuda.is_available():
        return "torch finds no usable NVIDIA GPU (no device, or no driver for it)"
    return None


def is_local_path(value: str) -> bool:
    """A filesystem path rather than a Hugging Face hub id (`org/name`)."""
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..") or (
        os.sep != "/" and os.sep in value)


def local_model_name(value: str) -> str:
    return Path(value).name if is_local_path(value) else value


# -- reading the environment ------------------------------------------------------------------

class _Environment(EnvSettingsSource):
    """Environment variables from `environ` (the process's, or a mapping a test passes):
    values stripped, blank ones left out so that their defaults apply."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env_vars = {name: value.strip() for name, value in environ.items()
                         if isinstance(value, str) and value.strip()}


class _FromEnvironment(BaseSettings):
    """Base of Brook's settings: variables matched by their exact (upper-case) names, read
    only through `_build`, which turns validation errors into `ConfigError`."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        extra="forbid",  # Settings(field=...) is a mistake: give load_settings a mapping
        hide_input_in_errors=True,  # a ValidationError never carries a secret
        protected_namespaces=(),  # model_timeout etc. are Brook's names, not pydantic's
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings()` reads the process environment the way `_build` reads a mapping."""
        return init_settings, _Environment(settings_cls, os.environ)

    @classmethod
    def _build(cls, env: Mapping[str, str] | None) -> Self:
        """Validate `env` (default: `.env`, then the process environment) into settings."""
        source = _Environment(cls, process_environment() if env is None else env)
        try:
            # pydantic-settings' own argument: build from these sources only (no mypy plugin).
            return cls(_build_sources=((source,), {}))  # type: ignore[call-arg]
        except ValidationError as exc:
            raise _config_error(cls, exc, source.env_vars) from None


def _config_error(model: type[BaseSettings], exc: ValidationError,
                  env: Mapping[str, Any]) -> ConfigError:
    """One `ConfigError` for every problem, each naming its variable and what to set."""
    described = {}
    for field in model.model_fields.values():
        for name in _names(field.validation_alias):
            described[name] = field.description or "a valid value"
    messages = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):  # a validator's own message
            message = str(cause)
        elif error["loc"] and error["loc"][0] in described:
            name = str(error["loc"][0])
            message = f"{name}={env.get(name)!r} is not valid: set it to {described[name]}."
        else:  # not expected: every field is read from a named variable
            message = f"{error['msg']} (at {'.'.join(map(str, error['loc']))})."
        if message not in messages:
            messages.append(message)
    return ConfigError("\n".join(messages))


def _names(alias: str | AliasChoices | Any) -> list[str]:
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return []


def _milliseconds(value: object) -> object:
    """A variable in whole milliseconds (`FLUSH_INTERVAL_MS=250`) as seconds (0.25)."""
    return int(value) / 1000 if isinstance(value, str) else value


def _variable(name: str, default: Any, what: str | None = None, **constraints: Any) -> Any:
    """A field read from the variable `name`; `what` completes "set it to ..." in errors."""
    return Field(default, validation_alias=name, description=what, **constraints)


def _secret(name: str) -> Any:
    """An optional secret: never shown in `repr` (logs, tracebacks)."""
    return Field(None, validation_alias=name, repr=False)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _comma_list(value: object) -> object:
    """A comma-separated variable (`a@x.com, b@y.org`) as a set of lower-case entries."""
    if isinstance(value, str):
        return frozenset(item.strip().lower() for item in value.split(",") if item.strip())
    return value


def _domains(value: object) -> object:
    """AUTH_ALLOWED_DOMAINS: `example.com, @example.org` as {"example.com", "example.org"}."""
    items = _comma_list(value)
    if isinstance(items, frozenset):
        return frozenset(item.removeprefix("@") for item in items)
    return items


Milliseconds = Annotated[float, BeforeValidator(_milliseconds)]
EmailSet = Annotated[frozenset[str], NoDecode, BeforeValidator(_comma_list)]
DomainSet = Annotated[frozenset[str], NoDecode, BeforeValidator(_domains)]
SECONDS = "a number of seconds greater than 0"
LIMIT = "a whole number, 0 or more (0: no limit)"


# -- the settings ------------------------------------------------------------------------------

class ServingSettings(_FromEnvironment):
    """Where `brook serve` and gunicorn listen, and how: all gunicorn's configuration needs,
    so it reads no database or model settings (and fails on none of them)."""

    host: str = _variable("HOST", "127.0.0.1")
    port: int = _variable("PORT", 8000, "a port number from 1 to 65535", ge=1, le=65535)
    web_concurrency: PositiveInt = _variable(
        "WEB_CONCURRENCY", 1, "a whole number of gunicorn workers greater than 0")
    worker_connections: PositiveInt = _variable(
        "GUNICORN_WORKER_CONNECTIONS", 10_000, "a whole number of connections greater than 0")
    shutdown_grace: NonNegativeFloat = _variable(
        "SHUTDOWN_GRACE_SECONDS", 25.0, "a number of seconds, 0 or more")


# A model's id in MODELS, and so in a conversation's `model`.
MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$"


class ModelSpec(BaseModel):
    """One model people may pick: an entry of MODELS (a JSON list; README, Models).

    Unset fields take the single-model variables' values: `model` the id, `name` the id,
    `base_url` and `api_key` OPENAI_BASE_URL and OPENAI_API_KEY (openai), `endpoint`,
    `api_version` and `api_key` AZURE_OPENAI_* (azure; keyless without a key).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=MODEL_ID)]
    name: Annotated[str, StringConstraints(max_length=100)] = ""
    provider: Literal["azure", "openai", "local"]
    model: str = ""  # the deployment, the API's model name, or the local model's hub id
    api: Literal["chat", "responses"] = "chat"
    base_url: str | None = None
    endpoint: str | None = None
    api_version: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    reasoning_summary: Literal["auto", "concise", "detailed"] | None = None
    temperature: bool = True  # whether the model takes a temperature (reasoning ones do not)
    default: bool = False


_MODEL_LIST = TypeAdapter(list[ModelSpec])


def _models(value: object) -> object:
    """MODELS: a JSON list of models, or a ConfigError that shows no value (they may hold
    keys)."""
    if value is None or isinstance(value, list):
        return value
    try:
        return _MODEL_LIST.validate_json(str(value))
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'the list'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"MODELS is not a valid list of models ({where}): set it to a JSON list such as "
            '[{"id": "gpt-4.1", "provider": "azure"}] (README, Models).') from None


class Settings(ServingSettings):
    """Typed settings: each field names the variable it is read from (see `.env.sample`)."""

    # Always set by _derived: made absolute against the working directory at start-up.
    instance_path: Path = _variable("BROOK_INSTANCE_PATH", Path("instance"))
    # Always set by _derived: the SQLite file in the instance folder unless DATABASE_URL is.
    database_url: str = Field("", validation_alias="DATABASE_URL", repr=False)
    secret_key: str | None = _secret("SECRET_KEY")
    provider: ProviderKind = _variable(
        "MODEL_PROVIDER", "none", "auto, openai, azure, local or none")
    openai_api_key: str | None = _secret("OPENAI_API_KEY")
    openai_base_url: str | None = _variable("OPENAI_BASE_URL", None)
    openai_model: str = _variable("OPENAI_MODEL", "gpt-4o-mini")
    # Several models to pick from (ModelSpec); unset: the one the variables above configure.
    models: Annotated[list[ModelSpec] | None, NoDecode, BeforeValidator(_models)] = Field(
        None, validation_alias="MODELS", repr=False)
    azure_openai_endpoint: str | None = _variable("AZURE_OPENAI_ENDPOINT", None)
    azure_openai_deployment: str | None = _variable("AZURE_OPENAI_DEPLOYMENT", None)
    azure_openai_api_key: str | None = _secret("AZURE_OPENAI_API_KEY")
    azure_openai_api_version: str = _variable("AZURE_OPENAI_API_VERSION",
                                              DEFAULT_AZURE_API_VERSION)
    model_timeout: PositiveFloat = _variable("MODEL_TIMEOUT", 60.0, SECONDS)
    model_connect_timeout: PositiveFloat = _variable("MODEL_CONNECT_TIMEOUT", 10.0, SECONDS)
    model_max_retries: NonNegativeInt = _variable(
        "MODEL_MAX_RETRIES", 2, "a whole number, 0 or more")
    system_prompt: str = _variable("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT)
    # After a conversation's first answer, ask its model for a title (chat/titles.py).
    model_titles: bool = _variable("MODEL_TITLES", True, "true or false")
    prompt_token_budget: PositiveInt = _variable(
        "PROMPT_TOKEN_BUDGET", 16_000, "a whole number of tokens greater than 0")
    max_message_chars: PositiveInt = _variable(
        "MAX_MESSAGE_CHARS", 32_000, "a whole number of characters greater than 0")
    flush_interval: Milliseconds = _variable(
        "FLUSH_INTERVAL_MS", 0.25, "a whole number of milliseconds greater than 0", gt=0)
    flush_chars: PositiveInt = _variable(
        "FLUSH_CHARS", 2_000, "a whole number of characters greater than 0")
    database_entra_auth: bool = _variable("DATABASE_ENTRA_AUTH", False, "true or false")
    database_pool_timeout: PositiveFloat = _variable("DATABASE_POOL_TIMEOUT", 30.0, SECONDS)
    database_pool_size: PositiveInt = _variable(
        "DATABASE_POOL_SIZE", 20, "a whole number of connections greater than 0")
    appinsights_connection_string: str | None = _secret("APPLICATIONINSIGHTS_CONNECTION_STRING")
    appinsights_entra_auth: bool = _variable("APPLICATIONINSIGHTS_ENTRA_AUTH", False,
                                             "true or false")
    redis_url: str | None = _secret("REDIS_URL")
    stream_coalesce: Milliseconds = _variable(
        "STREAM_COALESCE_MS", 0.025, "a whole number of milliseconds, 0 or more", ge=0)
    stream_keepalive: PositiveFloat = _variable("STREAM_KEEPALIVE_SECONDS", 15.0, SECONDS)
    stream_lease: PositiveFloat = _variable("STREAM_LEASE_SECONDS", 10.0, SECONDS)
    max_answers_per_worker: PositiveInt = _variable(
        "MAX_ANSWERS_PER_WORKER", 300, "a whole number of answers greater than 0")
    max_event_loop_lag: Milliseconds = _variable(
        "MAX_EVENT_LOOP_LAG_MS", 2.0, "a whole number of milliseconds greater than 0", gt=0)
    stream_expire: PositiveInt = _variable(
        "STREAM_EXPIRE_SECONDS", 600, "a whole number of seconds greater than 0")
    # Set by App Service when its Authentication is on; the default AUTH_MODE then.
    website_auth_enabled: bool = _variable("WEBSITE_AUTH_ENABLED", False, "true or false")
    # Who may use Brook: see `auth_mode` (unset: from WEBSITE_AUTH_ENABLED).
    auth_mode_choice: Annotated[AuthMode | None, BeforeValidator(_lower)] = _variable(
        "AUTH_MODE", None, "anonymous, appservice or oidc")
    oidc_issuer: str | None = _variable("OIDC_ISSUER", None)
    oidc_client_id: str | None = _variable("OIDC_CLIENT_ID", None)
    oidc_client_secret: str | None = _secret("OIDC_CLIENT_SECRET")
    oidc_scopes: str = _variable("OIDC_SCOPES", "openid email profile")
    auth_allowed_emails: EmailSet = _variable(
        "AUTH_ALLOWED_EMAILS", frozenset(), "e-mail addresses separated by commas")
    auth_allowed_domains: DomainSet = _variable(
        "AUTH_ALLOWED_DOMAINS", frozenset(), "domain names separated by commas")
    admin_emails: EmailSet = _variable(
        "ADMIN_EMAILS", frozenset(), "e-mail addresses separated by commas")
    trusted_proxies: NonNegativeInt = _variable(
        "TRUSTED_PROXIES", 0, "the number of reverse proxies in front of Brook (0 or more)")
    log_level: Annotated[LogLevel, BeforeValidator(str.upper)] = _variable(
        "LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR")
    # A hub id, or a folder (made absolute by _derived; it must exist when used).
    local_model: str = _variable("BROOK_LOCAL_MODEL", DEFAULT_LOCAL_MODEL)
    local_model_concurrency: PositiveInt = _variable(
        "LOCAL_MODEL_CONCURRENCY", 1, "a whole number of answers greater than 0")
    local_model_queue: NonNegativeInt = _variable(
        "LOCAL_MODEL_QUEUE", 8, "a whole number of waiting answers, 0 or more")
    local_model_max_tokens: PositiveInt = _variable(
        "LOCAL_MODEL_MAX_TOKENS", 1024, "a whole number of tokens greater than 0")
    # Per-owner limits (chat/limits.py), 0 turns one off; SIGNED_IN_… for signed-in owners
    # (unset: the same as everyone's). ADMIN_EMAILS have none.
    limit_answers_per_minute: NonNegativeInt = _variable(
        "LIMIT_ANSWERS_PER_MINUTE", 10, LIMIT)
    limit_concurrent_answers: NonNegativeInt = _variable(
        "LIMIT_CONCURRENT_ANSWERS", 2, LIMIT)
    limit_tokens_per_day: NonNegativeInt = _variable("LIMIT_TOKENS_PER_DAY", 200_000, LIMIT)
    limit_conversations_per_day: NonNegativeInt = _variable(
        "LIMIT_CONVERSATIONS_PER_DAY", 100, LIMIT)
    limit_stored_conversations: NonNegativeInt = _variable(
        "LIMIT_STORED_CONVERSATIONS", 1000, LIMIT)
    signed_in_limit_answers_per_minute: NonNegativeInt | None = _variable(
        "SIGNED_IN_LIMIT_ANSWERS_PER_MINUTE", None, LIMIT)
    signed_in_limit_concurrent_answers: NonNegativeInt | None = _variable(
        "SIGNED_IN_LIMIT_CONCURRENT_ANSWERS", None, LIMIT)
    signed_in_limit_tokens_per_day: NonNegativeInt | None = _variable(
        "SIGNED_IN_LIMIT_TOKENS_PER_DAY", None, LIMIT)
    signed_in_limit_conversations_per_day: NonNegativeInt | None = _variable(
        "SIGNED_IN_LIMIT_CONVERSATIONS_PER_DAY", None, LIMIT)
    signed_in_limit_stored_conversations: NonNegativeInt | None = _variable(
        "SIGNED_IN_LIMIT_STORED_CONVERSATIONS", None, LIMIT)
    budget_tokens_per_day: NonNegativeInt = _variable("BUDGET_TOKENS_PER_DAY", 2_000_000, LIMIT)
    local_model_device: Annotated[LocalDevice, BeforeValidator(str.lower)] = _variable(
        "LOCAL_MODEL_DEVICE", "auto", "auto (a GPU when there is one), cpu or cuda")
    # Whether a model that can think before it answers (Qwen3's chat templates read
    # `enable_thinking`; other templates ignore it) does. Its <think>…</think> block streams
    # as reasoning (providers/reasoning.py). Off by default: on a CPU it takes long.
    local_model_thinking: bool = _variable("LOCAL_MODEL_THINKING", False, "true or false")
    local_model_retry: PositiveFloat = _variable("LOCAL_MODEL_RETRY_SECONDS", 30.0, SECONDS)

    @property
    def auth_mode(self) -> AuthMode:
        """AUTH_MODE, or by default `appservice` where App Service Authentication is on
        (WEBSITE_AUTH_ENABLED=true) and `anonymous` elsewhere."""
        if self.auth_mode_choice is not None:
            return self.auth_mode_choice
        return "appservice" if self.website_auth_enabled else "anonymous"

    @property
    def auth_appservice(self) -> bool:
        """The owner is App Service Authentication's signed-in principal."""
        return self.auth_mode == "appservice"

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

    @cached_property
    def model_specs(self) -> list[ModelSpec]:
        """The models people may pick, the default first, each field filled in: MODELS, or
        the one model the single-model variables configure (none: no model)."""
        if self.models is None:
            if self.provider == "none" or self.model_name is None:
                return []
            specs = [ModelSpec(id=self.model_name, provider=self.provider)]
        else:
            specs = sorted(self.models, key=lambda spec: not spec.default)
        filled = []
        for spec in specs:
            values: dict[str, Any] = {"name": spec.name or spec.id, "model": spec.model or spec.id}
            if spec.provider == "openai":
                values |= {"base_url": spec.base_url or self.openai_base_url,
                           "api_key": spec.api_key or self.openai_api_key}
            elif spec.provider == "azure":
                values |= {"endpoint": spec.endpoint or self.azure_openai_endpoint,
                           "api_version": spec.api_version or self.azure_openai_api_version,
                           "api_key": spec.api_key or self.azure_openai_api_key}
                if self.models is None:
                    values["model"] = self.azure_openai_deployment
            else:
                values["model"] = local_model_name(self.local_model)
            filled.append(spec.model_copy(update=values))
        return filled

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """The values that depend on other variables, from the raw ones (keyed by variable
        name): the default database, the provider `auto` picks, the local model's folder."""
        values = dict(data)
        for name, value in values.items():
            if isinstance(value, str) and value.startswith("@Microsoft.KeyVault("):
                # App Service passes a reference it could not resolve on as its text.
                raise ConfigError(
                    f"{name} is an unresolved Key Vault reference: App Service could not "
                    "read the secret, so the setting holds the reference's text. Check "
                    "that the app's identity has Key Vault Secrets User on the vault and is "
                    "the site's keyVaultReferenceIdentity, then restart the app "
                    "(docs/deploy.md, Key Vault).")
        instance = Path(values.get("BROOK_INSTANCE_PATH") or "instance").resolve()
        values["BROOK_INSTANCE_PATH"] = instance
        values.setdefault("DATABASE_URL", f"sqlite:///{instance / 'brook.db'}")
        if values.get("MODELS") and not values.get("MODEL_PROVIDER"):
            values["MODEL_PROVIDER"] = "none"  # MODELS names each model's provider
        provider = _provider(values)
        values["MODEL_PROVIDER"] = provider
        values["BROOK_LOCAL_MODEL"] = _local_model(values, provider)
        return values

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
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

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "REDIS_URL is not a Redis URL: set it to redis://host:6379/0 (or rediss:// for "
                "TLS, as Azure Cache for Redis needs), or leave it unset for one process."
            )
        return url

    @model_validator(mode="after")
    def _cuda_is_there(self) -> Self:
        if (self.provider == "local" and self.local_model_device == "cuda"
                and (problem := cuda_problem()) is not None):
            raise ConfigError(
                f"LOCAL_MODEL_DEVICE=cuda, but {problem}: set LOCAL_MODEL_DEVICE=auto (a GPU "
                "when there is one, else the CPU) or cpu, or install torch's CUDA build on a "
                "machine with an NVIDIA GPU (`make run` picks it there; see README)."
            )
        return self

    @model_validator(mode="after")
    def _models_are_coherent(self) -> Self:
        if not self.models:
            if self.models == []:
                raise ConfigError("MODELS is an empty list: name at least one model, or unset "
                                  "it to use the one model the other variables configure.")
            return self
        ids = [spec.id for spec in self.models]
        if len(set(ids)) != len(ids):
            raise ConfigError("MODELS names a model id twice: give each model its own id.")
        if sum(spec.default for spec in self.models) > 1:
            raise ConfigError("MODELS marks more than one model as the default: mark one.")
        if sum(spec.provider == "local" for spec in self.models) > 1:
            raise ConfigError("MODELS has more than one local model: Brook runs one in "
                              "process (BROOK_LOCAL_MODEL).")
        for spec in self.models:
            if spec.provider == "azure" and not (spec.endpoint or self.azure_openai_endpoint):
                raise ConfigError(f"MODELS: the azure model {spec.id!r} needs an endpoint: set "
                                  "its endpoint, or AZURE_OPENAI_ENDPOINT.")
            if spec.provider == "openai" and not (spec.base_url or self.openai_base_url
                                                  or spec.api_key or self.openai_api_key):
                raise ConfigError(f"MODELS: the openai model {spec.id!r} needs a base_url or "
                                  "an api_key (or OPENAI_BASE_URL or OPENAI_API_KEY).")
            if spec.provider == "local" and not local_model_installed():
                raise ConfigError("MODELS has a local model, which needs the local model "
                                  "extra: pip install torch==2.13.0, then pip install -e "
                                  "'.[local]' (or `make run`).")
        return self

    @model_validator(mode="after")
    def _auth_is_complete(self) -> Self:
        if self.auth_mode == "appservice" and not self.website_auth_enabled:
            raise ConfigError(
                "AUTH_MODE=appservice, but App Service Authentication is not on here "
                "(WEBSITE_AUTH_ENABLED is not true), so its sign-in headers could be forged: "
                "turn Authentication on for the web app, or set AUTH_MODE=oidc or anonymous."
            )
        if self.auth_mode != "oidc":
            return self
        if not self.oidc_issuer:
            raise ConfigError(
                "AUTH_MODE=oidc needs OIDC_ISSUER: set it to your OpenID provider's issuer URL "
                "(the address before /.well-known/openid-configuration)."
            )
        if not self.oidc_client_id:
            raise ConfigError(
                "AUTH_MODE=oidc needs OIDC_CLIENT_ID: set it (and OIDC_CLIENT_SECRET) to the "
                "client id your OpenID provider gave Brook when you registered it."
            )
        issuer = urlsplit(self.oidc_issuer or "")
        local = issuer.hostname in ("localhost", "127.0.0.1", "::1")
        if not issuer.hostname or not (issuer.scheme == "https"
                                       or (issuer.scheme == "http" and local)):
            raise ConfigError(
                f"OIDC_ISSUER={self.oidc_issuer!r} is not valid: set it to the provider's "
                "https:// issuer URL, such as https://login.microsoftonline.com/<tenant>/v2.0, "
                "https://accounts.google.com or https://<keycloak>/realms/<realm>."
            )
        if "openid" not in self.oidc_scopes.split():
            raise ConfigError(
                f"OIDC_SCOPES={self.oidc_scopes!r} lacks openid: set it to "
                "\"openid email profile\" (the default) or another list that includes openid."
            )
        return self

    @model_validator(mode="after")
    def _entra_needs_postgres(self) -> Self:
        if self.database_entra_auth and not self.database_url.startswith("postgresql"):
            raise ConfigError(
                "DATABASE_ENTRA_AUTH=true needs a PostgreSQL DATABASE_URL: set it to "
                "postgresql://<identity name>@<server>.postgres.database.azure.com/<db>"
                "?sslmode=require, or set DATABASE_ENTRA_AUTH=false."
            )
        return self


def _provider(values: Mapping[str, Any]) -> str:
    """MODEL_PROVIDER, with `auto` (the default) resolved from the variables that are set.
    An unknown choice is returned as it is, for the field to refuse."""
    choice = str(values.get("MODEL_PROVIDER") or "auto").lower()
    has_azure = "AZURE_OPENAI_ENDPOINT" in values
    has_openai = "OPENAI_API_KEY" in values or "OPENAI_BASE_URL" in values
    if choice == "auto":
        if has_azure and has_openai:
            raise ConfigError(
                "Both AZURE_OPENAI_ENDPOINT and OPENAI_API_KEY/OPENAI_BASE_URL are set: "
                "set MODEL_PROVIDER=azure or MODEL_PROVIDER=openai to choose one."
            )
        if has_azure:
            choice = "azure"
        elif has_openai:
            choice = "openai"
        else:  # nothing configured: the in-process model when its extra is installed
            return "local" if local_model_installed() else "none"
    if choice == "local" and not local_model_installed():
        raise ConfigError(
            "MODEL_PROVIDER=local needs the local model extra: run pip install torch==2.13.0, "
            "then pip install -e '.[local]' (or `make run`), or set MODEL_PROVIDER to another "
            "provider."
        )
    if choice == "azure":
        if not has_azure:
            raise ConfigError(
                "MODEL_PROVIDER=azure needs AZURE_OPENAI_ENDPOINT: set it to "
                "https://<resource>.openai.azure.com."
            )
        if "AZURE_OPENAI_DEPLOYMENT" not in values:
            raise ConfigError(
                "AZURE_OPENAI_ENDPOINT is set but AZURE_OPENAI_DEPLOYMENT is not: set it to "
                "the name of your chat model deployment."
            )
    if choice == "openai" and not has_openai:
        raise ConfigError(
            "MODEL_PROVIDER=openai needs a model service: set OPENAI_API_KEY (OpenAI) or "
            "OPENAI_BASE_URL (an OpenAI-compatible server such as Ollama: http://localhost:11434/v1)."
        )
    return choice


def _local_model(values: Mapping[str, Any], provider: str) -> str:
    """BROOK_LOCAL_MODEL: a hub id, or a folder (made absolute; it must exist when used)."""
    value = str(values.get("BROOK_LOCAL_MODEL") or DEFAULT_LOCAL_MODEL)
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


class LibraryEnvironment(BaseSettings):
    """Variables a library reads from the process environment itself, which Brook reads from
    there too (never from a mapping given to `create_app`), so that both agree: tiktoken's
    cache, where Brook checks for an encoding before asking tiktoken (which would otherwise
    download it), and torch's thread count, which Brook chooses only when it is unset.
    Read exactly as the libraries read them: not stripped, and never refused."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, extra="ignore")

    # tiktoken's own order and default (tiktoken/load.py).
    tiktoken_cache_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "data-gym-cache",
        validation_alias=AliasChoices("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"))
    omp_num_threads: str | None = Field(default=None, validation_alias="OMP_NUM_THREADS")


# -- entry points ------------------------------------------------------------------------------

def load_settings(env: Mapping[str, str] | None = None,
                  instance_path: Path | None = None) -> Settings:
    """Build `Settings` from `env` (default: `.env`, then `os.environ`), failing fast on bad
    values. `instance_path` replaces BROOK_INSTANCE_PATH."""
    if instance_path is not None:
        env = {**(process_environment() if env is None else env),
               "BROOK_INSTANCE_PATH": str(instance_path)}
    return Settings._build(env)


def load_serving_settings(env: Mapping[str, str] | None = None) -> ServingSettings:
    """Only the serving settings (HOST, PORT, workers): what gunicorn's configuration needs."""
    return ServingSettings._build(env)


def process_environment() -> Mapping[str, str]:
    """The process environment, after loading `.env` from the working directory into it
    (a variable already set wins): see this module's docstring for why into the process."""
    load_dotenv(".env")
    return os.environ


def library_environment() -> LibraryEnvironment:
    """The library variables, read from the process environment now."""
    return LibraryEnvironment()


def environment_variables() -> list[str]:
    """Every variable Brook reads, in the order the settings declare them."""
    names: list[str] = []
    for model in (Settings, LibraryEnvironment):
        for field in model.model_fields.values():
            names += [name for name in _names(field.validation_alias) if name not in names]
    return names
