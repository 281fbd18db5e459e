"""Search over an owner's conversations: titles and final messages, ranked, with snippets.

The index is the database's own full-text search, built and kept current by migration 0005
(read it for what each dialect builds, and why streaming answers are not indexed until
they end): SQLite's FTS5 (`search_index`, keyed by `search_rows`) and PostgreSQL's tsvector
(`messages.search_vector`, and an expression index on titles). This module asks it, one
query per search, and makes the snippets.

The query is plain words, never the engine's query language: it is cut into words (runs of
letters and digits; the rest separates them, as it does in the index), at most MAX_TERMS,
and each word is matched as the start of an indexed word ("stream" finds "streaming"),
every word required. The words go to the database as quoted FTS5 strings or as a bound
array made a tsquery, so `"`, `*`, `-`, `:`, `NEAR` or `OR` in a query are words or
separators, never syntax.

A snippet is plain text around the best match with the matched words' offsets, never
markup: the page marks them itself, so a message holding HTML stays text.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Float, String, Text, Uuid, text
from sqlalchemy.types import TypeEngine

INDEXED_CHARS = 100_000  # of each message; migration 0005's
MAX_TERMS = 16  # words of a query; the rest are not looked for
SNIPPET_CHARS = 160  # about this long, cut at spaces
LEAD_CHARS = 40  # of context before the first match shown

# Letters and digits: words as unicode61 cuts them, and as PostgreSQL's parser does once
# punctuation is made spaces (migration 0005).
WORD = re.compile(r"[^\W_]+")
SPACE = re.compile(r"\s")
MAX_MATCHES = 500  # of a message, looked at for its snippet


@dataclass(frozen=True)
class SearchHit:
    """One match: a message of the conversation (`message_id`), or its title (None)."""

    conversation_id: uuid.UUID
    title: str
    message_id: uuid.UUID | None
    role: str | None
    snippet: str
    highlights: list[tuple[int, int]]  # [start, end) in `snippet`, in code points
    rank: float
    created_at: datetime  # the message's; a title's: the conversation's last activity


def terms_of(query: str) -> list[str]:
    """The words of a query, each once (case and accents aside), at most MAX_TERMS."""
    seen: set[str] = set()
    terms: list[str] = []
    for word in WORD.findall(query):
        folded = fold(word)
        if folded and folded not in seen:
            seen.add(folded)
            terms.append(word)
    return terms[:MAX_TERMS]


def fold(word: str) -> str:
    """A word as the index compares it: without case or accents."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def find_matches(connection: Connection, owner: str, query: str, limit: int
                 ) -> list[SearchHit]:
    """The owner's best `limit` matches of `query`, best first (none for a query of no
    words). Only the owner's conversations are searched: the index holds everyone's, and
    each match is joined to its conversation's owner."""
    terms = terms_of(query)
    if not terms:
        return []
    if connection.dialect.name == "sqlite":
        rows = connection.execute(_SQLITE, {"match": _fts5_query(terms), "owner": owner,
                                            "limit": limit})
    else:
        rows = connection.execute(_POSTGRES, {"terms": terms, "owner": owner, "limit": limit})
    folded = [fold(term) for term in terms]
    hits = []
    for row in rows.mappings():
        body = row["title"] if row["message_id"] is None else row["content"]
        snippet, highlights = make_snippet(body or "", folded)
        hits.append(SearchHit(
            conversation_id=row["conversation_id"], title=row["title"],
            message_id=row["message_id"], role=row["role"], snippet=snippet,
            highlights=highlights, rank=float(row["rank"]), created_at=row["at"]))
    return hits


# -- the queries ----------------------------------------------------------------------------------

_COLUMNS: dict[str, TypeEngine[Any]] = {
    "conversation_id": Uuid(), "message_id": Uuid(), "rank": Float(), "title": String(),
    "role": String(), "content": Text(), "at": DateTime(timezone=True)}


def _fts5_query(terms: Sequence[str]) -> str:
    """Every term as a quoted FTS5 string, a prefix (`"term"*`), all required."""
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)


# bm25() is lower for a better match: its negation is the rank; a title's counts twice. The
# best `limit` are chosen first, then joined to their text, so only those are read.
_SQLITE = text(
    "WITH hits AS ("
    " SELECT r.id AS row_id, r.conversation_id AS conversation_id,"
    " r.message_id AS message_id,"
    " -bm25(search_index) * (CASE WHEN r.message_id IS NULL THEN 2.0 ELSE 1.0 END) AS rank"
    " FROM search_index JOIN search_rows r ON r.id = search_index.rowid"
    " JOIN conversations c ON c.id = r.conversation_id"
    " WHERE search_index MATCH :match AND c.owner = :owner"
    " ORDER BY rank DESC, r.id DESC LIMIT :limit)"
    " SELECT hits.conversation_id, hits.message_id, hits.rank, c.title, m.role, m.content,"
    " coalesce(m.created_at, c.updated_at) AS at"
    " FROM hits JOIN conversations c ON c.id = hits.conversation_id"
    " LEFT JOIN messages m ON m.id = hits.message_id"
    " ORDER BY hits.rank DESC, hits.row_id DESC").columns(**_COLUMNS)

# :terms (words of letters and digits only, so quote_literal only adds the quotes) become
# 'term':* & 'term':* ...; a title's rank counts twice. The title's vector is migration
# 0005's index expression, character for character, or the index goes unused.
_POSTGRES = text(
    "WITH q AS (SELECT to_tsquery('simple', array_to_string(ARRAY("
    "SELECT quote_literal(term) || ':*' FROM unnest(CAST(:terms AS text[])) AS term),"
    " ' & ')) AS query),"
    " hits AS ("
    " SELECT m.conversation_id AS conversation_id, m.id AS message_id,"
    " ts_rank(m.search_vector, (SELECT query FROM q)) AS rank, m.created_at AS at"
    " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    " WHERE c.owner = :owner AND m.search_vector IS NOT NULL"
    " AND m.search_vector @@ (SELECT query FROM q)"
    " UNION ALL"
    " SELECT c.id, NULL::uuid, 2.0 * ts_rank(to_tsvector('simple'::regconfig,"
    " regexp_replace(c.title, '[[:punct:]]+', ' ', 'g')), (SELECT query FROM q)), c.updated_at"
    " FROM conversations c"
    " WHERE c.owner = :owner AND to_tsvector('simple'::regconfig,"
    " regexp_replace(c.title, '[[:punct:]]+', ' ', 'g')) @@ (SELECT query FROM q)"
    " ORDER BY rank DESC, at DESC LIMIT :limit)"
    " SELECT hits.conversation_id, hits.message_id, hits.rank, hits.at, c.title,"
    " m.role, m.content"
    " FROM hits JOIN conversations c ON c.id = hits.conversation_id"
    " LEFT JOIN messages m ON m.id = hits.message_id"
    " ORDER BY hits.rank DESC, hits.at DESC").columns(**_COLUMNS)


# -- snippets -------------------------------------------------------------------------------------

def word_matches(body: str, folded_terms: Sequence[str]) -> list[tuple[int, int, int]]:
    """Each word of `body` that starts with one of the (folded) terms: (start, end, which
    term)."""
    found = []
    for word in WORD.finditer(body):
        folded = fold(word.group())
        for i, term in enumerate(folded_terms):
            if folded.startswith(term):
                found.append((word.start(), word.end(), i))
                break
    return found


def make_snippet(body: str, folded_terms: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """About SNIPPET_CHARS of `body` around its best match (where the most different terms
    are near one another), whitespace made single spaces, "…" where cut; and the matched
    words' [start, end) offsets in it."""
    body = body[:INDEXED_CHARS]
    matches = word_matches(body, folded_terms)[:MAX_MATCHES]
    anchor, anchor_end, best = 0, 0, 0
    for i, (start, end, _term) in enumerate(matches):
        near = set()
        for _s, e, term in matches[i:]:
            if e > start + SNIPPET_CHARS - LEAD_CHARS:
                break
            near.add(term)
        if len(near) > best:
            anchor, anchor_end, best = start, end, len(near)
    begin = max(0, min(anchor - LEAD_CHARS, len(body) - SNIPPET_CHARS))
    if begin > 0 and not body[begin - 1].isspace():  # start at a word
        space = SPACE.search(body, begin, anchor)
        begin = space.end() if space else begin
    end = min(len(body), begin + SNIPPET_CHARS)
    if end < len(body) and not body[end].isspace():  # end at one
        for k in range(end - 1, max(anchor_end, end - 30), -1):
            if body[k].isspace():
                end = k
                break
    snippet = " ".join(body[begin:end].split())
    snippet = ("…" if begin > 0 else "") + snippet + ("…" if end < len(body) else "")
    return snippet, [(s, e) for s, e, _term in word_matches(snippet, folded_terms)]
