"""`brook serve` for real: gunicorn with a gevent worker in its own process, killed, restarted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from brook.models import Message

from .conftest import (
    BROOK,
    Server,
    directive,
    new_conversation,
    read_events,
    send,
    text_of,
    wait_for_answer,
    wait_until,
)
from .fakemodel import FakeModelServer

pytestmark = pytest.mark.slow  # `brook serve`


@pytest.fixture
def server(tmp_path: Path, fake: FakeModelServer, database_url: str) -> Iterator[Server]:
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": database_url, "SECRET_KEY": "serve-test",
        "OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_MODEL": "fake-gpt",
        "FLUSH_INTERVAL_MS": "100",
    }
    if database_url.startswith("postgresql"):
        subprocess.run([BROOK, "db", "upgrade"], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
    s = Server(tmp_path, env)
    yield s
    s.stop()


def test_gunicorn_gevent_serves_and_a_restart_marks_interrupted(server: Server,
                                                                 database_url: str) -> None:
    server.start()
    with httpx.Client(base_url=server.url, timeout=20) as client:
        assert "Brook" in client.get("/").text
        conversation_id = new_conversation(client)
        sent = send(client, conversation_id, "long " + directive(tokens=2000, gap=0.01))
        first = text_of(read_events(client, sent["stream_url"], limit=30))
        assert first
        engine = create_engine(database_url)
        stored = select(Message.content).where(
            Message.id == uuid.UUID(sent["assistant_message"]["id"]))

        def batch_stored() -> bool:
            with engine.connect() as connection:
                return len(connection.execute(stored).scalar_one()) >= len(first)

        wait_until(batch_stored, "a batch to reach the database", every=0.05)
        engine.dispose()
        server.kill()

        server.start()
        answer = wait_for_answer(client, conversation_id, sent["assistant_message"]["id"])
        assert answer["status"] == "interrupted"
        assert answer["content"].startswith(first)
        assert len(answer["content"].split()) < 2000
        events = read_events(client, sent["stream_url"])
        assert text_of(events) == answer["content"]
        assert events[-1]["data"]["status"] == "interrupted"
        # The conversation goes on.
        again = send(client, conversation_id, "again")
        done = wait_for_answer(client, conversation_id, again["assistant_message"]["id"])
        assert done["status"] == "complete"
    assert "marked 1 answer(s) interrupted: the process writing them is gone" \
        in server.log.read_text()


PROBE = """
from gevent import monkey; monkey.patch_all()
import json, socket, sys
import gevent
import httpcore2._utils
from brook.gunicorn_conf import probe_idle_connections_without_yielding

turns = 0
def other():  # counts the event loop's turns that reach it
    global turns
    while True:
        turns += 1
        gevent.sleep(0)

def probe(sock):  # what the model client's pool asks of each idle connection
    global turns
    turns = 0
    readable = [httpcore2._utils.is_socket_readable(sock) for _ in range(20)]
    return {"readable": readable[-1], "turns": turns}

gevent.spawn(other); gevent.sleep(0)
a, b = socket.socketpair()
report = {"gevent": probe(a)}
probe_idle_connections_without_yielding()
report["idle"] = probe(a)
b.sendall(b"x")
report["data"] = probe(a)
a.recv(1); b.close()
report["closed"] = probe(a)
print(json.dumps(report))
"""


def test_the_model_clients_pool_checks_idle_connections_without_a_turn_of_the_loop() -> None:
    """Each start or end of an upstream request checks every idle connection in the pool;
    under gevent's own poll each check waited a turn of the event loop (with the pool's
    lock held). The worker's fix gives the same answers without yielding."""
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True,
                            text=True, timeout=60, check=True)
    report = json.loads(result.stdout)
    assert report["gevent"]["turns"] >= 20, report  # the test can tell a yielding check
    assert report["idle"] == {"readable": False, "turns": 0}
    assert report["data"] == {"readable": True, "turns": 0}
    assert report["closed"] == {"readable": True, "turns": 0}


RESOLVE = """
from gevent import monkey; monkey.patch_all()
import json, socket
import gevent
from brook.gunicorn_conf import resolve_addresses_in_place

asked = []

class Counting:  # gevent's own resolver, counting the hosts that reach it
    def __init__(self, inner):
        self.inner = inner
    def getaddrinfo(self, host, *args):
        asked.append(host)
        return self.inner.getaddrinfo(host, *args)
    def __getattr__(self, name):
        return getattr(self.inner, name)

def resolve():
    return {host: socket.getaddrinfo(host, 80, 0, socket.SOCK_STREAM)
            for host in ("127.0.0.1", "::1", "localhost")}

gevent.get_hub().resolver = Counting(gevent.get_hub().resolver)
before = resolve()
report = {"asked before": list(asked)}
asked.clear()
resolve_addresses_in_place()
resolve_addresses_in_place()  # once is enough; twice changes nothing
after = resolve()
print(json.dumps({**report, "asked after": asked, "same": before == after}))
"""


def test_a_worker_resolves_ip_addresses_without_the_thread_pool() -> None:
    """gevent hands every lookup to a thread of its pool; the worker answers an IP address
    (a model server at 127.0.0.1) itself, the same as the pool would, and still hands
    names to the pool."""
    result = subprocess.run([sys.executable, "-c", RESOLVE], capture_output=True,
                            text=True, timeout=60, check=True)
    report = json.loads(result.stdout)
    assert report["asked before"] == ["127.0.0.1", "::1", "localhost"]
    assert report["asked after"] == ["localhost"]
    assert report["same"] is True


HEAP = """
import gc, json, sys, tempfile
from brook import create_app
from brook.gunicorn_conf import freeze_start_up_objects

with tempfile.TemporaryDirectory() as tmp:
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/b.db", "BROOK_INSTANCE_PATH": tmp,
                      "SECRET_KEY": "heap", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                      "OPENAI_MODEL": "m", **json.loads(sys.argv[1])})
    authlib = "authlib" in sys.modules
    tracked = len(gc.get_objects())
    freeze_start_up_objects()
    print(json.dumps({"authlib": authlib, "tracked": tracked, "frozen": gc.get_freeze_count(),
                      "left": len(gc.get_objects())}))
    app.extensions["brook.chat"].close()
"""


@pytest.mark.parametrize("oidc", [False, True])
def test_a_worker_starts_with_a_small_heap_and_freezes_it(oidc: bool) -> None:
    """Authlib (and the requests and cryptography it brings) is imported only to sign in;
    what the worker made while starting leaves the collector's generations."""
    extra = {"AUTH_MODE": "oidc", "OIDC_ISSUER": "https://login.example.com",
             "OIDC_CLIENT_ID": "brook"} if oidc else {}
    result = subprocess.run([sys.executable, "-c", HEAP, json.dumps(extra)], text=True,
                            capture_output=True, timeout=120, check=True)
    heap = json.loads(result.stdout.strip().splitlines()[-1])
    assert heap["authlib"] is oidc
    assert heap["frozen"] >= heap["tracked"] * 0.9
    assert heap["left"] < heap["tracked"] * 0.1
