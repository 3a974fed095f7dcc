"""Spawns and single handoffs racing on one idle session, through the HTTP API, with real
threads against PostgreSQL: no deadlock, every request a 201 or a clean 409, one handoff.

The deadlock this guards against: a spawn held the thread row FOR UPDATE and waited for the
session row, which a handoff's commit held while its deferred foreign keys waited, at
COMMIT, for a key-share lock on that thread row. threads.locks takes FOR NO KEY UPDATE,
which key-share locks do not conflict with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from django.db import connection
from rest_framework.test import APIClient

from handoffs.models import Handoff, HandoffOutcome
from sessions_app import transitions
from sessions_app.models import Session, SessionStatus, SubSession, SubSessionKind
from tests.sessions_app.fixtures import USER, agent, url

ROUNDS = 30
SPAWNS = HANDOFFS = 4


@dataclass(frozen=True)
class Outcome:
    kind: str  # "spawn" or "handoff"
    status: int
    code: str | None  # the error body's code; the exception's text if the API did not answer
    body: dict | None


def post_at_once(api, requests: list[tuple[str, str, dict]]) -> list[Outcome]:
    """POST every (kind, path, body) at once, one thread and client each. An exception the
    API did not turn into a response (a deadlock would be one) counts as a 500."""
    barrier = threading.Barrier(len(requests))
    outcomes: list[Outcome] = []

    def contender(kind: str, path: str, body: dict) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api.secret}")
        try:
            barrier.wait(10)
            response = client.post(path, body, format="json")
            json = response["Content-Type"].startswith("application/json")
            data = response.json() if json else None
            code = (
                (data or {}).get("error", {}).get("code") if response.status_code >= 400 else None
            )
            outcomes.append(Outcome(kind, response.status_code, code, data))
        except Exception as exc:
            outcomes.append(Outcome(kind, 500, f"{type(exc).__name__}: {exc}", None))
        finally:
            connection.close()

    threads = [threading.Thread(target=contender, args=request) for request in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == len(requests), "a contender did not finish"
    return outcomes


def deadlocks_so_far() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_spawns_and_handoffs_on_one_idle_session_never_deadlock(api, thread):
    deadlocks_before = deadlocks_so_far()
    failures: list[str] = []
    spawns_refused = rounds_failed = 0
    for round_ in range(ROUNDS):
        # given a fresh idle session
        source = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
        requests = [
            ("spawn", url(source, "spawn"), {"actor": agent(f"s{n}")}) for n in range(SPAWNS)
        ]
        requests += [
            (
                "handoff",
                "/api/v1/handoffs/",
                {
                    "mode": "single",
                    "source_session": source.pk,
                    "expected_owner_version": 0,
                    "recipients": [agent(f"h{n}")],
                },
            )
            for n in range(HANDOFFS)
        ]

        # when 4 spawns and 4 handoffs hit it at once
        outcomes = post_at_once(api, requests)

        # then nothing failed: every answer a 201 or a 409 with an error body
        broken = [
            o for o in outcomes if o.status not in (201, 409) or (o.status == 409 and not o.code)
        ]
        if broken:
            failures += [
                f"round {round_}: {o.kind} {o.status} {str(o.code).splitlines()[0]}" for o in broken
            ]
            rounds_failed += 1
            continue
        handoffs = [o for o in outcomes if o.kind == "handoff"]
        spawns = [o for o in outcomes if o.kind == "spawn"]
        # One handoff wins the source; the others find it locked or at a newer version.
        assert sorted(o.status for o in handoffs) == [201] + [409] * (HANDOFFS - 1)
        assert {o.code for o in handoffs if o.status == 409} <= {
            "session_not_idle",
            "version_conflict",
        }
        # A spawn succeeds before the handoff locks the source or after it commits; one that
        # lands while the source is locked is refused, and never half-made.
        assert {o.code for o in spawns if o.status == 409} <= {"illegal_transition"}
        spawned = [o for o in spawns if o.status == 201]
        spawns_refused += len(spawns) - len(spawned)

        # Exactly one handoff row, committed: a losing handoff writes none.
        rows = list(Handoff.objects.filter(source_session=source))
        assert [row.outcome for row in rows] == [HandoffOutcome.COMMITTED]
        source.refresh_from_db()
        assert (source.status, source.owner_version) == (SessionStatus.IDLE, 1)
        assert source.current_actor == rows[0].recipient
        edges = SubSession.objects.filter(parent=source)
        assert edges.filter(kind=SubSessionKind.USER_HANDOFF).count() == 1
        assert sorted(
            edges.filter(kind=SubSessionKind.AGENT_SPAWN).values_list("child", flat=True)
        ) == sorted(o.body["session"]["id"] for o in spawned)
        assert not Session.objects.filter(status=SessionStatus.LOCKED).exists()

    assert not failures, (
        f"{rounds_failed} of {ROUNDS} rounds failed, {len(failures)} requests:\n"
        + "\n".join(failures[:20])
    )
    assert deadlocks_so_far() == deadlocks_before, "PostgreSQL detected a deadlock"
    print(
        f"\n{ROUNDS} rounds: {spawns_refused} of {ROUNDS * SPAWNS} spawns found the source locked"
    )
