"""Search (GET /api/search, chat/search.py, migration 0005): the owner's titles and stored
messages, ranked, with plain-text snippets and the offsets of the matched words; on SQLite
(FTS5) and PostgreSQL (tsvector) alike. And in the page: the sidebar's search box (Ctrl+K),
opening a conversation at the match, axe-clean in both themes, hostile text shown as text.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from playwright.sync_api import Page, expect
from sqlalchemy import DateTime, Engine, Uuid, bindparam, create_engine, text
from sqlalchemy.engine import make_url

from brook import database
from brook.chat.search import (
    MAX_TERMS,
    SNIPPET_CHARS,
    find_matches,
    fold,
    make_snippet,
    terms_of,
)

from .conftest import LiveServer, new_conversation, send, wait_for_answer, wait_until
from .fakemodel import FakeModelServer
from .test_a11y import axe_violations, serve_axe
from .test_xss import INSTRUMENT, PAYLOADS, Watch, check_page


def search(client: httpx.Client, q: str, limit: int | None = None) -> list[dict[str, Any]]:
    params = {"q": q} if limit is None else {"q": q, "limit": str(limit)}
    response = client.get("/api/search", params=params)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def marked(hit: dict[str, Any]) -> list[str]:
    """The words a hit's highlights mark in its snippet."""
    return [hit["snippet"][h["start"]:h["end"]] for h in hit["highlights"]]


def turn(client: httpx.Client, fake: FakeModelServer, conversation_id: str, question: str,
         answer: str) -> tuple[str, str]:
    """Ask `question`, the fake model answers `answer`; the two messages' ids once stored."""
    fake.reply = answer
    sent = send(client, conversation_id, question)
    answer_id = sent["assistant_message"]["id"]
    assert wait_for_answer(client, conversation_id, answer_id)["status"] == "complete"
    return sent["user_message"]["id"], answer_id


# -- the API, on SQLite and PostgreSQL ------------------------------------------------------------

def test_titles_and_messages_are_found_ranked_with_snippets(client: httpx.Client,
                                                            fake: FakeModelServer) -> None:
    watering = new_conversation(client)
    question, short = turn(client, fake, watering, "How often should I water tomato plants?",
                           "Water tomato plants deeply twice a week: tomato roots like "
                           "moisture, and tomato leaves like the sun.")
    bread = new_conversation(client)
    _, long = turn(client, fake, bread, "Tell me about bread",
                   "Bread needs flour, water, salt and yeast. " * 6
                   + "Some bakers add a dried tomato. " + "Knead it well and let it rise. " * 6)
    garden = client.post("/api/conversations", json={"title": "Tomato garden plans"}).json()["id"]
    other = new_conversation(client)
    turn(client, fake, other, "Something else entirely", "Nothing to see here.")

    hits = search(client, "tomato")
    ranks = [hit["rank"] for hit in hits]
    assert ranks == sorted(ranks, reverse=True)
    assert {hit["conversation_id"] for hit in hits} == {watering, bread, garden}
    by_message = {hit["message_id"]: hit for hit in hits}
    # Three mentions in a short answer rank above one in a long one.
    assert by_message[short]["rank"] > by_message[long]["rank"]
    for hit in hits:
        assert marked(hit), hit
        assert all(word.lower().startswith("tomato") for word in marked(hit)), hit
        assert datetime.fromisoformat(hit["created_at"]).tzinfo is not None
    assert by_message[short]["role"] == "assistant"
    assert by_message[question]["role"] == "user"
    assert by_message[question]["snippet"] == "How often should I water tomato plants?"
    assert by_message[question]["title"] == "How often should I water tomato plants?"
    # A title: no message, the title itself as the snippet.
    title = next(hit for hit in hits if hit["conversation_id"] == garden)
    assert title["message_id"] is None
    assert title["role"] is None
    assert title["title"] == title["snippet"] == "Tomato garden plans"
    assert title["highlights"] == [{"start": 0, "end": 6}]
    # A long message: about SNIPPET_CHARS around the match, cut at both ends.
    snippet = by_message[long]["snippet"]
    assert snippet.startswith("…")
    assert snippet.endswith("…")
    assert len(snippet) <= SNIPPET_CHARS + 2
    assert "dried tomato" in snippet

    # Every word must match, each as the start of a word, case aside.
    both = search(client, "TOMA wat")
    assert {hit["conversation_id"] for hit in both} == {watering, bread}
    assert all(any(w.lower().startswith("toma") for w in marked(hit)) for hit in both)
    assert search(client, "tomato zebra") == []
    assert search(client, "omato") == []  # the start of a word, not any part of it
    assert search(client, "tomato", limit=2) == hits[:2]


def test_an_answer_is_found_once_stored_not_while_it_streams(client: httpx.Client,
                                                             fake: FakeModelServer) -> None:
    conversation_id = new_conversation(client)
    fake.reply = "Quokkas live on Rottnest Island. " + "They are small and friendly. " * 40
    fake.gap = 0.02
    sent = send(client, conversation_id, "Tell me a fact")
    answer_id = sent["assistant_message"]["id"]
    answer: dict[str, Any] = {}

    def written() -> bool:
        messages = client.get(f"/api/conversations/{conversation_id}").json()["messages"]
        answer.update(messages[-1])
        return "Rottnest" in answer["content"] or answer["status"] != "streaming"

    wait_until(written, "the answer's first words to be stored")
    assert answer["status"] == "streaming", "the answer ended before the test could look"
    assert search(client, "rottnest quokkas") == []
    wait_for_answer(client, conversation_id, answer_id)
    hits = search(client, "rottnest quokkas")
    assert [(hit["message_id"], hit["role"]) for hit in hits] == [(answer_id, "assistant")]
    assert marked(hits[0]) == ["Quokkas", "Rottnest"]


def test_another_owners_conversations_are_never_found(client: httpx.Client, live: LiveServer,
                                                      fake: FakeModelServer) -> None:
    mine = new_conversation(client)
    turn(client, fake, mine, "Platypus facts, please", "The platypus lays eggs.")
    with live.client() as stranger:
        assert search(stranger, "platypus") == []
        theirs = stranger.post("/api/conversations",
                               json={"title": "My platypus notes"}).json()["id"]
        assert {hit["conversation_id"] for hit in search(stranger, "platypus")} == {theirs}
    assert {hit["conversation_id"] for hit in search(client, "platypus")} == {mine}


def test_renames_edits_regenerations_and_deletes_keep_the_index_current(
        client: httpx.Client, fake: FakeModelServer, database_url: str) -> None:
    conversation_id = client.post("/api/conversations",
                                  json={"title": "Ocelot notes"}).json()["id"]
    question, answer = turn(client, fake, conversation_id, "What do ocelots eat?",
                            "Ocelots eat rodents.")
    titles = [hit for hit in search(client, "ocelot") if hit["message_id"] is None]
    assert [hit["snippet"] for hit in titles] == ["Ocelot notes"]

    assert client.patch(f"/api/conversations/{conversation_id}",
                        json={"title": "Jaguarundi notes"}).status_code == 200
    assert all(hit["message_id"] is not None for hit in search(client, "ocelot"))
    assert [hit["message_id"] for hit in search(client, "jaguarundi")] == [None]

    # An edited question: the old words are gone, the new ones found; the later turns
    # were replaced by a new answer.
    fake.reply = "Margays eat birds."
    edited = client.patch(f"/api/messages/{question}", json={"content": "What do margays eat?"})
    assert edited.status_code == 202, edited.text
    new_answer = edited.json()["assistant_message"]["id"]
    wait_for_answer(client, conversation_id, new_answer)
    assert search(client, "ocelots") == []
    assert {hit["message_id"] for hit in search(client, "margays eat")} == {new_answer, question}
    assert search(client, "rodents") == []
    assert answer not in {hit["message_id"] for hit in search(client, "eat")}

    # A regenerated answer replaces the last one in the index too.
    fake.reply = "Margays eat lizards."
    again = client.post(f"/api/messages/{new_answer}/regenerate")
    assert again.status_code == 202, again.text
    regenerated = again.json()["assistant_message"]["id"]
    wait_for_answer(client, conversation_id, regenerated)
    assert search(client, "birds") == []
    assert [hit["message_id"] for hit in search(client, "lizards")] == [regenerated]

    assert client.delete(f"/api/conversations/{conversation_id}").status_code == 204
    for word in ("jaguarundi", "margays", "lizards", "eat"):
        assert search(client, word) == [], word
    if database_url.startswith("sqlite:"):
        # Nothing of it is left in the index either.
        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:
                assert connection.scalar(text("SELECT count(*) FROM search_rows")) == 0
                assert connection.scalar(text("SELECT count(*) FROM search_index_docsize")) == 0
        finally:
            engine.dispose()


QUERIES = [
    '"', '""', '"tomato', 'tomato"', '"tomato water"', "*", "tom*", "NEAR(tomato water)",
    "NEAR", "-tomato", "tomato -water", "title:tomato", "body:tomato", ":", "^tomato",
    "tomato OR water", "AND", "OR", "NOT tomato", "(", ")", "'", "''", "\\", "{", "}", "&", "|",
    "!", "<->", ":*", "tomato:*", "'tomato':*", "tomato & water", "!tomato", "%", "_", "%_",
    ";", "--", "'; DROP TABLE messages; --", "ü", "🙂", "🙂tomato🙂", "\u200b", "\u0301",
    "a" * 200, " ", "\t\n", ".", "…", "中文", "tomato_water", "x" * 60 + ":*",
    " ".join(f"w{i}" for i in range(40)),
]


def test_query_syntax_is_only_words(client: httpx.Client, fake: FakeModelServer) -> None:
    """Quotes, `*`, `-`, `:`, NEAR, OR, tsquery operators: words or separators, never
    syntax, never a server error."""
    conversation_id = new_conversation(client)
    _, answer = turn(client, fake, conversation_id, "Plants", "Water the tomato plants.")
    for query in QUERIES:
        response = client.get("/api/search", params={"q": query})
        assert response.status_code == 200, (query, response.text)
        assert isinstance(response.json()["results"], list)
    for query in ('"tomato', "tomato:*", "-tomato", "'tomato':*", "!tomato", "^tomato",
                  '"tomato water"', "tomato_water", "🙂tomato🙂", "tom*"):
        assert answer in {hit["message_id"] for hit in search(client, query)}, query
    assert search(client, "NOT tomato") == []  # "not" is a word, and not in the text
    assert search(client, "NEAR(tomato water)") == []  # so is "near"


def test_bad_searches_are_refused(client: httpx.Client) -> None:
    def refused(params: Any, code: str) -> None:
        response = client.get("/api/search", params=params)
        assert response.status_code == 400, (params, response.text)
        error = response.json()["error"]
        assert error["code"] == code, (params, error)
        assert error["message"]

    refused({}, "invalid_query")
    refused({"q": ""}, "invalid_query")
    refused([("q", "a"), ("q", "b")], "invalid_query")
    refused({"q": "x" * 201}, "invalid_query")
    refused({"q": "to\x00mato"}, "invalid_query")
    for limit in ("0", "51", "-1", "x", "1.5", " 5", "", "9" * 30):
        refused({"q": "tomato", "limit": limit}, "invalid_limit")
    refused([("q", "tomato"), ("limit", "1"), ("limit", "2")], "invalid_limit")
    assert search(client, "x" * 200) == []
    assert search(client, "tomato", limit=50) == []
    assert search(client, "   ") == []


# -- snippets and query words, by themselves ------------------------------------------------------

def test_query_words() -> None:
    assert terms_of('"Tomato" tomato* -WATER: near(x) tomate\u0301') == [
        "Tomato", "WATER", "near", "x", "tomate"]
    assert terms_of("*** -- :: \"\"") == []
    assert len(terms_of(" ".join(f"w{i}" for i in range(100)))) == MAX_TERMS
    assert fold("Café") == fold("CAFE") == "cafe"


def test_snippets() -> None:
    folded = [fold("tomato")]
    body = "Intro words. " * 30 + "The tomato is red. " + "Outro words. " * 30
    snippet, highlights = make_snippet(body, folded)
    assert snippet.startswith("…")
    assert snippet.endswith("…")
    assert len(snippet) <= SNIPPET_CHARS + 2
    assert [snippet[s:e] for s, e in highlights] == ["tomato"]
    assert snippet[1:].startswith(("Intro ", "words. "))  # at a word
    # Offsets count code points; accents and case do not matter; whitespace is one space.
    snippet, highlights = make_snippet("🙂 Un café\n\n  CAFÉS", [fold("cafe")])
    assert snippet == "🙂 Un café CAFÉS"
    assert [snippet[s:e] for s, e in highlights] == ["café", "CAFÉS"]
    assert highlights[0] == (5, 9)
    # Where the different words are close together, rather than the first match.
    body = "apple " + "filler " * 60 + "apple banana cherry " + "filler " * 60
    snippet, highlights = make_snippet(body, [fold(w) for w in ("apple", "banana", "cherry")])
    assert [snippet[s:e] for s, e in highlights] == ["apple", "banana", "cherry"]
    # A short text, whole.
    assert make_snippet("A tomato.", folded) == ("A tomato.", [(2, 8)])
    assert make_snippet("", folded) == ("", [])


# -- the migration, on SQLite and PostgreSQL ------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"brook_search_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(server).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    with engine.begin() as connection:
        config = AlembicConfig()
        config.set_main_option("script_location", str(database.MIGRATIONS))
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


INSERT_CONVERSATION = text(
    "INSERT INTO conversations (id, owner, title, created_at, updated_at) "
    "VALUES (:id, :owner, :title, :now, :now)").bindparams(
    bindparam("id", type_=Uuid()), bindparam("now", type_=DateTime(timezone=True)))
INSERT_MESSAGE = text(
    "INSERT INTO messages (id, conversation_id, position, role, content, status, created_at, "
    "updated_at) VALUES (:id, :conversation, :position, :role, :content, :status, :now, :now)"
).bindparams(bindparam("id", type_=Uuid()), bindparam("conversation", type_=Uuid()),
             bindparam("now", type_=DateTime(timezone=True)))


def found(engine: Engine, owner: str, query: str) -> set[uuid.UUID | None]:
    with engine.connect() as connection:
        return {hit.message_id for hit in find_matches(connection, owner, query, 50)}


def test_the_migration_indexes_what_is_stored_and_goes_back(fresh_database: str) -> None:
    engine = database.make_engine(fresh_database)
    try:
        migrate(engine, "0004")
        conversation, question, streaming = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        now = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(INSERT_CONVERSATION, {"id": conversation, "owner": "anon:a",
                                                     "title": "Narwhal questions", "now": now})
            connection.execute(INSERT_MESSAGE, [
                {"id": question, "conversation": conversation, "position": 0, "role": "user",
                 "content": "Why do narwhals have tusks?", "status": "complete", "now": now},
                {"id": streaming, "conversation": conversation, "position": 1,
                 "role": "assistant", "content": "A narwhal's tusk is a tooth",
                 "status": "streaming", "now": now}])
        for _ in range(2):  # up, then down and up again
            migrate(engine, "head")
            # What was stored final is found; the answer that streamed across the upgrade
            # once it ends.
            assert found(engine, "anon:a", "narwhal") == {None, question}
            assert found(engine, "anon:b", "narwhal") == set()
            with engine.begin() as connection:
                connection.execute(text("UPDATE messages SET content = :content, "
                                        "status = 'complete' WHERE id = :id").bindparams(
                    bindparam("id", type_=Uuid())),
                    {"id": streaming, "content": "A narwhal's tusk is a tooth."})
            assert found(engine, "anon:a", "narwhal tooth") == {streaming}
            if engine.dialect.name == "sqlite":  # every later migration kept the triggers
                with engine.connect() as connection:
                    triggers = connection.scalars(text(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                        "AND name LIKE '%search%'")).all()
                assert len(triggers) == 6, triggers
            migrate(engine, "0004", down=True)
            with engine.begin() as connection:
                connection.execute(text("UPDATE messages SET status = 'streaming' "
                                        "WHERE id = :id").bindparams(
                    bindparam("id", type_=Uuid())), {"id": streaming})
    finally:
        engine.dispose()


STREAMING_FLUSH = text("UPDATE messages SET content = :content, updated_at = :now "
                       "WHERE id = :id AND status = 'streaming'").bindparams(
    bindparam("id", type_=Uuid()), bindparam("now", type_=DateTime(timezone=True)))


# This backend's updates of `messages` not yet reported, and how many of them were HOT.
UPDATES = text("SELECT pg_stat_get_xact_tuples_updated('messages'::regclass), "
               "pg_stat_get_xact_tuples_hot_updated('messages'::regclass)")


def test_a_streaming_answers_flushes_leave_the_index_alone(fresh_database: str) -> None:
    """Each flush of a streaming answer indexes nothing; on PostgreSQL it stays a HOT update
    (no index of `messages` touched), and the final write fills the search vector."""
    engine = database.make_engine(fresh_database)
    try:
        migrate(engine, "head")
        conversation, answer = uuid.uuid4(), uuid.uuid4()
        now = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(INSERT_CONVERSATION, {"id": conversation, "owner": "anon:a",
                                                     "title": "", "now": now})
            connection.execute(INSERT_MESSAGE, {
                "id": answer, "conversation": conversation, "position": 0,
                "role": "assistant", "content": "", "status": "streaming", "now": now})
        for words in ("Wombats", "Wombats dig", "Wombats dig burrows."):
            with engine.begin() as connection:
                postgres = engine.dialect.name == "postgresql"
                before = connection.execute(UPDATES).one() if postgres else None
                connection.execute(STREAMING_FLUSH, {"id": answer, "content": words,
                                                     "now": datetime.now(UTC)})
                if postgres:
                    updated, hot = connection.execute(UPDATES).one()
                    assert before is not None
                    assert (updated - before[0], hot - before[1]) == (1, 1)  # a HOT update
                    assert connection.scalar(text(
                        "SELECT count(*) FROM messages WHERE search_vector IS NOT NULL")) == 0
                else:
                    assert connection.scalar(text(
                        "SELECT count(*) FROM search_rows WHERE message_id IS NOT NULL")) == 0
            assert found(engine, "anon:a", "wombats") == set()
        with engine.begin() as connection:
            connection.execute(text("UPDATE messages SET status = 'complete' WHERE id = :id")
                               .bindparams(bindparam("id", type_=Uuid())), {"id": answer})
        assert found(engine, "anon:a", "wombats burrows") == {answer}
    finally:
        engine.dispose()


# -- the page -------------------------------------------------------------------------------------

def page_api(page: Page, site: LiveServer, method: str, path: str,
             body: dict[str, Any] | None = None) -> Any:
    """A request with the page's own cookie (the same owner)."""
    response = page.request.fetch(site.url + path, method=method, data=body)
    assert response.ok, response.text()
    return response.json() if response.status != 204 else None


def page_turn(page: Page, site: LiveServer, fake: FakeModelServer, conversation_id: str,
              question: str, answer: str) -> str:
    fake.reply = answer
    sent = page_api(page, site, "POST", f"/api/conversations/{conversation_id}/messages",
                    {"content": question})
    answer_id: str = sent["assistant_message"]["id"]

    def ended() -> bool:
        messages = page_api(page, site, "GET", f"/api/conversations/{conversation_id}")
        return bool(messages["messages"][-1]["status"] != "streaming")

    wait_until(ended, "the answer to end")
    return answer_id


def long_conversation(page: Page, site: LiveServer, fake: FakeModelServer) -> tuple[str, str]:
    """A conversation whose first answer (the match) is far above its end, and another one
    shown; the first's id and its first answer's."""
    page.goto(site.url + "/")
    expect(page.locator("#prompt")).to_be_editable()
    target = page_api(page, site, "POST", "/api/conversations", {"title": "Instruments"})["id"]
    answer = page_turn(page, site, fake, target, "Name an instrument",
                       "The xylophone is played with mallets.")
    for i in range(5):
        page_turn(page, site, fake, target, f"And another, {i}?",
                  "\n\n".join(["A long paragraph about other instruments. " * 12] * 3))
    shown = page_api(page, site, "POST", "/api/conversations", {"title": "Shown"})["id"]
    page_turn(page, site, fake, shown, "Hello", "Hi there.")
    page.goto(site.url + f"/#c={shown}")
    page.reload()  # the list, with both
    expect(page.locator(".message")).to_have_count(2)
    return target, answer


HIT = re.compile(r"\bsearch-hit\b")


def test_the_search_box_opens_the_conversation_at_the_match(
        page: Page, site: LiveServer, fake: FakeModelServer) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    target, answer = long_conversation(page, site, fake)
    box = page.locator("#search-input")
    results = page.locator("#search-results [role=option]")

    page.keyboard.press("Control+k")
    expect(box).to_be_focused()
    page.keyboard.type("xylo")
    expect(results).to_have_count(1)
    expect(page.locator("nav.history")).to_be_hidden()
    expect(page.locator("#search-status")).to_have_text("1 match.")
    expect(results.first.locator("mark")).to_have_text("xylophone")
    expect(results.first).to_contain_text("Instruments")
    expect(box).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", "search-result-0")
    expect(results.first).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")

    message = page.locator(f'.message[data-id="{answer}"]')
    expect(message).to_have_class(HIT)
    expect(message).to_be_in_viewport()
    expect(message).to_be_focused()
    assert page.url.endswith(f"#c={target}")
    expect(page.locator(".message")).to_have_count(12)
    expect(page.locator(".message").last).not_to_be_in_viewport()
    expect(page.locator("#conversation-title")).to_have_text("Instruments")

    # Escape empties the box and brings the list back; the mouse chooses too.
    page.keyboard.press("Control+k")
    expect(box).to_be_focused()
    page.keyboard.press("Escape")
    expect(box).to_have_value("")
    expect(page.locator("nav.history")).to_be_visible()
    expect(page.locator("#search-panel")).to_be_hidden()
    page.locator("#conversation-list button.conversation", has_text="Shown").click()
    expect(page.locator(".message")).to_have_count(2)
    box.fill("mallets")
    expect(results.first.locator("mark")).to_have_text("mallets")
    results.first.click()
    expect(message).to_be_in_viewport()
    expect(page.locator("#search-status")).to_have_text("1 match.")
    box.fill("nothing like it")
    expect(page.locator("#search-status")).to_have_text("No matches for “nothing like it”.")
    expect(results).to_have_count(0)
    assert errors == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_search_is_axe_clean(page: Page, site: LiveServer, fake: FakeModelServer,
                             scheme: Literal["light", "dark"]) -> None:
    _, answer = long_conversation(page, site, fake)
    page.emulate_media(color_scheme=scheme)
    serve_axe(page, site)
    page.locator("#search-input").focus()
    assert axe_violations(page, site) == []  # the empty box
    page.keyboard.type("instrument")
    expect(page.locator("#search-results [role=option]").first).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert axe_violations(page, site) == []  # results, one chosen by the arrows
    page.locator("#search-input").fill("xylophone")
    expect(page.locator("#search-results [role=option]")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page.locator(f'.message[data-id="{answer}"]')).to_have_class(HIT)
    # The focused message shows more (its model): once faded in, as axe is to see it.
    page.wait_for_function("""() => !document.getAnimations().some(
        (a) => a instanceof CSSTransition && a.playState === "running")""")
    assert axe_violations(page, site) == []  # the message marked
    # A phone: Ctrl+K opens the drawer at the box.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#menu-toggle")).to_be_visible()  # the drawer, closed
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    page.keyboard.press("Control+k")
    expect(page.locator("#search-input")).to_be_focused()
    expect(page.locator("#sidebar")).to_be_in_viewport()
    assert axe_violations(page, site) == []


GROUPS = ("alpha", "bravo", "charlie", "delta")  # 20 payloads each: the page shows 20 results


def test_hostile_titles_and_answers_are_shown_as_text(
        page: Page, site: LiveServer, fake: FakeModelServer) -> None:
    """The XSS corpus as titles and as streamed answers: found, and shown as text only."""
    watch = Watch(site.url)
    watch.attach(page)
    page.add_init_script(INSTRUMENT)
    page.goto(site.url + "/")
    expect(page.locator("#prompt")).to_be_editable()
    answers = page_api(page, site, "POST", "/api/conversations", {"title": "Answers"})["id"]
    for index, (_, payload) in enumerate(PAYLOADS):
        group = GROUPS[index // 20]
        page_api(page, site, "POST", "/api/conversations",
                 {"title": f"xsstitle{group} {payload}"[:200]})
        page_turn(page, site, fake, answers, f"Payload {index}", f"xssbody{group} {payload}")
    page.reload()
    box = page.locator("#search-input")
    options = page.locator("#search-results [role=option]")
    shown = 0
    for kind in ("xsstitle", "xssbody"):
        for group in GROUPS:
            expected = len([p for i, p in enumerate(PAYLOADS) if GROUPS[i // 20] == group])
            box.fill(f"{kind}{group}")
            expect(options).to_have_count(expected)
            expect(options.locator("mark").first).to_have_text(f"{kind}{group}")
            elements = page.evaluate("""() => [...document.querySelectorAll(
                '#search-results *')].map((el) => [el.tagName,
                ...[...el.attributes].map((a) => a.name)])""")
            allowed = {"LI", "SPAN", "MARK", "id", "class", "role", "aria-selected",
                       "data-index"}
            assert {name for element in elements for name in element} <= allowed
            shown += expected
            check_page(page, watch, f"search results for {kind}{group}")
    assert shown == 2 * len(PAYLOADS)
    # Opened from the results: a hostile title is text in the header too.
    box.fill("xsstitlealpha")
    expect(options.first.locator("mark")).to_have_text("xsstitlealpha")
    options.first.click()
    expect(page.locator("#conversation-title")).to_contain_text("xsstitlealpha")
    check_page(page, watch, "a conversation opened from the search")
