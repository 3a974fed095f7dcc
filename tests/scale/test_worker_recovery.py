"""A worker SIGKILLed mid-task (issue 10, item 7): its compaction or flush is taken over
within about a minute (COMPACTION_LEASE_SECONDS / FLUSH_LEASE_SECONDS, shortened here), and
never runs twice at once. Real Celery workers, a real LLM stand-in that holds its answer, a
real TCP proxy that stalls S3; the kill is a real SIGKILL of the worker's process group."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tasks.tasks import flush_idle_threads
from tests.proxy import TcpProxy
from tests.threads.conversation.helpers import append, events, history, say, worker_env
from tests.workers import celery_worker, kill_worker, wait_for
from threads import services
from threads.conversation.backstop import compaction_backstop
from threads.models import Compaction, Event, Thread

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = 8  # seconds; the default is 30
SLACK = 12  # a poll interval, a heartbeat and a loaded 2-core machine


@pytest.fixture
def short_leases(settings):
    settings.COMPACTION_LEASE_SECONDS = LEASE
    settings.FLUSH_LEASE_SECONDS = LEASE
    return {"COMPACTION_LEASE_SECONDS": str(LEASE), "FLUSH_LEASE_SECONDS": str(LEASE)}


class HeldAnswers:
    """llm.on_request: the first `hold` summary requests wait until release() (a provider
    that takes its time); the later ones answer at once."""

    def __init__(self, hold: int = 1) -> None:
        self.hold, self.seen = hold, 0
        self.arrived = threading.Event()
        self.released = threading.Event()

    def __call__(self, body) -> None:
        if body.get("max_tokens") == 1:
            return
        self.seen += 1
        if self.seen <= self.hold:
            self.arrived.set()
            self.released.wait(timeout=120)

    def release(self) -> None:
        self.released.set()


def compact_url(thread) -> str:
    return f"/api/v1/threads/{thread.id}/compact"


def summaries(thread) -> list[tuple[str, str]]:
    return [m for m in history(thread) if m[1] == "system"]


def test_a_killed_workers_compaction_frees_the_thread_within_the_lease(
    api, project, llm, s3, short_leases
):
    # given: a compaction running on a worker, the provider holding its answer
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(20))
    held = HeldAnswers()
    llm.on_request = held
    env = worker_env(llm=llm, s3=s3) | short_leases
    with celery_worker(extra_env=env) as worker:
        first = api.post(compact_url(thread), {"keep_last": 5})
        assert first.status_code == 202, first.content
        dead = first.json()["id"]
        assert held.arrived.wait(60)
        # when: the worker is SIGKILLed mid-compaction
        kill_worker(worker)
    killed_at = time.monotonic()
    held.release()
    # then: while the lease runs a new request is refused (the run may be alive) …
    assert api.post(compact_url(thread)).status_code == 409

    with celery_worker(extra_env=env):
        # … and once it has expired a new request is accepted, failing the dead run
        accepted = wait_for(
            lambda: (r := api.post(compact_url(thread), {"keep_last": 5})).status_code == 202 and r,
            timeout=LEASE + SLACK,
            interval=0.5,
        )
        assert time.monotonic() - killed_at <= LEASE + SLACK
        lost = Compaction.objects.get(pk=dead)
        assert (lost.status, lost.error.split(":")[0]) == ("failed", "worker_lost")
        # the new compaction runs on the new worker, exactly once
        fresh = accepted.json()["id"]
        wait_for(lambda: Compaction.objects.get(pk=fresh).status in ("succeeded", "failed"))
    assert Compaction.objects.get(pk=fresh).status == "succeeded"
    assert len(events(thread, "thread.compacted")) == 1
    assert len(summaries(thread)) == 1
    assert len(history(thread)) == 6
    assert [e["code"] for e in events(thread, "compaction.failed")] == ["worker_lost"]


def test_a_stalled_run_that_lost_its_lease_to_the_backstop_commits_nothing(
    api, project, llm, s3, short_leases
):
    # given: a compaction whose worker is frozen (SIGSTOP) while the provider answers
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(20))
    held = HeldAnswers()
    llm.on_request = held
    env = worker_env(llm=llm, s3=s3) | short_leases
    with celery_worker(extra_env=env) as frozen:
        cid = api.post(compact_url(thread), {"keep_last": 5}).json()["id"]
        assert held.arrived.wait(60)
        os.killpg(frozen.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            with celery_worker(extra_env=env):
                # when: the backstop (the beat schedule's task) finds the lease expired …
                wait_for(
                    lambda: cid in compaction_backstop()["stale"],
                    timeout=LEASE + SLACK,
                    interval=0.5,
                )
                assert time.monotonic() - stopped_at <= LEASE + SLACK
                # … and a second worker runs the compaction to the end
                wait_for(lambda: Compaction.objects.get(pk=cid).status == "succeeded")
            # then the frozen run wakes up with its answer and finds its claim gone
            held.release()
        finally:
            os.killpg(frozen.pid, signal.SIGCONT)
        wait_for(lambda: len(llm.summary_requests()) == 2)
        time.sleep(LEASE / 3 + 2)  # a heartbeat and the run's next step
    compaction = Compaction.objects.get(pk=cid)
    assert (compaction.status, compaction.attempts) == ("succeeded", 2)
    assert len(events(thread, "thread.compacted")) == 1
    assert len(summaries(thread)) == 1
    assert len(history(thread)) == 6
    originals = api.get(f"/api/v1/threads/{thread.id}/compactions/{cid}/originals").json()
    assert [m["id"] for m in originals["results"]] == [f"m{i}" for i in range(15)]


def hung_s3(proxy) -> dict[str, str]:
    """The worker's S3 through the stalling proxy, with a read timeout longer than the test
    (the default fails a hung call within ~5 s, before the lease could matter)."""
    return {
        "AWS_S3_ENDPOINT_URL": proxy.url,
        "AWS_S3_READ_TIMEOUT": "120",
        "AWS_S3_MAX_ATTEMPTS": "1",
    }


def flushed_events(thread) -> int:
    return Event.objects.filter(thread_id=thread.pk, kind="thread.flushed").count()


def test_a_killed_flush_blocks_explicit_flushes_only_for_the_lease(api, project, s3, short_leases):
    # given: the sweep's flush on a worker, hung in the S3 write behind a stalled proxy
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(30))
    proxy = TcpProxy(s3.port)
    try:
        env = worker_env(s3=s3) | short_leases | hung_s3(proxy)
        proxy.stall()
        with celery_worker(extra_env=env) as worker:
            cutoff = (timezone.now() + timedelta(hours=1)).isoformat()
            flush_idle_threads.delay(cutoff=cutoff)
            wait_for(lambda: (Thread.objects.get(pk=thread.pk).cold_key or "").startswith("lease:"))
            # while it lives its heartbeat keeps the lease: past LEASE, still refused
            time.sleep(LEASE + 1)
            busy = api.post(f"/api/v1/threads/{thread.id}/flush")
            assert busy.status_code == 409, busy.content
            assert busy.json()["error"]["details"]["reason"] == "flushing"
            # when: the worker is SIGKILLed mid-flush
            kill_worker(worker)
        killed_at = time.monotonic()
    finally:
        proxy.shutdown()

    # then: an explicit flush goes through once the lease has expired
    wait_for(
        lambda: api.post(f"/api/v1/threads/{thread.id}/flush").status_code == 200,
        timeout=LEASE + SLACK,
        interval=0.5,
    )
    assert time.monotonic() - killed_at <= LEASE + SLACK
    assert Thread.objects.get(pk=thread.pk).tier == "cold"
    assert flushed_events(thread) == 1
    # and nothing was lost: every message comes back once, in order
    page = api.get(f"/api/v1/threads/{thread.id}/messages?limit=100").json()
    assert [m["id"] for m in page["results"]] == [f"m{i}" for i in range(30)]


def test_a_slow_flush_keeps_its_lease_and_finishes_once(api, project, s3, short_leases):
    # given: the sweep's flush hung in the S3 write for twice the lease
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(10))
    proxy = TcpProxy(s3.port)
    try:
        env = worker_env(s3=s3) | short_leases | hung_s3(proxy)
        proxy.stall()
        with celery_worker(extra_env=env):
            cutoff = (timezone.now() + timedelta(hours=1)).isoformat()
            flush_idle_threads.delay(cutoff=cutoff)
            wait_for(lambda: (Thread.objects.get(pk=thread.pk).cold_key or "").startswith("lease:"))
            deadline = time.monotonic() + 2 * LEASE
            while time.monotonic() < deadline:  # every explicit flush meanwhile is refused
                assert api.post(f"/api/v1/threads/{thread.id}/flush").status_code == 409
                time.sleep(1)
            # when: S3 answers again
            proxy.resume(release=True)
            wait_for(lambda: Thread.objects.get(pk=thread.pk).tier == "cold")
    finally:
        proxy.shutdown()
    # then: flushed once, by the sweep
    assert flushed_events(thread) == 1
    page = api.get(f"/api/v1/threads/{thread.id}/messages?limit=100").json()
    assert [m["id"] for m in page["results"]] == [f"m{i}" for i in range(10)]
