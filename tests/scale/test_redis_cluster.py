"""The hot tier, its cache fill and the throttle on a real 3-node Redis Cluster (issue 10,
scale-out): the suites of tests/threads/storage/test_hotcache.py, test_fill.py and
tests/test_throttling.py run again here with the cache on the cluster (the `on_redis_cluster`
autouse fixture below), plus checks that a thread's keys sit on one slot of one node and
that no command was refused (a CROSSSLOT error would only show as a logged miss)."""

from __future__ import annotations

import logging

import pytest
from django_redis import get_redis_connection
from redis.cluster import RedisCluster

from tests.test_throttling import *  # noqa: F403 — re-run on the cluster
from tests.threads.storage.test_fill import *  # noqa: F403
from tests.threads.storage.test_hotcache import *  # noqa: F403
from tests.threads.storage.test_hotcache import append, cached, database_messages, essentials
from threads.storage import hotcache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cluster(on_redis_cluster):
    return on_redis_cluster


def test_the_cache_client_is_a_cluster_client_and_the_cluster_has_three_masters():
    client = get_redis_connection("default")
    assert isinstance(client, RedisCluster)
    assert len(client.get_primaries()) == 3


def test_a_threads_keys_share_one_slot_and_every_script_and_pipeline_runs_there(
    api, thread, caplog, django_capture_on_commit_callbacks, on_redis_cluster
):
    capture = django_capture_on_commit_callbacks
    with caplog.at_level(logging.WARNING, logger="threads.storage.hotcache"):
        # appends (the delta script), a read that fills the cache (SET NX, MULTI pipeline,
        # the rebuild script), a state write, a truncation, then hits
        append(api, thread, "a", "b", capture=capture)
        with capture(execute=True):
            api.get(f"/api/v1/threads/{thread.id}/messages")
        append(api, thread, "c", capture=capture)
        with capture(execute=True):
            api.put(f"/api/v1/threads/{thread.id}/state", {"state": {"step": 2}})
        with capture(execute=True):
            truncated = api.post(f"/api/v1/threads/{thread.id}/messages/truncate", {"keep": 2})
        assert truncated.status_code in (200, 400), truncated.content
        served = api.get(f"/api/v1/threads/{thread.id}/messages").json()["results"]
    refused = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert refused == []  # no CROSSSLOT, no MOVED left unhandled: nothing fell back

    thread.refresh_from_db()
    hv, members, state = cached(thread.pk)
    assert hv == thread.history_version
    assert essentials(members) == database_messages(thread) == essentials(served)
    assert state == {"step": 2}
    assert hotcache.page(thread=thread, after_seq=0, limit=100) is not None  # a hit

    client = get_redis_connection("default")
    keys = [*hotcache.keys(thread.pk), f"tl:{{{thread.pk}}}:fill"]
    slots = {client.keyslot(key) for key in keys}
    assert len(slots) == 1
    (slot,) = slots
    owner = client.get_node_from_key(keys[0])
    stored = [k for k in keys[:3] if owner.redis_connection.exists(k)]
    assert stored == keys[:3] or stored == keys[:2]  # state may live in the meta hash
    assert 0 <= slot < 16384


def test_threads_spread_over_the_nodes(api, project, django_capture_on_commit_callbacks):
    from threads import services

    client = get_redis_connection("default")
    owners = set()
    for _ in range(12):
        thread = services.thread_create(tenant=api.tenant, project_id=project.id)
        append(api, thread, "x", capture=django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=True):
            api.get(f"/api/v1/threads/{thread.id}/messages")
        owners.add(client.get_node_from_key(hotcache.keys(thread.pk)[0]).name)
        thread.refresh_from_db()
        assert hotcache.page(thread=thread, after_seq=0, limit=10) is not None
    assert len(owners) >= 2  # 12 random ids on one node of three: (1/3)^11


@pytest.mark.django_db(transaction=True)
def test_the_rate_limit_holds_across_two_servers_on_the_cluster(on_redis_cluster):
    # given: two gunicorn processes configured by the environment (REDIS_CLUSTER=true) on
    # the cluster, and a key allowed 10 requests a minute
    import os
    import time

    from tests.conftest import make_caller
    from tests.scale.services import Gunicorn, Http
    from tests.workers import test_database_url as worker_database_url

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": on_redis_cluster.url,
        "REDIS_CLUSTER": "true",
        "API_RATE_LIMIT_PER_MINUTE": "10",
    }
    caller = make_caller("limited")
    servers = [Gunicorn(env, workers=1) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        clients = [Http(server.url, caller.secret) for server in servers]
        if time.time() % 60 > 50:  # start in a fresh minute window (the throttle's)
            time.sleep(60 - time.time() % 60 + 0.5)
        # when: 14 requests alternate between them
        statuses = [clients[i % 2].call("GET", "/api/v1/projects/")[0] for i in range(14)]
    finally:
        for server in servers:
            server.stop()
    # then: one budget for the key, counted on the cluster, not one per process
    assert statuses == [200] * 10 + [429] * 4
    counters = [
        key
        for port in on_redis_cluster.ports
        for key in on_redis_cluster.cli(port, "--scan", "--pattern", "*throttle*").split()
    ]
    assert counters  # the counter lives on the cluster
