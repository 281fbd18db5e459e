"""Model providers; `build_models` is the one place that makes them from the settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from azure.core.credentials import TokenCredential

from ..config import MODEL_HELP, ModelSpec, Settings
from .base import Progress, Provider, ProviderError, Reasoning, Unconfigured, Usage

__all__ = ["Choice", "Models", "Progress", "Provider", "ProviderError", "Reasoning",
           "Unconfigured", "Usage", "build_models", "build_provider"]


@dataclass(frozen=True)
class Choice:
    """A model people may pick: its id (stored with conversations and answers), the name
    shown, its provider, and whether it takes a temperature."""

    id: str
    name: str
    provider: Provider
    temperature: bool = True


class Models:
    """The models people may pick, by id; the first is the default. With none configured,
    the default is a stand-in that answers every message with what to set (MODEL_HELP)."""

    def __init__(self, choices: Sequence[Choice]) -> None:
        self.choices = list(choices)
        self._by_id = {choice.id: choice for choice in self.choices}
        self.default = self.choices[0] if self.choices else Choice(
            "", "", Unconfigured(MODEL_HELP))

    @classmethod
    def single(cls, provider: Provider) -> Models:
        """One model: `provider`, under its own name."""
        name = provider.model or "default"
        return cls([Choice(name, name, provider)])

    def get(self, model_id: str | None) -> Choice:
        """The model with this id; the default for None or an id no longer configured."""
        return self._by_id.get(model_id or "", self.default)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._by_id

    def __iter__(self) -> Iterator[Choice]:
        return iter(self.choices)

    def close(self) -> None:
        for choice in self.choices:
            choice.provider.close()


def build_models(settings: Settings, credential: TokenCredential | None = None) -> Models:
    """Every configured model (MODELS, or the one the single-model variables name)."""
    return Models([Choice(spec.id, spec.name, _provider(spec, settings, credential),
                          spec.temperature)
                   for spec in settings.model_specs])


def build_provider(settings: Settings, credential: TokenCredential | None = None) -> Provider:
    """The default model's provider (a stand-in when none is configured)."""
    specs = settings.model_specs
    if not specs:
        return Unconfigured(MODEL_HELP)
    return _provider(specs[0], settings, credential)


def _provider(spec: ModelSpec, settings: Settings,
              credential: TokenCredential | None) -> Provider:
    if spec.provider == "local":
        from .local import LocalModel  # the `local` extra: transformers and torch

        return LocalModel(settings)
    from .openai_compat import OpenAICompatible

    return OpenAICompatible.from_spec(spec, settings, credential)
