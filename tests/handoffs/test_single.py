"""Single handoffs: commit, stale versions, non-idle sources, bad input, GET, tenants."""

from __future__ import annotations

import pytest

from handoffs.models import Handoff
from sessions_app import spawn, summaries, transitions
from sessions_app.models import Session, SubSession
from tests.conftest import assert_error
from tests.sessions_app.fixtures import AGENT, USER, agent
from threads import services as thread_services
from threads.models import Event


def handoff(api, source, recipients=None, *, mode="single", version=None, **extra):
    return api.post(
        "/api/v1/handoffs/",
        {
            "mode": mode,
            "source_session": source.pk,
            "expected_owner_version": source.owner_version if version is None else version,
            "recipients": [AGENT] if recipients is None else recipients,
            **extra,
        },
    )


def test_a_single_handoff_moves_ownership_and_bumps_the_version(api, thread, session):
    response = handoff(api, session)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("hof_")
    assert body["mode"] == "single"
    assert body["status"] == "committed"
    assert body["new_owner_version"] == 1
    assert len(body["recipient_sessions"]) == 1
    recipient = body["recipient_sessions"][0]
    assert recipient["current_actor"] == AGENT
    assert recipient["status"] == "idle"
    assert recipient["thread"] == thread.id
    assert recipient["project"] == thread.project_id
    assert [h["recipient"] for h in body["handoffs"]] == [AGENT]
    assert body["handoffs"][0]["id"] == body["id"]
    assert body["handoffs"][0]["recipient_session"] == recipient["id"]

    source = Session.objects.get(pk=session.pk)
    assert source.status == "idle"
    assert source.current_actor == AGENT
    assert source.previous_actors == [USER]
    assert source.owner_version == 1
    assert source.lock_token == "" and source.lock_expires_at is None
    edge = SubSession.objects.get(child_id=recipient["id"])
    assert (edge.parent_id, edge.kind, edge.broadcast_id) == (session.pk, "user_handoff", None)
    kinds = Event.objects.filter(session_id=session.pk).values_list("kind", flat=True)
    assert list(kinds) == ["session.created", "handoff.locked", "handoff.committed"]


def test_previous_actors_accumulate_over_handoffs(api, session):
    handoff(api, session, [AGENT])
    session.refresh_from_db()
    handoff(api, session, [agent(2)])

    session.refresh_from_db()
    assert session.previous_actors == [USER, AGENT]
    assert session.current_actor == agent(2)
    assert session.owner_version == 2


def test_a_stale_version_is_409_version_conflict(api, session):
    handoff(api, session)

    details = assert_error(handoff(api, session, [agent(2)], version=0), 409, "version_conflict")

    assert details == {"expected": 0, "actual": 1}
    assert Handoff.objects.count() == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("active", "active_run"),
        ("locked", "active_run"),
        ("failed", "active_run"),
        ("archived", "active_run"),
        ("awaiting_hitl", "pending_hitl"),
        ("awaiting_merge", "pending_subsession"),
    ],
)
def test_a_source_that_is_not_idle_is_refused_with_its_reason(api, session, status, reason):
    Session.objects.filter(pk=session.pk).update(status=status)

    details = assert_error(handoff(api, session), 409, "session_not_idle")

    assert details == {"status": status, "reason": reason}
    assert not Handoff.objects.exists()
    assert Session.objects.get(pk=session.pk).status == status


def test_the_status_check_comes_before_the_version_check(api, session):
    transitions.session_turn_start(session=session)

    assert_error(handoff(api, session, version=7), 409, "session_not_idle")


def test_depth_is_checked_for_single_handoffs(api, project, session):
    project.max_delegation_depth = 1
    project.save(update_fields=["max_delegation_depth"])
    child, _ = spawn.session_spawn(session=session, actor=AGENT)
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="done"),
    )

    details = assert_error(handoff(api, child, [USER]), 409, "capacity_exceeded")

    assert details == {"dimension": "depth", "current": 2, "limit": 1, "session": child.pk}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"recipients": []}, "validation_error"),
        ({"recipients": [AGENT, agent(2)]}, "validation_error"),
        ({"recipients": [{"kind": "bot", "id": "x"}]}, "validation_error"),
        ({"mode": "multicast"}, "validation_error"),
        ({"expected_owner_version": -1}, "validation_error"),
        ({"expected_owner_version": "0"}, "validation_error"),
        ({"expected_owner_version": None}, "validation_error"),
        ({"recipients": AGENT}, "validation_error"),
        ({"workspace_backend": "floppy"}, "validation_error"),
        ({"force": True}, "validation_error"),
    ],
)
def test_bad_input_is_400_and_writes_nothing(api, session, body, code):
    payload = {
        "mode": "single",
        "source_session": session.pk,
        "expected_owner_version": 0,
        "recipients": [AGENT],
        **body,
    }

    assert_error(api.post("/api/v1/handoffs/", payload), 400, code)

    assert not Handoff.objects.exists()
    assert Session.objects.get(pk=session.pk).status == "idle"


def test_an_empty_recipient_list_names_the_field(api, session):
    details = assert_error(handoff(api, session, []), 400, "validation_error")
    assert "recipients" in details["fields"]


def test_the_handoff_can_be_read_back(api, session):
    created = handoff(api, session).json()

    response = api.get(f"/api/v1/handoffs/{created['id']}/")

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("id", "mode", "status", "new_owner_version")} == {
        "id": created["id"],
        "mode": "single",
        "status": "committed",
        "new_owner_version": 1,
    }
    assert body["source_session"] == session.pk
    assert body["recipient_sessions"] == created["recipient_sessions"]


def test_a_handoff_on_an_archived_thread_is_409(api, thread, session):
    thread_services.thread_archive(thread=thread)

    assert_error(handoff(api, session), 409, "thread_archived")
    assert not Handoff.objects.exists()


def test_another_tenant_gets_404(api, outsider, session):
    created = handoff(api, session).json()
    session.refresh_from_db()

    assert_error(outsider.get(f"/api/v1/handoffs/{created['id']}/"), 404, "not_found")
    assert_error(handoff(outsider, session), 404, "not_found")
    assert Session.objects.get(pk=session.pk).owner_version == 1


def test_an_unknown_source_or_handoff_is_404(api):
    assert_error(api.get("/api/v1/handoffs/hof_000000000000/"), 404, "not_found")
    response = api.post(
        "/api/v1/handoffs/",
        {
            "mode": "single",
            "source_session": "ses_000000000000",
            "expected_owner_version": 0,
            "recipients": [AGENT],
        },
    )
    assert_error(response, 404, "not_found")
