"""Fixtures of the scale-out tests (`make test-scale`): a real 3-node Redis Cluster and
PgBouncer in transaction pooling mode, each started once per session on free ports."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from tests.scale.services import PgBouncer, RedisCluster


@pytest.fixture(scope="session")
def redis_cluster():
    cluster = RedisCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def on_redis_cluster(settings, redis_cluster):
    """The cache (hot tier, throttle, fill claims) on the cluster, as REDIS_CLUSTER=true
    configures it (config/settings/base.py), emptied for this test."""
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": redis_cluster.url,
            "OPTIONS": {
                **settings.CACHES["default"].get("OPTIONS", {}),
                "CONNECTION_FACTORY": "common.redis_cluster.ClusterConnectionFactory",
            },
        }
    }
    cache.clear()
    yield redis_cluster
    redis_cluster.flush()  # not through the cache: a test may have pointed it elsewhere


@pytest.fixture(scope="session")
def pgbouncer(django_db_setup, django_db_blocker):
    """PgBouncer (pool_mode = transaction) in front of the shared PostgreSQL the test
    database lives on; the server itself is not touched."""
    from django.db import connection

    with django_db_blocker.unblock():
        host = connection.settings_dict["HOST"] or "127.0.0.1"
        port = int(connection.settings_dict["PORT"] or 5432)
    bouncer = PgBouncer(upstream_host=host, upstream_port=port)
    bouncer.start()
    yield bouncer
    bouncer.stop()
