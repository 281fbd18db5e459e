"""ChatGPT's export (`conversations.json`, in the zip its "Export data" mails), read for
import (transfer.py stores it).

The file is a list of conversations, each a tree of messages (`mapping`: node id -> {message,
parent, children}) in which every edit or regenerated answer starts a branch; `current_node`
is the last message of the branch ChatGPT shows. Brook imports that branch, from its root to
`current_node`, and of it the messages a person sees as text:

- written by the user or by ChatGPT (`author.role` "user" or "assistant"): system
  prompts, tools' output (browsing, code runs) and nodes with no message are left out;
- text (`content_type` "text" or "multimodal_text"): the string parts, joined by a blank
  line; images, files, code sent to a tool, its results and reasoning summaries are left
  out, and so is a message with no text left;
- shown: not `metadata.is_visually_hidden_from_conversation` (custom instructions and the
  like), and addressed to everyone (an assistant message to a tool, `recipient` other than
  "all", is a tool call);
- messages of one author in a row (an answer around a tool call) become one message.

Times are the messages' `create_time` (seconds since 1970), or the one before; the model is
`metadata.model_slug`; a conversation with no title is named by its first message, as Brook
names one. An answer ChatGPT left unfinished is `stopped`. A conversation with no
message left is not imported (counted as skipped); a file with none at all is refused, as is
a conversation whose `current_node` or a parent is missing from its mapping, or whose
parents loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, StrictBool, StrictStr

from ..models import default_title, utcnow
from .imported import (
    MAX_CONVERSATIONS,
    MAX_MESSAGES,
    MAX_TEXT_CHARS,
    MODEL_MAX,
    NO_NUL,
    TITLE_MAX,
    ImportFile,
    ImportRefused,
    NewConversation,
    NewMessage,
    bounded_conversations,
    no_nul,
    plain_title,
)

NoNul = Annotated[StrictStr, Field(json_schema_extra=NO_NUL), AfterValidator(no_nul)]
# Seconds since 1970 (UTC), up to the end of the year 9999.
Epoch = Annotated[float, Field(ge=0, le=253402300799)]
TEXT_TYPES = ("text", "multimodal_text")
UNFINISHED = {"finished_partial_completion": "stopped", "in_progress": "stopped"}


class Open(BaseModel):
    """ChatGPT's objects carry many more fields than Brook reads: they are let be."""

    model_config = ConfigDict(extra="ignore")


class ChatGPTAuthor(Open):
    role: StrictStr


class ChatGPTContent(Open):
    content_type: StrictStr
    parts: list[NoNul | dict[str, Any] | None] | None = Field(
        None, description="Text (strings) and other parts (images, files: objects).")


class ChatGPTMetadata(Open):
    model_slug: NoNul | None = None
    is_visually_hidden_from_conversation: StrictBool | None = None


class ChatGPTMessage(Open):
    author: ChatGPTAuthor
    content: ChatGPTContent
    create_time: Epoch | None = None
    status: StrictStr | None = None
    recipient: StrictStr | None = None
    metadata: ChatGPTMetadata | None = None


class ChatGPTNode(Open):
    message: ChatGPTMessage | None = None
    parent: StrictStr | None = None


class ChatGPTConversation(Open):
    title: NoNul | None = None
    create_time: Epoch | None = None
    update_time: Epoch | None = None
    mapping: dict[str, ChatGPTNode]
    current_node: StrictStr | None = Field(None, description="The shown branch's last "
                                                             "message: the one imported.")


class ChatGPTExport(RootModel[list[ChatGPTConversation]]):
    """ChatGPT's `conversations.json`: a list of conversations."""

    root: Annotated[list[ChatGPTConversation], AfterValidator(bounded_conversations)] = Field(
        min_length=1, description=f"At most {MAX_CONVERSATIONS:,} (`too_many_conversations`).")


def _time(seconds: float | None) -> datetime | None:
    try:
        return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):  # rounded up into the year 10000
        raise ImportRefused(422, "invalid_timestamp",
                            f"The time {seconds} is outside the years 1970 to 9999.") from None


def branch(index: int, conversation: ChatGPTConversation) -> list[ChatGPTNode]:
    """The nodes from the root to `current_node`."""
    def broken(why: str) -> ImportRefused:
        return ImportRefused(422, "invalid_conversation",
                             f"In conversation {index + 1} (ChatGPT's): {why}.")

    nodes: list[ChatGPTNode] = []
    seen: set[str] = set()
    node_id = conversation.current_node
    while node_id is not None:
        if node_id in seen:
            raise broken("its messages' parents make a loop")
        node = conversation.mapping.get(node_id)
        if node is None:
            raise broken(f"the message {node_id!r} is not in its mapping")
        seen.add(node_id)
        nodes.append(node)
        node_id = node.parent
    nodes.reverse()
    return nodes


def shown_text(message: ChatGPTMessage) -> str | None:
    """The message's text as the rules above keep it, or None."""
    hidden = message.metadata is not None and message.metadata.is_visually_hidden_from_conversation
    if (message.author.role not in ("user", "assistant") or hidden
            or message.recipient not in (None, "all")
            or message.content.content_type not in TEXT_TYPES):
        return None
    parts = [part for part in message.content.parts or []
             if isinstance(part, str) and part.strip()]
    return "\n\n".join(parts) or None


def messages_of(index: int, conversation: ChatGPTConversation) -> list[NewMessage]:
    messages: list[NewMessage] = []
    last_time = _time(conversation.create_time)
    for node in branch(index, conversation):
        message = node.message
        text = None if message is None else shown_text(message)
        if message is None or text is None:
            continue
        role = message.author.role
        created = _time(message.create_time) or last_time or utcnow()
        last_time = created
        status = "complete" if role == "user" else UNFINISHED.get(message.status or "",
                                                                   "complete")
        slug = message.metadata.model_slug if message.metadata else None
        model = slug if role == "assistant" and slug and len(slug) <= MODEL_MAX else None
        if messages and messages[-1].role == role:  # one author's messages in a row
            before = messages.pop()
            text = f"{before.content}\n\n{text}"
            created, model = before.created_at, before.model or model
        if len(text) > MAX_TEXT_CHARS:
            raise ImportRefused(422, "message_too_long",
                                f"In conversation {index + 1}, message {len(messages) + 1}: "
                                f"the text is longer than {MAX_TEXT_CHARS:,} characters.")
        messages.append(NewMessage(role, text, status, created, model=model))
    if len(messages) > MAX_MESSAGES:
        raise ImportRefused(422, "too_many_messages",
                            f"In conversation {index + 1}: a conversation may hold at most "
                            f"{MAX_MESSAGES:,} messages.")
    return messages


def title_of(conversation: ChatGPTConversation, messages: list[NewMessage]) -> str:
    """Its title; with none, the first message's first words, as Brook names a chat."""
    title = plain_title(conversation.title or "") or default_title(messages[0].content)
    return title if len(title) <= TITLE_MAX else title[:TITLE_MAX - 1].rstrip() + "…"


def convert(export: ChatGPTExport) -> ImportFile:
    """The conversations to store; raises `ImportRefused` if none has a message to import."""
    converted: list[NewConversation] = []
    for index, conversation in enumerate(export.root):
        messages = messages_of(index, conversation)
        if not messages:
            continue
        created = _time(conversation.create_time) or messages[0].created_at
        updated = _time(conversation.update_time) or messages[-1].created_at
        converted.append(NewConversation(title_of(conversation, messages), created, updated,
                                         messages))
    if not converted:
        raise ImportRefused(422, "empty_import",
                            "None of the file's conversations has a message Brook can import "
                            "(text written by you or by ChatGPT).")
    return ImportFile("chatgpt", converted, len(export.root) - len(converted))
