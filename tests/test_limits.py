"""Per-owner limits and the daily budget (chat/limits.py), through the API on SQLite and
PostgreSQL, shared by two `brook serve` instances, across a restart, and under a burst.

A request over a limit gets `429` with `Retry-After` and a JSON error naming the limit and
when it resets; nothing is stored; another owner is unaffected.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text

from .conftest import (
    AppFactory,
    LiveServer,
    Server,
    cluster_env,
    directive,
    new_conversation,
    read_events,
    send,
    two_servers,
    wait_for_answer,
    wait_until,
)
from .fakemodel import FakeModelServer
from .redis_servers import RedisServer
from .test_a11y import axe_violations, open_page, serve_axe

Serve = Callable[[Any], LiveServer]


def tomorrow() -> str:
    return (datetime.now(UTC).date() + timedelta(days=1)).isoformat() + "T00:00:00Z"


def a_fresh_minute() -> None:
    """Start a per-minute test early in a minute, so that its requests share one."""
    if datetime.now(UTC).second > 45:
        time.sleep(61 - datetime.now(UTC).second)


def refused(response: httpx.Response, limit: str) -> dict[str, Any]:
    """The 429 of `limit`: its error object."""
    assert response.status_code == 429, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert error["limit"] == limit
    assert int(response.headers["Retry-After"]) >= 1
    assert error["message"]
    return error


def post_message(client: httpx.Client, conversation_id: str, content: str = "hi"
                 ) -> httpx.Response:
    return client.post(f"/api/conversations/{conversation_id}/messages",
                       json={"content": content})


def messages_of(client: httpx.Client, conversation_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.get(
        f"/api/conversations/{conversation_id}").json()["messages"]
    return messages


def test_usage_shows_each_limit_and_what_is_used(
        make_app: AppFactory, serve: Serve, database_url: str, fake: FakeModelServer) -> None:
    live = serve(make_app(database_url, LIMIT_ANSWERS_PER_MINUTE="10",
                          LIMIT_TOKENS_PER_DAY="100000", BUDGET_TOKENS_PER_DAY="0",
                          LIMIT_STORED_CONVERSATIONS="5"))
    with live.client() as client:
        before = client.get("/api/usage").json()
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "hello")
        wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
        wait_until(lambda: client.get("/api/usage").json()["tokens_today"] > 0,
                   "the answer's tokens counted")
        after = client.get("/api/usage").json()
        answer = next(m for m in messages_of(client, conversation_id)
                      if m["role"] == "assistant")
    assert before["tokens_today"] == 0
    assert before["limits"]["tokens_per_day"] == {
        "limit": 100000, "used": 0, "remaining": 100000, "resets_at": tomorrow()}
    assert before["limits"]["budget_tokens_per_day"]["limit"] is None  # off
    assert before["limits"]["concurrent_answers"]["limit"] is None  # 0 in the settings
    assert after["answers_today"] == 1
    # The fake model reports its usage: that is what is counted.
    reported = answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]
    assert after["tokens_today"] == reported
    assert after["limits"]["tokens_per_day"]["remaining"] == 100000 - reported
    assert after["limits"]["stored_conversations"] == {
        "limit": 5, "used": 1, "remaining": 4, "resets_at": None}


def test_answers_per_minute(make_app: AppFactory, serve: Serve, database_url: str,
                            fake: FakeModelServer) -> None:
    live = serve(make_app(database_url, LIMIT_ANSWERS_PER_MINUTE="2"))
    a_fresh_minute()
    with live.client() as client, live.client() as other:
        conversations = [new_conversation(client) for _ in range(3)]
        for conversation_id in conversations[:2]:
            send(client, conversation_id, "hi")
        error = refused(post_message(client, conversations[2]), "answers_per_minute")
        assert error["limit_value"] == 2
        resets = datetime.fromisoformat(error["resets_at"])
        assert resets.second == 0
        assert timedelta(0) < resets - datetime.now(UTC) <= timedelta(minutes=1)
        assert messages_of(client, conversations[2]) == []  # nothing stored
        send(other, new_conversation(other), "hi")  # another owner is unaffected
        usage = client.get("/api/usage").json()["limits"]["answers_per_minute"]
        assert usage == {"limit": 2, "used": 2, "remaining": 0,
                         "resets_at": error["resets_at"].replace("+00:00", "Z")}


def test_concurrent_answers_and_regenerate_and_edit_count_too(
        make_app: AppFactory, serve: Serve, database_url: str, fake: FakeModelServer) -> None:
    fake.gap, fake.tokens = 0.2, 400  # answers that keep streaming
    live = serve(make_app(database_url, LIMIT_CONCURRENT_ANSWERS="2"))
    with live.client() as client, live.client() as other:
        conversations = [new_conversation(client) for _ in range(3)]
        first = send(client, conversations[0], "one")
        second = send(client, conversations[1], "two")
        error = refused(post_message(client, conversations[2]), "concurrent_answers")
        assert error["resets_at"] is None
        assert messages_of(client, conversations[2]) == []
        send(other, new_conversation(other), "hi")
        # Stop one: there is room for one more again.
        first_id = first["assistant_message"]["id"]
        assert client.post(f"/api/messages/{first_id}/stop", json={}).status_code == 200
        wait_for_answer(client, conversations[0], first_id)
        third = send(client, conversations[2], "three")
        # Regenerating and editing start answers too: refused while two stream.
        refused(client.post(f"/api/messages/{first_id}/regenerate"), "concurrent_answers")
        user_id = first["user_message"]["id"]
        refused(client.patch(f"/api/messages/{user_id}", json={"content": "one again"}),
                "concurrent_answers")
        assert next(m["content"] for m in messages_of(client, conversations[0])) == "one"
        for conversation_id, sent in ((conversations[1], second), (conversations[2], third)):
            answer_id = sent["assistant_message"]["id"]
            client.post(f"/api/messages/{answer_id}/stop", json={})
            wait_for_answer(client, conversation_id, answer_id)  # none left for the next test


def test_tokens_per_day_and_the_budget(make_app: AppFactory, serve: Serve, database_url: str,
                                       fake: FakeModelServer) -> None:
    # Each answer is 60 tokens and a short prompt (the fake model reports its usage): one
    # takes an owner past 5 tokens, two take the deployment past 100, one does not.
    live = serve(make_app(database_url, LIMIT_TOKENS_PER_DAY="5",
                          BUDGET_TOKENS_PER_DAY="100"))
    long = directive(tokens=60)
    with live.client() as client, live.client() as other, live.client() as third:
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, long)  # under the limit when it starts
        read_events(client, sent["stream_url"])
        wait_until(lambda: client.get("/api/usage").json()["tokens_today"] >= 60,
                   "the answer's tokens counted")
        error = refused(post_message(client, conversation_id), "tokens_per_day")
        assert error["resets_at"] == tomorrow().replace("Z", "+00:00")
        assert len(messages_of(client, conversation_id)) == 2
        # Another owner goes on, until the deployment's budget is spent.
        other_id = new_conversation(other)
        sent = send(other, other_id, long)
        read_events(other, sent["stream_url"])
        wait_until(lambda: other.get("/api/usage").json()["limits"]["budget_tokens_per_day"]
                   ["used"] >= 100, "the deployment's tokens counted")
        refused(post_message(third, new_conversation(third)), "budget_tokens_per_day")


def test_conversations_per_day_and_stored(make_app: AppFactory, serve: Serve,
                                          database_url: str) -> None:
    live = serve(make_app(database_url, LIMIT_CONVERSATIONS_PER_DAY="3",
                          LIMIT_STORED_CONVERSATIONS="2"))
    with live.client() as client, live.client() as other:
        kept = [new_conversation(client) for _ in range(2)]
        error = refused(client.post("/api/conversations", json={}), "stored_conversations")
        assert error["resets_at"] is None
        assert len(client.get("/api/conversations").json()["conversations"]) == 2
        new_conversation(other)
        assert client.delete(f"/api/conversations/{kept[0]}").status_code == 204
        new_conversation(client)  # room again: the third today
        assert client.delete(f"/api/conversations/{kept[1]}").status_code == 204
        error = refused(client.post("/api/conversations", json={}), "conversations_per_day")
        assert error["limit_value"] == 3
        assert error["resets_at"] == tomorrow().replace("Z", "+00:00")
        assert len(client.get("/api/conversations").json()["conversations"]) == 1


def test_an_admin_quota_is_none_and_signed_in_owners_have_their_own(
        make_app: AppFactory) -> None:
    app = make_app(None, LIMIT_ANSWERS_PER_MINUTE="3", SIGNED_IN_LIMIT_ANSWERS_PER_MINUTE="30",
                   LIMIT_TOKENS_PER_DAY="7")
    chat = app.extensions["brook.chat"]
    assert chat.quota(signed_in=True, admin=True) is None
    assert chat.quota(signed_in=False, admin=False).answers_per_minute == 3
    signed_in = chat.quota(signed_in=True, admin=False)
    assert signed_in.answers_per_minute == 30
    assert signed_in.tokens_per_day == 7  # unset for signed-in owners: the same as everyone's


def test_the_counts_survive_a_restart(make_app: AppFactory, serve: Serve,
                                      database_url: str) -> None:
    limits = {"LIMIT_CONVERSATIONS_PER_DAY": "2"}
    first = serve(make_app(database_url, **limits))
    with first.client() as client:
        new_conversation(client)
        new_conversation(client)
        cookies = dict(client.cookies)
    first.stop()
    again = serve(make_app(database_url, **limits))  # a new process's app, same database
    with httpx.Client(base_url=again.url, cookies=cookies, timeout=20) as client:
        refused(client.post("/api/conversations", json={}), "conversations_per_day")


def test_a_burst_from_one_owner_cannot_overshoot(make_app: AppFactory, serve: Serve,
                                                 database_url: str) -> None:
    live = serve(make_app(database_url, LIMIT_ANSWERS_PER_MINUTE="3"))
    a_fresh_minute()
    with live.client() as client:
        conversations = [new_conversation(client) for _ in range(12)]
        cookies = dict(client.cookies)
    statuses: list[int] = []
    start = threading.Barrier(len(conversations))

    def post(conversation_id: str) -> None:
        with httpx.Client(base_url=live.url, cookies=cookies, timeout=30) as mine:
            start.wait()
            statuses.append(post_message(mine, conversation_id).status_code)

    threads = [threading.Thread(target=post, args=(c,)) for c in conversations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] * 3 + [429] * 9
    engine = create_engine(database_url)
    with engine.connect() as connection:
        stored = connection.execute(text(
            "SELECT count(*) FROM messages WHERE role = 'assistant'")).scalar()
    engine.dispose()
    assert stored == 3


# -- two `brook serve` instances ------------------------------------------------------------------

@pytest.fixture(params=["redis", "database"])
def two(request: pytest.FixtureRequest, tmp_path: Path, fake: FakeModelServer, pg_url: str
        ) -> Iterator[tuple[Server, Server]]:
    """Two instances on PostgreSQL, with Redis or without."""
    redis_url = ""
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        redis_url = redis.url
    env = cluster_env(fake, pg_url, redis_url, LIMIT_ANSWERS_PER_MINUTE="3")
    if not redis_url:
        del env["REDIS_URL"]
    yield from two_servers(tmp_path, env)


@pytest.mark.slow
def test_two_instances_share_the_limits(two: tuple[Server, Server]) -> None:
    a, b = two
    a_fresh_minute()
    with httpx.Client(base_url=a.url, timeout=20) as on_a:
        conversations = [new_conversation(on_a) for _ in range(4)]
        cookies = dict(on_a.cookies)
        send(on_a, conversations[0], "one")
        with httpx.Client(base_url=b.url, cookies=cookies, timeout=20) as on_b:
            send(on_b, conversations[1], "two")
            send(on_a, conversations[2], "three")
            refused(post_message(on_b, conversations[3]), "answers_per_minute")
            refused(post_message(on_a, conversations[3]), "answers_per_minute")


# -- the page -------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_shows_usage_and_a_limit_with_its_reset_time(
        make_app: AppFactory, serve: Serve, sqlite_url: str, page: Page,
        scheme: Literal["light", "dark"]) -> None:
    live = serve(make_app(sqlite_url, LIMIT_ANSWERS_PER_MINUTE="1",
                          LIMIT_TOKENS_PER_DAY="100000"))
    a_fresh_minute()
    errors = open_page(page, live, scheme)
    usage = page.locator("#usage")
    expect(usage).to_have_text("Today: 0 tokens · 100,000 left")
    prompt = page.locator("#prompt")
    prompt.fill("What is Brook?")
    prompt.press("Enter")
    answer = page.locator('.message[data-role="assistant"]')
    expect(answer).to_have_attribute("data-status", "complete")
    # The answer's tokens are counted before its end reaches the page.
    expect(usage).not_to_have_text(re.compile(r"Today: 0 tokens"))
    expect(usage).to_have_text(re.compile(r"^Today: \d+ tokens · [\d,]+ left$"))
    # Each answer's own tokens, on demand; the same after a reload.
    for _ in range(2):
        button = answer.get_by_role("button", name="Tokens used")
        answer.hover()
        button.click()
        expect(button).to_have_attribute("aria-expanded", "true")
        expect(answer.locator(".usage-note")).to_have_text(re.compile(
            r"^This answer used \d+ tokens: \d+ for the prompt, \d+ for the answer\.$"))
        page.reload()
        expect(answer).to_have_attribute("data-status", "complete")

    prompt.fill("And what is Flask?")
    prompt.press("Enter")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("You may start 1 answer a minute, and this minute's are "
                                   "used. You can go on at ")
    expect(notice).to_contain_text(re.compile(r"You can go on at \d\d:\d\d( [AP]M)?\.$"))
    expect(prompt).to_have_value("And what is Flask?")  # kept for later; still editable
    expect(prompt).to_be_editable()
    expect(answer).to_have_count(1)
    assert axe_violations(page, live) == []
    assert errors == []


# -- admins -------------------------------------------------------------------------------------

def principal(name: str, email: str) -> dict[str, str]:
    """The headers App Service Authentication's front end sets for a signed-in user."""
    return {"X-MS-CLIENT-PRINCIPAL-ID": name, "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
            "X-MS-CLIENT-PRINCIPAL-NAME": email}


def test_admins_see_every_owners_usage_and_have_no_limits(
        make_app: AppFactory, serve: Serve, database_url: str, fake: FakeModelServer) -> None:
    live = serve(make_app(database_url, WEBSITE_AUTH_ENABLED="true",
                          ADMIN_EMAILS="Boss@Example.com", LIMIT_CONVERSATIONS_PER_DAY="1"))
    alice, boss = principal("alice", "alice@example.com"), principal("boss", "boss@example.com")
    with live.client() as client:
        conversation_id = client.post("/api/conversations", json={}, headers=alice).json()["id"]
        sent = client.post(f"/api/conversations/{conversation_id}/messages",
                           json={"content": "hi"}, headers=alice).json()
        read_events(client, sent["stream_url"], headers=alice)
        refused(client.post("/api/conversations", json={}, headers=alice),
                "conversations_per_day")
        for _ in range(2):  # an admin has no limits
            assert client.post("/api/conversations", json={}, headers=boss).status_code == 201
        assert client.get("/api/usage", headers=boss).json()["limits"][
            "conversations_per_day"]["limit"] is None
        forbidden = client.get("/api/admin/usage", headers=alice)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "forbidden"
        assert client.get("/api/admin/usage").status_code == 401  # not signed in at all
        wait_until(lambda: client.get("/api/admin/usage", headers=boss).json()["days"][0]
                   ["tokens"] > 0, "alice's tokens counted")
        days = client.get("/api/admin/usage?days=1", headers=boss).json()["days"]
        for bad in ("0", "91", "x", "1&days=2"):
            response = client.get(f"/api/admin/usage?days={bad}", headers=boss)
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "invalid_days"
    today = datetime.now(UTC).date().isoformat()
    assert {d["owner"]: (d["day"], d["answers"], d["conversations"]) for d in days} == {
        "aad:alice": (today, 1, 1)}
    assert days[0]["tokens"] > 0


def test_the_admins_page_shows_usage_per_owner_and_day(
        make_app: AppFactory, serve: Serve, database_url: str) -> None:
    live = serve(make_app(database_url, WEBSITE_AUTH_ENABLED="true",
                          ADMIN_EMAILS="boss@example.com", BUDGET_TOKENS_PER_DAY="1000000"))
    alice, boss = principal("alice", "alice@example.com"), principal("boss", "Boss@Example.com")
    with live.client() as client:
        for _ in range(2):
            conversation_id = client.post("/api/conversations", json={},
                                          headers=alice).json()["id"]
            sent = client.post(f"/api/conversations/{conversation_id}/messages",
                               json={"content": "<b>hi</b>"}, headers=alice).json()
            read_events(client, sent["stream_url"], headers=alice)
        wait_until(lambda: client.get("/api/admin/usage", headers=boss).json()["days"][0]
                   ["tokens"] > 0, "alice's tokens counted")
        tokens = client.get("/api/admin/usage", headers=boss).json()["days"][0]["tokens"]
        # Who may see it: the admins only, signed in.
        nobody = client.get("/admin/usage")
        assert (nobody.status_code, nobody.headers["Content-Type"]) == (
            401, "text/html; charset=utf-8")
        assert client.get("/admin/usage", headers=alice).status_code == 403
        assert "Usage of all visitors" not in client.get("/", headers=alice).text
        assert 'href="/admin/usage"' in client.get("/", headers=boss).text
        # What a bad `days` gets: a 400 page, nothing else.
        for bad in ("0", "91", "x", "7&days=8", "07.5"):
            response = client.get(f"/admin/usage?days={bad}", headers=boss)
            assert response.status_code == 400, bad
            assert "days must be one whole number from 1 to 90" in response.text
        shown = client.get("/admin/usage?days=1", headers=boss)
    assert shown.status_code == 200
    assert "Content-Security-Policy" in shown.headers
    today = datetime.now(UTC).date().isoformat()
    assert f"{today} (today)" in shown.text
    row = re.search(r'<th scope="row" class="owner">aad:alice</th><td>(\S+)</td><td>(\S+)</td>'
                    r"<td>(\S+)</td>", shown.text)
    assert row is not None, shown.text
    assert row.groups() == ("2", f"{tokens:,}", "0")
    assert f"1 visitor,\n        2 answers,\n        {tokens:,} tokens" in shown.text
    assert "1,000,000 tokens a day" in shown.text
    assert "aad:boss" not in shown.text  # the admin used nothing


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_admins_page_in_the_browser(
        make_app: AppFactory, serve: Serve, sqlite_url: str, page: Page,
        scheme: Literal["light", "dark"]) -> None:
    live = serve(make_app(sqlite_url, WEBSITE_AUTH_ENABLED="true",
                          ADMIN_EMAILS="boss@example.com"))
    owner = principal("a-visitor-whose-id-is-long-" + "x" * 60, "v@example.com")
    with live.client() as client:
        conversation_id = client.post("/api/conversations", json={}, headers=owner).json()["id"]
        sent = client.post(f"/api/conversations/{conversation_id}/messages",
                           json={"content": "hi"}, headers=owner).json()
        read_events(client, sent["stream_url"], headers=owner)
    page.set_extra_http_headers(principal("boss", "boss@example.com"))
    page.emulate_media(color_scheme=scheme)
    serve_axe(page, live)
    page.goto(live.url + "/")
    page.get_by_role("link", name="Usage of all visitors").click()
    expect(page).to_have_title("Usage · Brook")
    days = page.get_by_label("Days")
    expect(days).to_have_value("7")
    expect(page.get_by_role("row", name=re.compile("a-visitor-whose-id-is-long"))).to_be_visible()
    days.select_option("1")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/admin/usage\?days=1$"))
    expect(page.get_by_role("heading", level=2)).to_contain_text("(today)")
    assert axe_violations(page, live) == []
