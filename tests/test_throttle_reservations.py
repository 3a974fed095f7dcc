"""The throttle's reservations of numbers from Redis (common.api.throttling._Leases): exact
numbers per request, few round trips far below the limit, never more than the limit across
processes. Against the real Redis of the test settings (not re-run on the cluster: these
talk to one node with a plain client)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.api.throttling import LEASE_MAX, _leases, _redis_count
from tests.s3 import free_port

ROOT = Path(__file__).resolve().parent.parent

_RESERVE_IN_A_PROCESS = """
import json, sys, time
import redis
from common.api.throttling import _redis_count
client = redis.Redis.from_url(sys.argv[1])
key, limit, count, start = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
time.sleep(max(0.0, float(start) - time.time()))  # all four start at once
print(json.dumps([_redis_count(client, key, 7, limit) for _ in range(count)]))
"""


def _evalsha_calls(client) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.fixture
def redis_client(settings):
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def test_far_below_the_limit_one_round_trip_serves_many_requests(redis_client):
    _leases.clear()
    key = f"lease-{free_port()}"
    before = _evalsha_calls(redis_client)
    numbers = [_redis_count(redis_client, key, 7, 1_000_000) for _ in range(200)]
    # every request has its own number, in order; few round trips were needed for them
    assert numbers == list(range(1, 201))
    assert _evalsha_calls(redis_client) - before <= 2 + 200 // LEASE_MAX
    assert int(redis_client.get(f"tl:throttle:{{{key}}}:7")) <= 200 + LEASE_MAX


def test_near_the_limit_each_request_reserves_one_number(redis_client):
    _leases.clear()
    key = f"lease-{free_port()}"
    numbers = [_redis_count(redis_client, key, 7, 20) for _ in range(30)]
    assert numbers == list(range(1, 31))  # nothing held back: 20 allowed, then refusals
    assert int(redis_client.get(f"tl:throttle:{{{key}}}:7")) == 30


def test_reservations_never_let_more_than_the_limit_through_across_processes(
    redis_client, settings
):
    # given: four processes asking for numbers of one key at once, 300 each, limit 500
    key, limit = f"lease-{free_port()}", 500
    start = str(time.time() + 2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RESERVE_IN_A_PROCESS, settings.REDIS_URL, key]
            + [str(limit), "300", start],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    numbers = [n for out in outputs for n in json.loads(out)]
    # then: no number was handed out twice, at most `limit` requests were allowed, and what
    # reservations held unused is a small share of the limit
    assert len(numbers) == len(set(numbers)) == 1200
    allowed = sum(1 for n in numbers if n <= limit)
    assert allowed <= limit
    assert allowed >= limit - 4 * (limit // 16)
