"""A running compaction's lease (threads/conversation/compaction.py, common/leases.py): a
heartbeat renews it while the run lives; past it the run is taken over — by the backstop or
by a new request — and the old run, should it wake up, commits nothing. The SIGKILL and
SIGSTOP versions with real workers are in tests/scale/test_worker_recovery.py."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from tests.conftest import assert_error
from tests.threads.conversation.helpers import append, events, history, in_other_connection, say
from threads import services
from threads.conversation.backstop import compaction_backstop
from threads.conversation.compaction import compaction_request
from threads.models import Compaction
from threads.storage import cold

pytestmark = pytest.mark.django_db


def url(thread) -> str:
    return f"/api/v1/threads/{thread.id}/compact"


@pytest.fixture
def long_thread(thread):
    append(thread, say(15))
    return thread


def running(compaction, *, lease_in: float) -> None:
    Compaction.objects.filter(pk=compaction.pk).update(
        status="running",
        attempts=1,
        started_at=timezone.now() - timedelta(minutes=1),
        lease_expires_at=timezone.now() + timedelta(seconds=lease_in),
    )


def test_a_new_request_fails_a_running_compaction_whose_lease_expired(api, long_thread):
    dead = compaction_request(thread=long_thread)
    running(dead, lease_in=-1)
    # when
    response = api.post(url(long_thread), {"keep_last": 5})
    # then: the dead run is failed once and the request queued its own
    assert response.status_code == 202, response.content
    assert response.json()["id"] != dead.pk
    dead.refresh_from_db()
    assert (dead.status, dead.error.split(":")[0]) == ("failed", "worker_lost")
    assert dead.lease_expires_at is None
    assert [e["code"] for e in events(long_thread, "compaction.failed")] == ["worker_lost"]


def test_a_running_compaction_whose_lease_is_live_still_answers_409(api, long_thread):
    alive = compaction_request(thread=long_thread)
    running(alive, lease_in=30)
    details = assert_error(api.post(url(long_thread)), 409, "compaction_in_progress")
    assert details["compaction"] == alive.pk
    alive.refresh_from_db()
    assert alive.status == "running"


def test_the_backstop_requeues_an_expired_run_and_leaves_a_live_one(api, project, llm, s3):
    expired, alive = (
        services.thread_create(tenant=api.tenant, project_id=project.id) for _ in "ab"
    )
    for thread in (expired, alive):  # enough older messages that a summary is smaller
        append(thread, say(40))
    dead, live = compaction_request(thread=expired), compaction_request(thread=alive)
    running(dead, lease_in=-1)
    running(live, lease_in=30)
    # eager: the requeued compaction runs at once
    assert compaction_backstop()["stale"] == [dead.pk]
    dead.refresh_from_db()
    live.refresh_from_db()
    assert (dead.status, dead.attempts) == ("succeeded", 2)
    assert live.status == "running"


@pytest.mark.django_db(transaction=True)
def test_a_run_taken_over_while_the_provider_answered_commits_nothing(api, project, llm, s3):
    # given: while the provider answers, the lease is taken over (as the backstop does after
    # the lease expired, and another worker claims it: attempts moves on)
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(15))
    before = history(thread)

    def take_over(body):
        Compaction.objects.filter(thread=thread).update(attempts=F("attempts") + 1)

    llm.on_request = in_other_connection(take_over)
    # when: the request's task runs (eagerly, after the commit)
    compaction = compaction_request(thread=thread)
    assert len(llm.summary_requests()) == 1
    # then: no rewrite, no archive, the row is the other run's
    assert history(thread) == before
    assert events(thread, "thread.compacted") == []
    with pytest.raises(cold.ColdObjectMissing):
        cold.get(f"threads/compactions/{thread.pk}/{compaction.pk}.json.gz")
    assert Compaction.objects.get(pk=compaction.pk).status == "running"


@pytest.mark.django_db(transaction=True)
def test_a_run_slower_than_its_lease_keeps_it_by_heartbeat(api, project, llm, s3, settings):
    # given: a 3 s lease and a provider that takes 4 s
    settings.COMPACTION_LEASE_SECONDS = 3
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    append(thread, say(15))
    seen = {}

    def slow(body):
        first = Compaction.objects.get(thread=thread).lease_expires_at
        time.sleep(4)
        seen["renewed"] = Compaction.objects.get(thread=thread).lease_expires_at > first
        seen["taken"] = compaction_backstop()["stale"]

    llm.on_request = in_other_connection(slow)
    # when: the request's task runs (eagerly, after the commit)
    compaction = compaction_request(thread=thread)
    # then: renewed meanwhile, never taken over, and it finished
    assert seen == {"renewed": True, "taken": []}
    compaction.refresh_from_db()
    assert (compaction.status, compaction.attempts) == ("succeeded", 1)
    assert compaction.lease_expires_at is None
