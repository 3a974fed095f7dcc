"""Summaries (once per session, idempotent) and interventions (the chain of previous
summaries: cycles and depth)."""

from __future__ import annotations

import pytest

from handoffs import services as handoff_services
from handoffs.models import Handoff
from sessions_app import summaries, transitions
from sessions_app.models import Session, SubSession, Summary
from tests.conftest import assert_error
from tests.sessions_app.fixtures import AGENT, USER, agent, url
from threads import services as thread_services
from threads import tenancy

SUMMARY = {
    "outcome": {"status": "succeeded", "verdict": "shipped"},
    "agent_summary": "Refactored the parser and added tests.",
    "key_decisions": ["keep the old API"],
    "deliverables": ["parser.py", {"kind": "pr", "url": "https://example.com/1"}],
}


def summarize(api, session, body=None):
    return api.post(url(session, "summary"), SUMMARY if body is None else body)


def test_a_summary_is_stored_and_the_session_goes_idle(api, thread, session):
    transitions.session_turn_start(session=session)

    response = summarize(api, session)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["session"]["status"] == "idle"
    summary = body["summary"]
    assert summary["id"].startswith("sum_")
    assert summary["outcome"] == SUMMARY["outcome"]
    assert summary["agent_summary"] == SUMMARY["agent_summary"]
    assert summary["key_decisions"] == SUMMARY["key_decisions"]
    assert summary["deliverables"] == SUMMARY["deliverables"]
    assert summary["materialized_by"] == USER
    thread.refresh_from_db()
    assert thread.lifecycle == "idle"


@pytest.mark.parametrize("status", ["locked", "awaiting_merge"])
def test_a_summary_also_settles_locked_and_awaiting_merge(api, session, status):
    Session.objects.filter(pk=session.pk).update(status=status)

    response = summarize(api, session)

    assert response.status_code == 201, response.content
    assert response.json()["session"]["status"] == "idle"


def test_a_summary_of_a_session_locked_by_a_dead_handoff_closes_that_handoff(api, session):
    # given: a handoff's lock phase, then nothing (its process died)
    handoff_services._lock(
        tenant_id=session.tenant_id,
        source_session_id=session.pk,
        mode="single",
        expected=0,
        recipients=[AGENT],
        workspace_backend="none",
    )

    response = summarize(api, session)

    assert response.status_code == 201, response.content
    source = Session.objects.get(pk=session.pk)
    assert (source.status, source.owner_version, source.lock_token) == ("idle", 0, "")
    assert Handoff.objects.get().outcome == "rolled_back"  # not pending forever


def test_the_same_summary_again_is_a_no_op(api, session):
    transitions.session_turn_start(session=session)
    first = summarize(api, session).json()

    again = summarize(api, session)

    assert again.status_code == 200
    assert again.json()["summary"] == first["summary"]
    assert Summary.objects.count() == 1


def test_a_different_summary_is_409_already_summarized(api, session):
    transitions.session_turn_start(session=session)
    first = summarize(api, session).json()

    details = assert_error(
        summarize(api, session, {**SUMMARY, "agent_summary": "Something else."}),
        409,
        "already_summarized",
    )

    assert details == {"summary": first["summary"]["id"]}


def test_an_idle_session_without_a_summary_cannot_be_summarized(api, session):
    details = assert_error(summarize(api, session), 409, "illegal_transition")
    assert details == {"from": "idle", "action": "summarize"}


def test_an_agent_summary_over_4000_characters_is_400(api, session):
    transitions.session_turn_start(session=session)

    response = summarize(api, session, {**SUMMARY, "agent_summary": "x" * 4001})

    details = assert_error(response, 400, "validation_error")
    assert "agent_summary" in details["fields"]
    assert not Summary.objects.exists()


def test_exactly_4000_characters_is_fine(api, session):
    transitions.session_turn_start(session=session)
    assert summarize(api, session, {**SUMMARY, "agent_summary": "x" * 4000}).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"agent_summary": "x"},
        {"outcome": {"status": "great"}, "agent_summary": "x"},
        {"outcome": {"status": "failed", "mood": "sad"}, "agent_summary": "x"},
        {"outcome": {"status": "failed"}, "agent_summary": ""},
        {"outcome": {"status": "failed"}, "agent_summary": "x", "key_decisions": "one"},
        {"outcome": {"status": "failed"}, "agent_summary": "x", "session": "ses_x"},
    ],
)
def test_bad_summaries_are_400(api, session, body):
    transitions.session_turn_start(session=session)
    assert_error(summarize(api, session, body), 400, "validation_error")


def test_summary_on_an_archived_thread_is_409_and_for_an_outsider_404(
    api, outsider, thread, session
):
    assert_error(summarize(outsider, session), 404, "not_found")
    thread_services.thread_archive(thread=thread)
    assert_error(summarize(api, session), 409, "thread_archived")


# --- Interventions ---------------------------------------------------------------------


def intervene(api, session, actor=AGENT, prev_summary=None):
    body = {"actor": actor}
    if prev_summary is not None:
        body["prev_summary"] = prev_summary
    return api.post(url(session, "interventions"), body)


def _summarized(session) -> Summary:
    transitions.session_turn_start(session=session)
    summary, _ = summaries.session_summarize(
        session=session,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary=f"{session.pk}"),
    )
    return summary


def test_an_intervention_makes_a_child_on_an_intervention_edge(api, make_session, session):
    other = make_session(AGENT)
    previous = _summarized(other)

    response = intervene(api, session, USER, previous.pk)

    assert response.status_code == 201, response.content
    child, edge = response.json()["session"], response.json()["subsession"]
    assert (child["status"], child["current_actor"], child["depth"]) == ("idle", USER, 2)
    assert (edge["kind"], edge["prev_summary"], edge["parent"]) == (
        "intervention",
        previous.pk,
        session.pk,
    )
    # The child's own summary continues the chain.
    child_session = Session.objects.get(pk=child["id"])
    assert _summarized(child_session).prev_summary_id == previous.pk


def test_intervening_with_the_sessions_own_summary_is_a_cycle(api, session):
    own = _summarized(session)

    details = assert_error(intervene(api, session, prev_summary=own.pk), 409, "artifact_ref_cycle")

    assert details["summary"] == own.pk
    assert not SubSession.objects.exists()


def test_a_chain_leading_back_to_the_session_is_a_cycle(api, make_session):
    target, elsewhere = make_session(), make_session(AGENT)
    target_summary = _summarized(target)
    # An intervention elsewhere continues from the target's summary …
    child, _ = summaries.session_intervene(
        session=elsewhere, actor=agent(2), prev_summary_id=target_summary.pk
    )
    derived = _summarized(child)

    # … so intervening on the target from what it produced leads back to the target.
    assert_error(intervene(api, target, prev_summary=derived.pk), 409, "artifact_ref_cycle")


def test_a_chain_longer_than_the_limit_is_refused(api, project, make_session):
    project.max_intervention_depth = 2
    project.save(update_fields=["max_intervention_depth"])
    root = make_session()
    summary = _summarized(make_session(AGENT))
    for n in range(2):  # a chain of three summaries: each intervention's summary links back
        child, _ = summaries.session_intervene(
            session=root, actor=agent(n), prev_summary_id=summary.pk
        )
        summary = _summarized(child)

    details = assert_error(
        intervene(api, root, prev_summary=summary.pk), 409, "intervention_depth_exceeded"
    )

    assert details == {"depth": 3, "limit": 2}


def test_a_chain_at_the_limit_is_allowed(api, project, make_session):
    project.max_intervention_depth = 2
    project.save(update_fields=["max_intervention_depth"])
    root = make_session()
    first = _summarized(make_session(AGENT))
    child, _ = summaries.session_intervene(session=root, actor=AGENT, prev_summary_id=first.pk)
    second = _summarized(child)

    assert intervene(api, root, prev_summary=second.pk).status_code == 201


def test_an_intervention_needs_no_previous_summary(api, session):
    assert intervene(api, session).status_code == 201


def test_intervention_errors(api, outsider, thread, session):
    assert_error(intervene(api, session, prev_summary="sum_000000000000"), 404, "not_found")
    assert_error(api.post(url(session, "interventions"), {"actor": "x"}), 400, "validation_error")
    assert_error(intervene(outsider, session), 404, "not_found")
    transitions.session_archive(session=session)
    assert_error(intervene(api, session), 409, "illegal_transition")
    thread_services.thread_archive(thread=thread)
    assert_error(intervene(api, session), 409, "thread_archived")


def test_another_tenants_summary_cannot_be_referenced(api, outsider, session):
    theirs_thread = thread_services.thread_create(
        tenant=outsider.tenant,
        project_id=tenancy.project_create(tenant=outsider.tenant, name="p").pk,
    )
    theirs = transitions.session_create(
        tenant=outsider.tenant, thread_id=theirs_thread.pk, actor=USER
    )
    summary = _summarized(theirs)

    assert_error(intervene(api, session, prev_summary=summary.pk), 404, "not_found")
