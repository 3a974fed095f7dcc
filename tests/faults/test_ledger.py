"""The ledger test: concurrent appenders over HTTP (a real gunicorn served with
gunicorn.conf.py) sending overlapping batches with repeated ids, while Redis hangs (a private
redis-server SIGSTOPped), S3 hangs (a TCP proxy in front of moto that stalls) and PostgreSQL
is restarted (a private cluster), with flushes to cold storage and transparent hydrates in
between. Afterwards every acknowledged id is stored exactly once and every thread's seqs are
contiguous. Unacknowledged requests (503s, cut connections) may or may not have been stored;
that is the client's retry to settle — but nothing stored is ever duplicated."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from tests.faults.conftest import s3_env
from tests.faults.harness import Served, new_tenant, project_env

THREADS = 3  # Threadline threads the clients share
CLIENTS = 6
POOL = 300  # ids per thread: clients draw from the same pool, so ids repeat and race
RUN_SECONDS = 32


@pytest.fixture
def served(database_url, redis_server, moto, s3_proxy, tmp_path):
    env = project_env(
        DATABASE_URL=database_url,
        REDIS_URL=f"{redis_server.url}/0",
        CELERY_BROKER_URL=f"{redis_server.url}/1",
        API_RATE_LIMIT_PER_MINUTE="1000000",
        **s3_env(moto, s3_proxy, tmp_path),
    )
    server = Served(env)
    server.key = new_tenant(env)
    yield server
    server.stop()


def read_all(served, thread_id: str) -> list[dict]:
    messages, after = [], 0
    while True:
        path = f"/api/v1/threads/{thread_id}/messages?after_seq={after}&limit=1000"
        status, page = served.get(path, key=served.key)
        assert status == 200, page
        messages += page["results"]
        if not page["results"] or not page.get("next"):
            return messages
        after = page["results"][-1]["seq"]


def test_every_acknowledged_id_is_stored_once_with_contiguous_seqs_through_faults(
    served, redis_server, s3_proxy, pg
):
    status, project = served.post("/api/v1/projects/", {"name": "ledger"}, key=served.key)
    assert status == 201
    threads = []
    for n in range(THREADS):
        status, thread = served.post(
            "/api/v1/threads/", {"project": project["id"], "title": f"t{n}"}, key=served.key
        )
        assert status == 201
        threads.append(thread["id"])
    acked: dict[str, set[str]] = {t: set() for t in threads}
    outcomes: Counter = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            thread_id = rng.choice(threads)
            ids = rng.sample(range(POOL), rng.randint(1, 3))
            batch = [
                {"id": f"m{i}", "role": "user", "content": f"message m{i} of {thread_id}"}
                for i in ids
            ]
            path = f"/api/v1/threads/{thread_id}/messages"
            try:
                status, _ = served.post(path, {"messages": batch}, key=served.key, timeout=15)
            except OSError:
                status = "connection"
            with lock:
                outcomes[status] += 1
                if status in (200, 201):
                    acked[thread_id].update(m["id"] for m in batch)

    def tiers() -> None:
        """Flushes now and then (appends to a cold thread hydrate it transparently)."""
        rng = random.Random(99)
        while not stop.is_set():
            thread_id = rng.choice(threads)
            try:
                status, _ = served.post(
                    f"/api/v1/threads/{thread_id}/flush", None, key=served.key, timeout=15
                )
            except OSError:
                status = "connection"
            with lock:
                outcomes[f"flush {status}"] += 1
            stop.wait(1.0)

    workers = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    workers.append(threading.Thread(target=tiers))
    for worker in workers:
        worker.start()
    started = time.monotonic()
    try:

        def at(second: float) -> None:
            stop.wait(max(0.0, started + second - time.monotonic()))

        at(4)
        redis_server.pause()  # Redis hangs: cache, throttle and broker
        at(10)
        redis_server.resume()
        at(13)
        s3_proxy.stall()  # S3 hangs: flushes and hydrates fail fast, appends to hot go on
        at(19)
        s3_proxy.resume()
        at(22)
        pg.restart()  # PostgreSQL goes away and comes back
        at(RUN_SECONDS)
    finally:
        stop.set()
        redis_server.resume()
        s3_proxy.resume()
        for worker in workers:
            worker.join(timeout=60)
    # then: traffic was acknowledged through the faults
    assert sum(outcomes[s] for s in (200, 201)) > 100, outcomes
    assert outcomes[201] > 0 and outcomes[200] > 0, outcomes  # new ids and repeated ones
    assert not [s for s in outcomes if s == 500 or str(s).endswith(" 500")], outcomes
    total = 0
    for thread_id in threads:
        stored = read_all(served, thread_id)
        ids = [m["id"] for m in stored]
        seqs = [m["seq"] for m in stored]
        duplicated = [i for i, n in Counter(ids).items() if n > 1]
        assert not duplicated, (thread_id, duplicated)
        missing = acked[thread_id] - set(ids)
        assert not missing, (thread_id, sorted(missing))
        assert seqs == list(range(1, len(seqs) + 1)), (thread_id, seqs)
        total += len(ids)
    assert total >= sum(len(a) for a in acked.values())
    print(f"ledger: {dict(outcomes)}; {total} messages stored, all acknowledged ids once")
