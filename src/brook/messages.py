"""The types chat and providers share: what a prompt is made of.

`brook.chat` builds the prompt (history from the database, trimmed to the token budget) and
`brook.providers` sends it to a model, so the prompt's type cannot live in either package
without one importing the other's internals: chat may import providers (it calls them), but
providers must never import chat. This module sits below both and imports nothing of
Brook's, so either may depend on it (import-linter's layers contract in pyproject.toml keeps
it that way). Keep it to plain data types that both sides genuinely share; behaviour belongs
in the package that owns it.

Not to be confused with `brook.models.Message`, the stored row: a `ChatMessage` is one entry
of what is sent to the model, made from such rows (and the system prompt).
"""

from __future__ import annotations

from typing import TypedDict


class ChatMessage(TypedDict):
    """One message of a prompt, in the Chat Completions shape every provider accepts."""

    role: str  # "system", "user" or "assistant"
    content: str
