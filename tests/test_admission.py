"""Admission: a worker refuses a new answer when it has as many as it takes, or when its event
loop runs late, and a refusal comes before anything is stored (see test_scale.py for the
same through two real servers)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from brook.chat.admission import Admission, Overloaded

from .conftest import (
    AppFactory,
    LiveServer,
    directive,
    new_conversation,
    send,
    wait_for_answer,
)


def test_places_are_held_while_turns_are_stored_and_counted_once() -> None:
    in_flight = 0
    admission = Admission(3, 60.0, lambda: in_flight, spawn=lambda _probe: None)
    with admission.slot():
        with admission.slot():
            admission.check()  # two places held, one free
            with admission.slot(), pytest.raises(Overloaded) as refused:
                admission.check()
            assert refused.value.retry_after >= 1
        in_flight = 1  # the second went live as its place was given back: counted once
        admission.check()
        with admission.slot(), pytest.raises(Overloaded):
            admission.check()
    in_flight = 2
    admission.check()
    in_flight = 3
    with pytest.raises(Overloaded), admission.slot():
        pass
    assert admission.reserved == 0


def test_an_event_loop_running_late_refuses_while_it_is_late() -> None:
    # No probe runs: this stands for an event loop too busy to get to it. The overdue probe
    # counts as lag at once, without waiting for it to run.
    now = [100.0]
    admission = Admission(100, 1.0, lambda: 0, spawn=lambda _probe: None,
                          clock=lambda: now[0])
    admission.start()  # the probe is due, but never runs
    admission.check()
    now[0] += 1.0  # due after 0.05 s: 0.95 s late, under the limit
    admission.check()
    now[0] += 1.6  # 2.55 s late
    with pytest.raises(Overloaded) as refused:
        admission.check()
    assert refused.value.retry_after == 3


@pytest.mark.slow  # an answer paced over 1.5 s
def test_refused_message_is_503_with_retry_after_and_stores_nothing(
        make_app: AppFactory, serve: Callable[[Flask], LiveServer], database_url: str) -> None:
    live = serve(make_app(database_url, MAX_ANSWERS_PER_WORKER="1"))
    with live.client() as client:
        busy, other = new_conversation(client), new_conversation(client)
        first = send(client, busy, "slow " + directive(tokens=30, gap=0.05))
        for method, path, body in (
                ("POST", f"/api/conversations/{other}/messages", {"content": "hello"}),
                ("POST", f"/api/messages/{first['assistant_message']['id']}/regenerate", {}),
                ("PATCH", f"/api/messages/{first['user_message']['id']}", {"content": "x"})):
            response = client.request(method, path, json=body)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "overloaded"
            assert int(response.headers["Retry-After"]) >= 1
        assert client.get(f"/api/conversations/{other}").json()["messages"] == []
        wait_for_answer(client, busy, first["assistant_message"]["id"])
        again = send(client, other, "hello")
        assert wait_for_answer(client, other, again["assistant_message"]["id"])["status"] \
            == "complete"
