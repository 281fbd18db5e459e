"""Export and import: a conversation, or all of the owner's, as a download (Brook's JSON
document or a Markdown transcript), and the import of Brook's export or of ChatGPT's
`conversations.json`. chat/transfer.py does the work; this is its HTTP.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from urllib.parse import quote

from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..chat.service import MAX_IMPORT_BYTES, BrookExport, ChatService, ImportRefused, NotFound
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner
from ..models import utcnow
from . import bp, schemas, serialize
from .openapi import links_to, operation
from .serialize import respond
from .usage import LIMITED, owner_quota, within_limits

MEGABYTES = MAX_IMPORT_BYTES // (1024 * 1024)
NO_CONVERSATION = "`not_found`: no such conversation of yours."
BAD_FORMAT = "`invalid_format`: format is not one of `json`, `markdown`."
MARKDOWN = {"text/markdown": {"schema": {
    "type": "string", "description": "With `format=markdown`: a transcript, the title as a "
                                     "heading and each message under its author."}}}
DOWNLOAD = {"Content-Disposition": {
    "description": "`attachment`, with a file name made from the title (`filename`, and "
                   "`filename*` in UTF-8 where it is not ASCII).",
    "required": True, "schema": {"type": "string", "pattern": "^attachment; filename="}}}
BAD_FILE = (
    "`unknown_format` (neither Brook's export nor ChatGPT's), `unsupported_version`, "
    "`empty_import`, `too_many_conversations` (over 10,000), `too_many_messages` (over "
    "10,000 in one conversation), `message_too_long` (over 1,000,000 characters), "
    "`title_too_long`, `unfinished_message` (status `streaming`), `nul_character`, "
    "`invalid_timestamp`, `missing_field`, `invalid_conversation` (a ChatGPT conversation "
    "whose tree is broken): the message says where. Nothing is stored.")
ON_IMPORTED = links_to("/conversations/0/id", "conversation_id", "getConversation",
                       "exportConversation", "updateConversation", "deleteConversation",
                       "sendMessage")
# A name a file may have on any system: no control characters, separators or wildcards.
UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"*/:<>?\\|]')
NOT_PLAIN = re.compile(r"[^A-Za-z0-9 ._()-]")


def file_name(title: str, extension: str) -> str:
    """A `Content-Disposition` for a file named after `title` (RFC 6266): `filename` in
    ASCII for every client, and `filename*` (RFC 5987, UTF-8) where the title is not."""
    name = " ".join(UNSAFE.sub(" ", title).split()).strip(" .")[:100].rstrip(" .")
    name = name or "conversation"
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    plain = " ".join(NOT_PLAIN.sub(" ", plain).split()).strip(" .") or "conversation"
    header = f'attachment; filename="{plain}.{extension}"'
    if plain != name:
        header += f"; filename*=UTF-8''{quote(f'{name}.{extension}', safe='')}"
    return header


def wants_markdown() -> bool:
    given = request.args.getlist("format")
    if len(given) > 1 or (given and given[0] not in ("json", "markdown")):
        raise APIError(400, "invalid_format", "format must be json or markdown.")
    return given == ["markdown"]


def download(body: bytes, markdown: bool, title: str) -> Response:
    response = Response(body, mimetype="text/markdown" if markdown else "application/json")
    response.headers["Content-Disposition"] = file_name(title, "md" if markdown else "json")
    response.headers["Cache-Control"] = "private, no-store"
    return response


def chat_service() -> ChatService:
    chat: ChatService = current_app.extensions["brook.chat"]
    return chat


@bp.get("/conversations/<uuid:conversation_id>/export")
@operation(id="exportConversation",
           summary="Download a conversation: Brook's JSON document, or a Markdown transcript",
           ok=(200, "The file, to save", BrookExport), query=schemas.ExportQuery,
           also=MARKDOWN, ok_headers=DOWNLOAD,
           errors={400: BAD_FORMAT, 404: NO_CONVERSATION})
def export_conversation(conversation_id: uuid.UUID) -> Response:
    markdown = wants_markdown()
    try:
        body, title = chat_service().export(get_session(), current_owner(), conversation_id,
                                            markdown)
    except NotFound:
        raise APIError(404, "not_found", "There is no such conversation.") from None
    return download(body, markdown, title or "Untitled chat")


@bp.get("/conversations/export")
@operation(id="exportConversations",
           summary="Download all your conversations in one file, oldest first",
           ok=(200, "The file, to save", BrookExport), query=schemas.ExportQuery,
           also=MARKDOWN, ok_headers=DOWNLOAD, errors={400: BAD_FORMAT})
def export_conversations() -> Response:
    markdown = wants_markdown()
    body, _ = chat_service().export(get_session(), current_owner(), None, markdown)
    return download(body, markdown, f"Brook conversations {utcnow().date().isoformat()}")


@bp.post("/conversations/import")
@operation(id="importConversations",
           summary="Import a file: Brook's JSON export, or ChatGPT's conversations.json",
           description=(
               f"Send the file's content as the body (`Content-Type: application/json`), up "
               f"to {MEGABYTES} MB (`413` beyond). The whole file is checked before anything "
               "is stored, and stored in one transaction: a file is imported whole or not at "
               "all. The conversations are yours, and count against your stored "
               "conversations (`429` if the file would take you past them), not against the "
               "conversations you may start a day. From ChatGPT's export, each conversation's "
               "shown branch is imported: your and ChatGPT's text messages (not system "
               "prompts, tools, images or files)."),
           ok=(201, "Imported", schemas.Imported), body=schemas.ImportBody, links=ON_IMPORTED,
           errors={400: "`invalid_json`: the file is empty, or not JSON in UTF-8.",
                   422: BAD_FILE, 429: LIMITED})
def import_conversations() -> Response:
    if not request.is_json:
        raise APIError(415, "unsupported_media_type",
                       "Send the file as the request body with Content-Type: "
                       "application/json.")
    owner = current_owner()  # before the body is read: a 401 costs nothing
    # A body sent in chunks, with no Content-Length, is read up to one byte past the bound
    # (werkzeug stops there, silently): a byte past it says it is too large.
    request.max_content_length = MAX_IMPORT_BYTES + 1
    size = request.content_length
    try:
        if size is not None and size > MAX_IMPORT_BYTES:
            raise RequestEntityTooLarge
        raw = request.get_data(cache=False)
        if len(raw) > MAX_IMPORT_BYTES:
            raise RequestEntityTooLarge
    except RequestEntityTooLarge:
        shown = "" if size is None else f" ({size / 1024 / 1024:,.1f} MB)"
        raise APIError(413, "request_entity_too_large",
                       f"The file is too large{shown}: Brook imports files of up to "
                       f"{MEGABYTES} MB at once.") from None
    chat = chat_service()
    try:
        with within_limits():
            made, skipped = chat.import_file(get_session(), owner, raw, owner_quota(chat))
    except ImportRefused as exc:
        raise APIError(exc.status, exc.code, exc.message) from None
    return respond(schemas.Imported(imported=len(made), skipped=skipped,
                                    conversations=[serialize.conversation(c) for c in made]),
                   201)
