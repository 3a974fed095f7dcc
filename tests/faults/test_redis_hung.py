"""A hung Redis (a private redis-server, SIGSTOPped; it is the cache, the throttle's store and
the Celery broker at once): after the first seconds requests are about as fast as before,
/readyz answers `degraded` within its timeout, and the outage is logged once per breaker
period per process, not per request."""

from __future__ import annotations

import statistics
import time

import pytest

from tests.faults.harness import Served, new_tenant, project_env

READYZ_TIMEOUT = 2.0


@pytest.fixture
def served(database_url, redis_server, tmp_path):
    env = project_env(
        DATABASE_URL=database_url,
        REDIS_URL=f"{redis_server.url}/0",
        CELERY_BROKER_URL=f"{redis_server.url}/1",
        API_RATE_LIMIT_PER_MINUTE="1000000",  # on: the throttle counts in Redis
        THROTTLE_DIR=str(tmp_path / "throttle"),
        READYZ_TIMEOUT_SECONDS=str(READYZ_TIMEOUT),
        LOG_LEVEL="WARNING",
    )
    server = Served(env)
    server.key = new_tenant(env)
    yield server
    server.stop()


def p50_of_reads(served, path: str, count: int) -> float:
    latencies = []
    for _ in range(count):
        started = time.monotonic()
        status, body = served.get(path, key=served.key, timeout=10)
        latencies.append(time.monotonic() - started)
        assert status == 200, body
    return statistics.median(latencies)


def test_hung_redis_costs_little_after_the_first_seconds(served, redis_server):
    # given: a thread with a few messages, read while Redis answers
    status, project = served.post("/api/v1/projects/", {"name": "p"}, key=served.key)
    status, thread = served.post(
        "/api/v1/threads/", {"project": project["id"], "title": "t"}, key=served.key
    )
    path = f"/api/v1/threads/{thread['id']}/messages"
    batch = [{"id": f"m{n}", "role": "user", "content": "x"} for n in range(20)]
    assert served.post(path, {"messages": batch}, key=served.key)[0] == 201
    before = p50_of_reads(served, path, 40)
    lines_before = served.log.count("redis")
    # when: Redis hangs (accepts connections, never answers)
    redis_server.pause()
    try:
        outage_started = time.monotonic()
        deadline = outage_started + 4
        while time.monotonic() < deadline:  # the first seconds: each process trips its breaker
            assert served.get(path, key=served.key, timeout=10)[0] == 200
        after = p50_of_reads(served, path, 40)
        started = time.monotonic()
        status, ready = served.get("/readyz", timeout=10)
        readyz_took = time.monotonic() - started
        appended = served.post(
            path, {"messages": [{"id": "during", "role": "user", "content": "x"}]}, key=served.key
        )
        outage = time.monotonic() - outage_started
    finally:
        redis_server.resume()
    # then
    assert after <= 2 * before + 0.01, (before, after)
    assert status == 200 and ready["status"] == "ok", ready
    assert ready["checks"]["redis"]["status"] == "degraded", ready
    assert readyz_took < READYZ_TIMEOUT + 1.5, readyz_took
    assert appended[0] == 201, appended
    assert str(redis_server.port) not in str(ready)  # no raw connection errors
    # one warning per breaker period (5 s) per worker (2) per breaker, not one per request
    periods = outage / 5 + 1
    warnings = served.log.count("redis") - lines_before
    assert warnings <= 2 * periods * 2 + 2, served.log[-3000:]
    # when Redis answers again, everything is read back whole
    time.sleep(5.5)  # the breakers' period
    status, page = served.get(path, key=served.key)
    assert [m["id"] for m in page["results"]] == [f"m{n}" for n in range(20)] + ["during"]
