"""What one worker's CPU pays per request to set an answer up, one request at a time.

    .venv/bin/python benchmarks/request_cost.py [--clients 200] [--repeats 5]
        [--database sqlite,postgres]

Starts the fake model (``load_upstream.py``, holding each answer's first token for
``--ttft`` seconds, so no token is relayed while a phase is measured) and ``brook serve``
with one gevent worker, then, for each repeat, runs each phase for every client, one request
after the other, and reads the worker's CPU time (``utime + stime`` from /proc) before and
after the phase:

- ``floor``: ``GET /healthz``, a view that does nothing: what gunicorn, gevent and Flask
  cost per request on this machine;
- ``create``: ``POST /api/conversations`` from a new browser (no cookie: a new owner, whose
  signed cookie is set);
- ``send``: ``POST …/messages``, the turn stored and the model's request opened (its own
  connection: every answer is in flight at once);
- ``stream``: ``GET`` the answer's stream, up to its response's head.

Each phase's figure is the worker's CPU milliseconds per request, the median of the repeats
(with the least and the most). A burst of N new conversations on one worker, each client
creating, sending and opening its stream, needs about N times ``create + send + stream`` of
that worker's CPU before the last of them is set up, and the time to the first token of the
answers started last grows by that much (docs/performance.md). Sequential requests are the
cheapest case: under a burst the event loop's switching comes on top.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import load_servers as servers


class Client:
    """One browser: its connection, its cookie, its conversation and its answer's stream."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""
        self.conversation = ""
        self.stream_url = ""
        self.stream: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: object = None, expect: int = 200) -> bytes:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, data, headers)
        response = self.conn.getresponse()
        text = response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {text[:200]!r}")
        if cookie := response.getheader("set-cookie"):
            self.cookie = cookie.split(";", 1)[0]
        return text

    def floor(self) -> None:
        self._request("GET", "/healthz")

    def create(self) -> None:
        self.conversation = json.loads(self._request("POST", "/api/conversations", {}, 201))["id"]

    def send(self) -> None:
        turn = json.loads(self._request("POST", f"/api/conversations/{self.conversation}/messages",
                                        {"content": secrets.token_hex(8)}, 202))
        self.stream_url = turn["stream_url"]

    def open_stream(self) -> None:
        self.stream = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.stream.request("GET", self.stream_url, headers={"Accept": "text/event-stream",
                                                             "Cookie": self.cookie})
        response = self.stream.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {self.stream_url}: HTTP {response.status}")

    def close(self) -> None:
        self.conn.close()
        if self.stream is not None:
            self.stream.close()


# Each phase and what a client does in it, in the order they run.
STEPS: dict[str, Callable[[Client], None]] = {
    "floor": Client.floor, "create": Client.create, "send": Client.send,
    "stream": Client.open_stream}


def measure(worker: int, clients: list[Client], step: Callable[[Client], None],
            settle: float) -> float:
    """The worker's CPU milliseconds per client for `step` run on each client in turn
    (including what the step set going in the background, for `settle` seconds after)."""
    time.sleep(settle)
    before = servers.cpu_seconds(worker)
    for client in clients:
        step(client)
    time.sleep(settle)
    return (servers.cpu_seconds(worker) - before) * 1000 / len(clients)


def run_database(name: str, args: argparse.Namespace, run_dir: Path, upstream_port: int
                 ) -> dict[str, list[float]]:
    instance = run_dir / f"instance-{name}"
    instance.mkdir(parents=True)
    settings = {
        **servers.fake_model_settings(f"http://127.0.0.1:{upstream_port}/v1", instance),
        "SHUTDOWN_GRACE_SECONDS": "1", "MAX_ANSWERS_PER_WORKER": str(args.clients + 1),
    }
    if name == "postgres":
        servers.reset_postgres(args.postgres_url)
        settings["DATABASE_URL"] = args.postgres_url
    env = servers.brook_env(settings)
    servers.run_checked([str(servers.BIN / "brook"), "db", "upgrade"], env=env, cwd=run_dir)
    port = servers.free_port()
    brook = servers.start_brook(port, env, run_dir, run_dir / f"brook-{name}.log")
    costs: dict[str, list[float]] = {phase: [] for phase in STEPS}
    try:
        worker = servers.child_pids(brook.pid)[0]
        for repeat in range(args.repeats + 1):  # the first is a warm-up, not counted
            clients = [Client(port) for _ in range(args.clients)]
            measured = {phase: measure(worker, clients, step, args.settle)
                        for phase, step in STEPS.items()}
            for client in clients:
                client.close()
            if repeat:
                for phase, value in measured.items():
                    costs[phase].append(value)
            print(f"  {name} repeat {repeat}{'' if repeat else ' (warm-up)'}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in measured.items()), flush=True)
            time.sleep(args.ttft + 1)  # the answers end (one token each) before the next
    finally:
        servers.stop(brook)
    return costs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200, help="clients per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--database", default="sqlite,postgres",
                   help="comma-separated: sqlite (a file), postgres (--postgres-url)")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/brook_bench")
    p.add_argument("--ttft", type=float, default=4.0,
                   help="the fake model's seconds to the first token (longer than a phase)")
    p.add_argument("--settle", type=float, default=0.5,
                   help="seconds before and after each phase")
    args = p.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="brook-request-cost-"))
    upstream_port, stats_port = servers.free_port(), servers.free_port()
    upstream = servers.start_upstream(upstream_port, stats_port, args.ttft, 0.02, 1,
                                      run_dir / "fake-model.log", uvloop=False)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for name in args.database.split(","):
            results[name] = run_database(name, args, run_dir, upstream_port)
    finally:
        servers.stop(upstream)
    print(f"\nworker CPU ms per request, median of {args.repeats} repeats of {args.clients} "
          "clients (least-most)")
    print(f"{'database':>10}" + "".join(f"{phase:>20}" for phase in (*STEPS, "per client")))
    for name, costs in results.items():
        cells = [f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
                 for v in costs.values()]
        per_client = [sum(costs[phase][i] for phase in STEPS if phase != "floor")
                      for i in range(args.repeats)]
        cells.append(f"{statistics.median(per_client):.2f}")
        print(f"{name:>10}" + "".join(f"{cell:>20}" for cell in cells))
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
