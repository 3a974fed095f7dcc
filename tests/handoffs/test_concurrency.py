"""Handoffs racing on one source, through the HTTP API, with real threads against
PostgreSQL: exactly one wins, every other gets a 409, nothing is half-applied."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from handoffs.models import Handoff
from sessions_app import transitions
from sessions_app.models import Session, SubSession
from tests.sessions_app.fixtures import USER, agent


def race(api, bodies: list[dict]) -> list[tuple[int, str | None]]:
    """POST every body to /handoffs/ at once, one thread and client each;
    returns (status, error code) per request."""
    barrier = threading.Barrier(len(bodies))
    results: list[tuple[int, str | None]] = []

    def contender(body):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api.secret}")
        try:
            barrier.wait(10)
            response = client.post("/api/v1/handoffs/", body, format="json")
            code = (
                response.json().get("error", {}).get("code")
                if response.status_code >= 400
                else None
            )
            results.append((response.status_code, code))
        finally:
            connection.close()

    threads = [threading.Thread(target=contender, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == len(bodies), "a contender did not finish"
    return results


@pytest.mark.django_db(transaction=True)
def test_sixteen_concurrent_single_handoffs_commit_exactly_once(api, thread):
    source = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
    bodies = [
        {
            "mode": "single",
            "source_session": source.pk,
            "expected_owner_version": 0,
            "recipients": [agent(n)],
        }
        for n in range(16)
    ]

    results = race(api, bodies)

    assert sorted(status for status, _ in results) == [201] + [409] * 15
    assert {code for status, code in results if status == 409} <= {
        "session_not_idle",
        "version_conflict",
    }
    source.refresh_from_db()
    assert (source.status, source.owner_version) == ("idle", 1)
    assert source.previous_actors == [USER]
    assert Handoff.objects.filter(outcome="committed").count() == 1
    assert not Handoff.objects.exclude(outcome="committed").exists()
    assert Session.objects.count() == 2
    assert SubSession.objects.count() == 1
    winner = Handoff.objects.get()
    assert source.current_actor == winner.recipient


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_broadcasts_on_one_source_one_wins(api, thread):
    source = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
    bodies = [
        {
            "mode": "broadcast",
            "source_session": source.pk,
            "expected_owner_version": 0,
            "recipients": [agent(f"{side}{n}") for n in range(3)],
        }
        for side in ("a", "b")
    ]

    results = race(api, bodies)

    assert sorted(status for status, _ in results) == [201, 409]
    source.refresh_from_db()
    assert (source.status, source.owner_version) == ("awaiting_merge", 1)
    assert SubSession.objects.filter(parent=source).count() == 3
    assert Handoff.objects.filter(outcome="committed").count() == 3
    assert Handoff.objects.count() == 3
