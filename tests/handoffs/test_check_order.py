"""The order of a handoff's checks, all before anything is written: recipients (400, then
duplicate_recipient) → thread_archived → session_not_idle → capacity_exceeded →
version_conflict. Each test breaks two neighbouring checks at once: the earlier one answers,
and the database is exactly as the setup left it."""

from __future__ import annotations

from handoffs.models import Handoff
from sessions_app import spawn, summaries, transitions
from sessions_app.models import Session, SubSession, Workspace
from tests.conftest import assert_error
from tests.handoffs.test_broadcast import broadcast
from tests.handoffs.test_single import handoff
from tests.sessions_app.fixtures import USER, agent
from threads import services as thread_services
from threads.models import Event

NINE = [agent(n) for n in range(9)]  # one over the default width of 8


def everything() -> dict:
    """Every row a handoff could write or change."""
    return {
        "sessions": list(Session.objects.order_by("pk").values()),
        "subsessions": list(SubSession.objects.order_by("pk").values()),
        "handoffs": list(Handoff.objects.order_by("pk").values()),
        "workspaces": list(Workspace.objects.order_by("pk").values()),
        "events": list(Event.objects.order_by("pk").values_list("pk", "kind")),
    }


def test_a_duplicate_recipient_is_refused_before_the_archived_thread(api, thread, session):
    thread_services.thread_archive(thread=thread)
    before = everything()

    details = assert_error(
        broadcast(api, session, [agent(1), agent(1)]), 400, "duplicate_recipient"
    )

    assert details == {"recipient": agent(1), "index": 1}
    assert everything() == before  # not a row written, not an event recorded


def test_an_archived_thread_is_refused_before_the_session_status(api, thread, session):
    transitions.session_fail(session=session)  # (a failed session does not block archiving)
    thread_services.thread_archive(thread=thread)
    before = everything()

    assert_error(handoff(api, session), 409, "thread_archived")

    assert everything() == before  # not a row written, not an event recorded


def test_a_session_that_is_not_idle_is_refused_before_the_capacity(api, session):
    transitions.session_turn_start(session=session)
    before = everything()

    details = assert_error(broadcast(api, session, NINE), 409, "session_not_idle")

    assert details == {"status": "active", "reason": "active_run"}
    assert everything() == before  # not a row written, not an event recorded


def test_the_width_is_refused_before_the_version(api, session):
    before = everything()

    details = assert_error(broadcast(api, session, NINE, version=3), 409, "capacity_exceeded")

    assert details == {
        "dimension": "width",
        "current": 0,
        "requested": 9,
        "limit": 8,
        "session": session.pk,
    }
    assert everything() == before  # not a row written, not an event recorded


def test_the_depth_is_refused_before_the_version(api, project, session):
    project.max_delegation_depth = 1
    project.save(update_fields=["max_delegation_depth"])
    child, _ = spawn.session_spawn(session=session, actor=agent(1))
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="done"),
    )
    before = everything()

    details = assert_error(handoff(api, child, [USER], version=3), 409, "capacity_exceeded")

    assert details == {"dimension": "depth", "current": 2, "limit": 1, "session": child.pk}
    assert everything() == before  # not a row written, not an event recorded


def test_a_stale_version_is_the_last_check_and_writes_nothing_either(api, session):
    before = everything()

    details = assert_error(broadcast(api, session, NINE[:8], version=3), 409, "version_conflict")

    assert details == {"expected": 3, "actual": 0}
    assert everything() == before  # not a row written, not an event recorded
