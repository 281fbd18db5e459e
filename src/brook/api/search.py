"""Search over an owner's conversations: GET /api/search (issue 16).

The words are looked for in the owner's conversation titles and stored messages (chat/
search.py, through the chat service); each result says which message to open, with a plain
text snippet and where its matched words are, for the page to mark.
"""

from __future__ import annotations

from flask import Response, current_app, request
from pydantic import ValidationError

from ..chat.service import ChatService
from ..db import get_session
from ..errors import APIError
from ..identity import current_owner
from . import bp, schemas
from .openapi import operation
from .requests import WHOLE_NUMBER
from .serialize import respond

BAD_QUERY = ("`invalid_query`: q is missing, empty, given more than once, longer than "
             f"{schemas.SEARCH_QUERY_MAX} characters or holds U+0000; `invalid_limit`: limit "
             "is not one whole number from 1 to 50.")
QUERY_MESSAGES = {
    "string_too_short": "Send the words to look for in q.",
    "string_too_long": f"q can be at most {schemas.SEARCH_QUERY_MAX} characters long.",
    "nul_character": "q contains a NUL character (U+0000).",
}


def search_query() -> schemas.SearchQuery:
    """`q` and `limit` from the query string, strictly: anything else is a 400."""
    given = request.args.getlist("q")
    if len(given) != 1:
        raise APIError(400, "invalid_query", "Send the words to look for in q, once.")
    values: dict[str, object] = {"q": given[0]}
    limits = request.args.getlist("limit")
    bad_limit = APIError(400, "invalid_limit", "limit must be a whole number from 1 to 50.")
    if limits:
        if len(limits) > 1 or not WHOLE_NUMBER.fullmatch(limits[0]):
            raise bad_limit
        values["limit"] = int(limits[0])
    try:
        return schemas.SearchQuery.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["loc"] and error["loc"][0] == "limit":
            raise bad_limit from None
        raise APIError(400, "invalid_query",
                       QUERY_MESSAGES.get(error["type"], "q is not a search.")) from None


@bp.get("/search")
@operation(id="searchConversations",
           summary="Search your conversations' titles and messages, best match first",
           ok=(200, "Matches, best first (none for a query without words)",
               schemas.SearchResults),
           query=schemas.SearchQuery, errors={400: BAD_QUERY})
def search_conversations() -> Response:
    query = search_query()
    chat: ChatService = current_app.extensions["brook.chat"]
    hits = chat.search(get_session(), current_owner(), query.q, query.limit)
    return respond(schemas.SearchResults(results=[
        schemas.SearchHit(
            conversation_id=hit.conversation_id, title=hit.title, message_id=hit.message_id,
            role=hit.role,  # type: ignore[arg-type]  # a Literal the column holds as text
            snippet=hit.snippet,
            highlights=[schemas.Highlight(start=s, end=e) for s, e in hit.highlights],
            rank=hit.rank, created_at=hit.created_at)
        for hit in hits]))
