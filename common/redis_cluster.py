"""Redis Cluster for the cache (`REDIS_CLUSTER=true`): django-redis 7 has no cluster client,
so this connection factory hands it a redis-py `RedisCluster` instead of a `Redis`. The
cache's own commands (GET/SET/INCR/DELETE, one key each) and the hot tier's scripts and
MULTI pipelines (every key of one thread shares the hash tag `{thd_…}`, so one slot) run on
it unchanged; `LOCATION` is the URL of any node, the client discovers the others."""

from __future__ import annotations

import threading
from typing import Any

from django_redis.exceptions import ConnectionInterrupted
from django_redis.pool import ConnectionFactory
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError


class ClusterConnectionFactory(ConnectionFactory):
    # One RedisCluster per URL and process: it keeps the slot map and a pool per node
    # (django-redis makes a new factory per cache client, so this must be process-global).
    _clusters: dict[str, RedisCluster] = {}
    _lock = threading.Lock()

    def connect(self, url: str) -> Any:
        with self._lock:
            cluster = self._clusters.get(url)
            if cluster is None:
                params = self.make_connection_params(url)
                params.pop("url")
                try:
                    cluster = RedisCluster.from_url(url, **params)
                except (RedisClusterException, RedisError, OSError) as exc:
                    # No node answered: the error django-redis ignores (IGNORE_EXCEPTIONS)
                    # like any other outage, so the request is served from the database.
                    raise ConnectionInterrupted(connection=None) from exc
                self._clusters[url] = cluster
            return cluster

    def disconnect(self, connection: Any) -> None:
        connection.disconnect_connection_pools()
