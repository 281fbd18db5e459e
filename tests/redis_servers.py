"""Real Redis servers for tests: one `redis-server` (which a test may kill and restart), or a
local Redis Cluster of real `redis-server` processes.

A missing `redis-server` is a failure, never a skip: the tests that need it must run. Both come
from PATH (tests/services.py).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from brook.chat.redis_keys import disconnect

from .services import redis_tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and _bindable(port + 10000):
            return port


def wait_for_ping(port: int, timeout: float = 10) -> None:
    client = redis.Redis(port=port, socket_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, f"redis-server on {port} did not start"
                time.sleep(0.05)
    finally:
        client.close()


class RedisServer:
    """A `redis-server` on a free port, persisting nothing: a restart starts empty."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_tool("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_ping(self.port)

    def kill(self) -> None:
        """Kill it (SIGKILL: what it held is lost)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> Any:
        """A client of our own (one, reconnecting after a restart), closed by `stop`."""
        if self._client is None:
            self._client = redis.Redis(port=self.port, decode_responses=True)
        return self._client

    def stop(self) -> None:
        self.kill()
        if self._client is not None:
            self._client.close()
            self._client = None


class RedisCluster:
    """A Redis Cluster of `nodes` masters on 127.0.0.1, no replicas.

    Three or more nodes are joined with `redis-cli --cluster create`; a single node takes
    every slot itself (a clustered Redis behind one endpoint, as a clustering proxy shows).
    """

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.ports: list[int] = []
        while len(self.ports) < nodes:
            port = cluster_port()
            if port not in self.ports and port + 10000 not in self.ports:
                self.ports.append(port)
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"
        self.processes: list[subprocess.Popen[bytes]] = []
        self._nodes: dict[int, Any] = {}
        self._client: Any = None

    def start(self) -> None:
        for port in self.ports:
            folder = self.workdir / f"node-{port}"
            folder.mkdir(parents=True, exist_ok=True)
            self.processes.append(subprocess.Popen(
                [redis_tool("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(folder),
                 "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports:
            wait_for_ping(port)
        if len(self.ports) >= 3:
            subprocess.run(
                [redis_tool("redis-cli"), "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        else:
            for port in self.ports:
                subprocess.run([redis_tool("redis-cli"), "-p", str(port), "cluster",
                                "addslotsrange", "0", "16383"],
                               check=True, stdout=subprocess.DEVNULL, timeout=10)
        self._wait_ok()

    def _wait_ok(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for port in self.ports:
            node = redis.Redis(port=port, decode_responses=True)
            try:
                while node.cluster("info")["cluster_state"] != "ok":
                    assert time.monotonic() < deadline, f"cluster node {port} is not ok"
                    time.sleep(0.05)
            finally:
                node.close()

    def node(self, port: int) -> Any:
        """A plain client of one node, closed by `stop`."""
        if port not in self._nodes:
            self._nodes[port] = redis.Redis(port=port, decode_responses=True)
        return self._nodes[port]

    def client(self) -> Any:
        """A cluster client (redis-py's RedisCluster), closed by `stop`."""
        if self._client is None:
            self._client = ClusterClient.from_url(self.url, decode_responses=True)
        return self._client

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.processes.clear()
        for node in self._nodes.values():
            node.close()
        self._nodes.clear()
        if self._client is not None:
            disconnect(self._client)
            self._client = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
