"""Two gunicorn processes and three Celery workers (two pool processes each) on one database
(issue 10, scale-out): while clients append through both servers, every sweep of the beat
schedule (tasks/schedules.py) is dispatched six times at once — as overlapping ticks or
several beats would — and each piece of due work is still claimed and done exactly once."""

from __future__ import annotations

import os
import threading
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app import spawn, summaries, transitions
from sessions_app.models import Session, SubSession
from tasks.tasks import (
    compaction_backstop_task,
    flush_idle_threads,
    recover_session_locks_task,
    subsessions_retention,
    warming_sweep_task,
)
from tests.scale.services import Gunicorn, Http
from tests.sessions_app.fixtures import AGENT, USER
from tests.sessions_app.fixtures import workspace_root as workspace_root_fixture
from tests.sessions_app.test_recovery import expire, lock_for_handoff
from tests.threads.conversation.helpers import append, say, worker_env
from tests.threads.conversation.test_warming import _wait_until_the_broker_is_idle
from tests.workers import celery_worker, wait_for
from tests.workers import test_database_url as worker_database_url
from threads import services
from threads.models import Compaction, Event, Message, Thread

pytestmark = pytest.mark.django_db(transaction=True)

SWEEP_COPIES = 6


def kinds(kind: str) -> list[str]:
    """The ids each event of `kind` names (a thread, or a session for session events)."""
    column = "session_id" if kind.startswith(("session.", "subsession.")) else "thread_id"
    return sorted(Event.objects.filter(kind=kind).values_list(column, flat=True))


workspace_root = workspace_root_fixture


def test_every_sweep_claims_each_piece_of_work_once_across_three_workers(
    api, project, llm, s3, workspace_root
):
    new_thread = lambda: services.thread_create(tenant=api.tenant, project_id=project.id)  # noqa: E731
    past = timezone.now() - timedelta(days=1)
    # idle threads for the flush sweep
    idle = [new_thread() for _ in range(8)]
    for thread in idle:
        append(thread, say(5))
    Thread.objects.filter(pk__in=[t.pk for t in idle]).update(last_activity_at=past)
    # due warming timers
    warm = [new_thread() for _ in range(8)]
    for thread in warm:
        append(thread, say(2))
    Thread.objects.filter(pk__in=[t.pk for t in warm]).update(
        warming_enabled=True, next_warm_at=timezone.now() - timedelta(seconds=1)
    )
    # compactions whose task was lost (queued long ago) for the backstop
    lost = []
    for _ in range(4):
        thread = new_thread()
        append(thread, say(12))
        lost.append(Compaction.objects.create(thread=thread, trigger="manual", keep_last=4))
    Compaction.objects.filter(pk__in=[c.pk for c in lost]).update(created_at=past)
    # handoff locks whose process died, for lock recovery
    locked = []
    for _ in range(3):
        session = transitions.session_create(
            tenant=api.tenant, thread_id=new_thread().pk, actor=USER
        )
        lock_for_handoff(session)
        expire(session)
        locked.append(session)
    # finished sub-sessions past their project's TTL, for retention
    project.idle_subsession_ttl_seconds = 60
    project.save(update_fields=["idle_subsession_ttl_seconds"])
    edges = []
    for n in range(3):
        parent = transitions.session_create(
            tenant=api.tenant, thread_id=new_thread().pk, actor=USER
        )
        child, edge = spawn.session_spawn(session=parent, actor={**AGENT, "id": f"a{n}"})
        summaries.session_summarize(
            session=child,
            summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="done"),
        )
        edges.append(edge)
    SubSession.objects.filter(pk__in=[e.pk for e in edges]).update(updated_at=past)
    busy = new_thread()

    env = worker_env(llm=llm, s3=s3) | {"WORKSPACE_ROOT": str(workspace_root)}
    web_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": worker_database_url(),
        **env,
    }
    with ExitStack() as stack:
        servers = []
        for _ in range(2):
            server = Gunicorn(web_env, workers=2)
            server.start()
            stack.callback(server.stop)
            servers.append(Http(server.url, api.secret))
        for _ in range(3):
            stack.enter_context(celery_worker(concurrency=2, extra_env=env))

        # clients append through both servers while the sweeps run
        statuses: list[int] = []

        def client(n: int) -> None:
            for i in range(15):
                status, _ = servers[(n + i) % 2].call(
                    "POST",
                    f"/api/v1/threads/{busy.id}/messages",
                    {"messages": [{"id": f"c{n}-{i}", "role": "user", "content": "x"}]},
                )
                statuses.append(status)

        clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
        for c in clients:
            c.start()
        # when: every sweep six times at once, across the three workers
        for _ in range(SWEEP_COPIES):
            flush_idle_threads.delay()
            warming_sweep_task.delay()
            compaction_backstop_task.delay()
            recover_session_locks_task.delay()
            subsessions_retention.delay()
        for c in clients:
            c.join()

        def all_done() -> bool:
            return (
                Thread.objects.filter(pk__in=[t.pk for t in idle], tier="cold").count() == 8
                and Event.objects.filter(kind="warm.completed").count() >= 8
                and Compaction.objects.filter(status="succeeded").count() == 4
                and Session.objects.filter(pk__in=[s.pk for s in locked], status="idle").count()
                == 3
                and SubSession.objects.filter(status="archived").count() == 3
            )

        wait_for(all_done, timeout=120, interval=0.5)
        _wait_until_the_broker_is_idle()  # duplicates, if any, have finished too

    # then: each piece of due work done exactly once
    assert kinds("thread.flushed") == sorted(t.pk for t in idle)
    assert kinds("warm.completed") == sorted(t.pk for t in warm)
    assert len(llm.warm_requests()) == len(warm)
    assert kinds("thread.compacted") == sorted(c.thread_id for c in lost)
    assert sorted(Compaction.objects.values_list("attempts", flat=True)) == [1, 1, 1, 1]
    assert len(llm.summary_requests()) == len(lost)
    assert kinds("session.lock_recovered") == sorted(s.pk for s in locked)
    assert kinds("subsession.archived") == sorted(e.child_id for e in edges)
    # and the appends through both servers: all acknowledged, stored once, seqs contiguous
    assert set(statuses) <= {200, 201} and len(statuses) == 45
    seqs = list(
        Message.objects.filter(thread_id=busy.pk).order_by("seq").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, 46))
