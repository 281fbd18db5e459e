"""What the Redis bus names and how it connects: key names, entry ids, the client.

Every key carries a hash tag, `{b0}` … `{b15}`, the bucket of its message id, so a command
whose keys share a bucket lies in one hash slot: Redis Cluster and the single-endpoint
proxies in front of clustered Redis (Azure Managed Redis's EnterpriseCluster policy) refuse
other multi-key commands with CROSSSLOT.

`connect` finds out which Redis it talks to, once, on first use:

- `INFO cluster` says `cluster_enabled:1`: a Redis Cluster, spoken to through redis-py's
  `RedisCluster` (one blocking pool per node);
- otherwise a plain `Redis` with one blocking pool; an `XREAD` of two keys in two buckets
  then tells whether the server refuses cross-slot commands (a clustering proxy). Either
  way, `grouped` says whether each `XREAD` must keep to one bucket.

`RedisBus(..., cluster=True/False)` skips the `INFO` question.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

BUCKETS = 16
STOP_CHANNEL = "brook:stop"

# What a failing Redis (or a cluster that cannot be reached) raises.
FAILURES: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)

# An ended stream's last id is set to this (XSETID): Redis then refuses any later entry, of
# a writer that was thought dead and goes on, as "equal or smaller than the top item".
SEALED = "18446744073709551615-0"

EntryId = tuple[int, int]
Entry = tuple[str, dict[str, str]]


def bucket(message_id: uuid.UUID) -> int:
    return message_id.int % BUCKETS


def key(message_id: uuid.UUID) -> str:
    """The answer's stream: `brook:{b<bucket>}:answer:<message id>`."""
    return f"brook:{{b{bucket(message_id)}}}:answer:{message_id}"


def bucket_of(stream: str) -> int:
    return int(stream[stream.index("{b") + 2:stream.index("}")])


def wake_key(group: int, token: str) -> str:
    """The stream a process's reader loop for bucket `group` also reads, to be woken."""
    return f"brook:{{b{group}}}:wake:{token}"


def parse_id(entry_id: str) -> EntryId:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def entries_of(reply: Any) -> list[tuple[str, list[Entry]]]:
    """`XREAD`'s reply as (key, entries) pairs (RESP2's list, or the unified map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(k, v) for k, v in reply]


@dataclass(frozen=True)
class Client:
    redis: Any  # redis.Redis or redis.cluster.RedisCluster (redis-py's types ignore decoding)
    cluster: bool
    grouped: bool  # each multi-key command must keep to one bucket


def connect(url: str, *, cluster: bool | None, max_connections: int, pool_timeout: float,
            socket_timeout: float, client_name: str | None) -> Client:
    """Connect to the Redis at `url`; raises one of `FAILURES` if it cannot be reached."""
    options: dict[str, Any] = {
        "decode_responses": True, "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 5.0), "health_check_interval": 30,
        "max_connections": max_connections, "timeout": pool_timeout,
    }
    if client_name:
        options["client_name"] = client_name
    grouped = True
    if cluster is None or not cluster:
        probe: Any = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5,
                                          socket_connect_timeout=5,
                                          retry=Retry(NoBackoff(), 0))
        try:
            if cluster is None:
                try:
                    cluster = probe.info("cluster").get("cluster_enabled") == 1
                except redis.ResponseError:  # INFO refused: not a cluster that says so
                    cluster = False
            if not cluster:
                grouped = _refuses_cross_slot(probe)
        finally:
            probe.close()
    if cluster:
        client: Any = RedisCluster.from_url(
            url, connection_pool_class=redis.BlockingConnectionPool,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), **options)
        return Client(client, cluster=True, grouped=True)
    pool = redis.BlockingConnectionPool.from_url(
        url, retry=Retry(NoBackoff(), 1), **options)  # one retry: a stale pooled socket
    return Client(redis.Redis(connection_pool=pool), cluster=False, grouped=grouped)


def disconnect(client: Any) -> None:
    """Close a client and its pools' connections (a pool handed to a client is not closed
    by the client's own `close`)."""
    nodes: list[Any] = [None]
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes()  # type: ignore[no-untyped-call]
    for node in nodes:
        pool = client.connection_pool if node is None else node.redis_connection.connection_pool
        pool.disconnect()
    client.close()


def _refuses_cross_slot(probe: Any) -> bool:
    try:
        probe.xread({wake_key(0, "probe"): "0-0", wake_key(1, "probe"): "0-0"}, count=1)
    except redis.ResponseError:
        return True
    return False
