"""A hung S3 (a TCP proxy in front of moto that accepts and then never answers): cold reads
and flushes answer 503 within the fail-fast budget, cold calls beyond the host's
COLD_STORAGE_CONCURRENCY slots are refused at once (cold_storage_busy), and hot threads keep
answering meanwhile."""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.conftest import s3_env
from tests.faults.harness import Served, new_tenant, project_env

BUDGET = 5.0  # the defaults: 2 attempts × 2 s read timeout + at most 1 s of backoff
SLACK = 2.0  # process scheduling on a loaded 2-core machine


@pytest.fixture
def served(database_url, moto, s3_proxy, tmp_path):
    env = project_env(DATABASE_URL=database_url, REDIS_URL="", **s3_env(moto, s3_proxy, tmp_path))
    server = Served(env)
    server.key = new_tenant(env)
    yield server
    server.stop()


def make_thread(served, project: str, title: str, messages: int = 3) -> str:
    status, thread = served.post(
        "/api/v1/threads/", {"project": project, "title": title}, key=served.key
    )
    assert status == 201, thread
    batch = [{"id": f"{title}-{n}", "role": "user", "content": "x"} for n in range(messages)]
    path = f"/api/v1/threads/{thread['id']}/messages"
    status, body = served.post(path, {"messages": batch}, key=served.key)
    assert status == 201, body
    return thread["id"]


def timed(call) -> tuple[float, int, dict]:
    started = time.monotonic()
    status, body = call()
    return time.monotonic() - started, status, body


def test_hung_s3_fails_fast_and_cannot_starve_hot_reads(served, s3_proxy):
    # given: a hot thread, and twelve threads flushed to S3 while it answered
    status, project = served.post("/api/v1/projects/", {"name": "p"}, key=served.key)
    assert status == 201
    hot = make_thread(served, project["id"], "hot")
    to_flush = make_thread(served, project["id"], "to-flush")
    cold = [make_thread(served, project["id"], f"cold{n}") for n in range(12)]
    for thread_id in cold:
        status, body = served.post(f"/api/v1/threads/{thread_id}/flush", None, key=served.key)
        assert status == 200 and body["tier"] == "cold", body
    # when: S3 hangs, and twelve cold reads plus a flush run at once
    s3_proxy.stall()
    results: list[tuple[float, int, dict]] = []

    def cold_read(thread_id: str) -> None:
        path = f"/api/v1/threads/{thread_id}/messages"
        results.append(timed(lambda: served.get(path, key=served.key)))

    def flush() -> None:
        path = f"/api/v1/threads/{to_flush}/flush"
        results.append(timed(lambda: served.post(path, None, key=served.key)))

    workers = [threading.Thread(target=cold_read, args=(t,)) for t in cold]
    workers.append(threading.Thread(target=flush))
    for worker in workers:
        worker.start()
    hot_reads = []
    hot_path = f"/api/v1/threads/{hot}/messages"
    while any(worker.is_alive() for worker in workers):
        hot_reads.append(timed(lambda: served.get(hot_path, key=served.key, timeout=10)))
    for worker in workers:
        worker.join()
    # then: every cold call answered 503 within the budget, some refused at once as busy
    codes = [body["error"]["code"] for _, status, body in results if status == 503]
    assert len(codes) == 13, results
    assert set(codes) <= {"cold_storage_unavailable", "cold_storage_busy"}, codes
    assert max(elapsed for elapsed, _, _ in results) < BUDGET + SLACK, results
    busy = [e for e, _, body in results if body["error"]["code"] == "cold_storage_busy"]
    # 13 calls, 8 slots: the rest refused after the 2 s slot wait, not the store's budget
    assert busy and max(busy) < 2.0 + SLACK, results
    # and the hot thread answered all along, promptly
    assert hot_reads and {status for _, status, _ in hot_reads} == {200}
    assert max(elapsed for elapsed, _, _ in hot_reads) < 2.0, sorted(e for e, _, _ in hot_reads)
    # nothing was lost: the thread that failed to flush is still hot and whole
    status, thread = served.get(f"/api/v1/threads/{to_flush}/", key=served.key)
    assert thread["tier"] == "hot"
    # when S3 answers again, the cold threads come back whole
    s3_proxy.resume()
    for thread_id in cold:
        status, page = served.get(f"/api/v1/threads/{thread_id}/messages", key=served.key)
        assert status == 200, page
        assert len(page["results"]) == 3
