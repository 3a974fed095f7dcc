"""The admin: lists with filters, read-only pages with links, actions through transitions."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from handoffs import services as handoff_services
from sessions_app import spawn, summaries, transitions
from sessions_app.models import Session
from tests.sessions_app.fixtures import AGENT, USER, agent
from threads.models import Event


def changelist(name: str) -> str:
    return reverse(f"admin:{name}_changelist")


def run_action(admin_client, action: str, *sessions):
    return admin_client.post(
        changelist("sessions_app_session"),
        {"action": action, "_selected_action": [s.pk for s in sessions]},
        follow=True,
    )


def test_sessions_are_filtered_by_status_and_actor_kind(admin_client, make_session):
    user_session = make_session(USER)
    agent_session = make_session(AGENT)
    transitions.session_turn_start(session=agent_session)

    by_status = admin_client.get(changelist("sessions_app_session"), {"status__exact": "active"})
    by_kind = admin_client.get(changelist("sessions_app_session"), {"actor_kind": "user"})

    assert by_status.status_code == 200
    assert [s.pk for s in by_status.context["cl"].result_list] == [agent_session.pk]
    assert [s.pk for s in by_kind.context["cl"].result_list] == [user_session.pk]


def test_a_session_page_links_to_its_relatives(admin_client, session):
    child, _ = spawn.session_spawn(session=session, actor=AGENT)

    response = admin_client.get(
        reverse("admin:sessions_app_session_change", args=[quote(session.pk)])
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert f"parent__id__exact={session.pk}" in page
    assert "handoffs out" in page
    assert f"/admin/handoffs/handoff/?source_session__id__exact={session.pk}" in page
    assert admin_client.get(changelist("sessions_app_session"), {"q": child.pk}).status_code == 200


def test_the_fail_and_archive_actions_go_through_the_services(admin_client, make_session):
    first, second = make_session(), make_session()
    transitions.session_turn_start(session=second)

    response = run_action(admin_client, "fail", first)
    assert "Failed 1 session." in response.content.decode()
    assert Session.objects.get(pk=first.pk).status == "failed"
    assert Event.objects.filter(session_id=first.pk, kind="session.failed").exists()

    response = run_action(admin_client, "archive", first, second)
    page = response.content.decode()
    assert "Archived 1 session." in page
    assert "illegal_transition: 1" in page
    assert Session.objects.get(pk=first.pk).status == "archived"
    assert Session.objects.get(pk=second.pk).status == "active"


def test_recover_lock_takes_a_lock_even_with_a_live_lease(admin_client, session, workspace_root):
    handoff_services._lock(
        tenant_id=session.tenant_id,
        source_session_id=session.pk,
        mode="single",
        expected=0,
        recipients=[AGENT],
        workspace_backend="none",
    )
    assert Session.objects.get(pk=session.pk).lock_expires_at > timezone.now() + timedelta(
        seconds=60
    )

    response = run_action(admin_client, "recover_lock", session)

    assert "Recovered the lock of 1 session." in response.content.decode()
    assert Session.objects.get(pk=session.pk).status == "idle"
    response = run_action(admin_client, "recover_lock", session)
    assert "not_locked_or_lease_live: 1" in response.content.decode()


def test_the_other_pages_are_read_only_and_load(admin_client, api, session):
    child, edge = spawn.session_spawn(session=session, actor=AGENT)
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="done"),
    )
    result = handoff_services.handoff_execute(
        tenant=api.tenant,
        mode="broadcast",
        source_session_id=session.pk,
        expected_owner_version=0,
        recipients=[agent(1), agent(2)],
    )
    summary = child.summary
    pages = {
        "sessions_app_subsession": edge.pk,
        "sessions_app_summary": summary.pk,
        "handoffs_handoff": result.id,
    }
    for name, pk in pages.items():
        assert admin_client.get(changelist(name)).status_code == 200, name
        page = admin_client.get(reverse(f"admin:{name}_change", args=[quote(pk)]))
        assert page.status_code == 200, name
        assert b'name="_save"' not in page.content, name  # view-only
    assert admin_client.get(changelist("sessions_app_workspace")).status_code == 200
    handoffs = admin_client.get(changelist("handoffs_handoff"), {"q": result.id})
    assert len(handoffs.context["cl"].result_list) == 2
