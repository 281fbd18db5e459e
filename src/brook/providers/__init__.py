"""Model providers; `build_provider` is the one place that chooses one from the settings."""

from __future__ import annotations

from azure.core.credentials import TokenCredential

from ..config import MODEL_HELP, Settings
from .base import Progress, Provider, ProviderError, Reasoning, Unconfigured, Usage

__all__ = ["Progress", "Provider", "ProviderError", "Reasoning", "Unconfigured", "Usage",
           "build_provider"]


def build_provider(settings: Settings, credential: TokenCredential | None = None) -> Provider:
    if settings.provider == "none":
        return Unconfigured(MODEL_HELP)
    if settings.provider == "local":
        from .local import LocalModel  # the `local` extra: transformers and torch

        return LocalModel(settings)
    from .openai_compat import OpenAICompatible

    return OpenAICompatible.from_settings(settings, credential)
