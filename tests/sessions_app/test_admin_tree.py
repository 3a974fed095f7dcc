"""The session tree page and the actions as change-page buttons: fail with a reason, the
idempotent ones saying "already …" without a second event, sub-session archive/restore."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.urls import reverse

from handoffs import services as handoff_services
from sessions_app import admin_tree, spawn, summaries, transitions
from sessions_app.models import Session, SubSession
from tests.sessions_app.fixtures import AGENT, agent
from threads.models import Event

pytestmark = pytest.mark.django_db


def tree(session) -> str:
    return reverse("admin:sessions_app_session_tree", args=[quote(session.pk)])


def press(admin_client, obj, action: str, **form):
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_act", args=[quote(obj.pk), action])
    response = admin_client.post(url, form, follow=True)
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_tree_shows_ancestors_sub_sessions_summaries_and_handoffs(
    admin_client, api, session, workspace_root
):
    child, edge = spawn.session_spawn(session=session, actor=AGENT)
    grandchild, _ = spawn.session_spawn(session=child, actor=agent("g"))
    summaries.session_summarize(
        session=grandchild,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="Found it."),
    )
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="Planned."),
    )
    sent = handoff_services.handoff_execute(
        tenant=api.tenant,
        mode="broadcast",
        source_session_id=session.pk,
        expected_owner_version=0,
        recipients=[agent(1), agent(2)],
    )

    from_child = admin_client.get(tree(child))
    from_root = admin_client.get(tree(session))

    assert from_child.status_code == 200
    shown = from_child.context["tree"]
    assert [n.session.pk for n in shown.ancestors] == [session.pk]
    assert [n.session.pk for n in shown.root.children] == [grandchild.pk]
    assert shown.root.edge.pk == edge.pk
    assert "Found it." in from_child.content.decode()
    page = from_root.content.decode()
    root = from_root.context["tree"].root
    kinds = sorted(node.edge.kind for node in root.children)
    assert kinds == ["agent_spawn", "user_handoff", "user_handoff"]
    broadcast = {node.edge.broadcast_id for node in root.children if node.edge.broadcast_id}
    assert broadcast == {sent.id}
    assert f"broadcast <code>{sent.id}</code>" in page
    assert [n.session.pk for n in root.children[0].children] == [grandchild.pk]
    assert len(from_root.context["handoffs"]) == 2 and "committed" in page
    assert "Planned." in page
    # linked from the change page
    change = admin_client.get(
        reverse("admin:sessions_app_session_change", args=[quote(session.pk)])
    )
    assert tree(session) in change.content.decode()


def test_fail_from_the_change_page_takes_a_reason_and_says_already_failed(admin_client, session):
    change = admin_client.get(
        reverse("admin:sessions_app_session_change", args=[quote(session.pk)])
    )
    page = change.content.decode()
    assert 'data-action="fail"' in page and 'name="reason"' in page

    assert "a reason of 1 to 500 characters is required" in " ".join(
        press(admin_client, session, "fail", reason="  ")
    )
    assert Session.objects.get(pk=session.pk).status == "idle"

    assert press(admin_client, session, "fail", reason="stuck on a tool") == ["Failed 1 session."]
    event = Event.objects.get(session_id=session.pk, kind="session.failed")
    assert event.payload["reason"] == "stuck on a tool"

    assert press(admin_client, session, "fail", reason="again") == [
        "1 session already failed; nothing was done."
    ]
    assert Event.objects.filter(session_id=session.pk, kind="session.failed").count() == 1


def test_archive_twice_says_already_archived(admin_client, session):
    transitions.session_fail(session=session, reason="x")

    assert press(admin_client, session, "archive") == ["Archived 1 session."]
    assert press(admin_client, session, "archive") == [
        "1 session already archived; nothing was done."
    ]
    assert Event.objects.filter(session_id=session.pk, kind="session.archived").count() == 1


def test_an_unknown_action_is_404_and_a_get_is_refused(admin_client, session):
    url = reverse("admin:sessions_app_session_act", args=[quote(session.pk), "delete_everything"])
    assert admin_client.post(url).status_code == 404
    fail = reverse("admin:sessions_app_session_act", args=[quote(session.pk), "fail"])
    assert admin_client.get(fail).status_code == 405
    missing = reverse("admin:sessions_app_session_act", args=["ses_missing", "fail"])
    assert admin_client.post(missing, {"reason": "x"}).status_code == 404


def test_a_sub_session_is_archived_and_restored_from_its_page(
    admin_client, session, workspace_root, s3
):
    child, edge = spawn.session_spawn(session=session, actor=AGENT)
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="Done."),
    )
    change = admin_client.get(
        reverse("admin:sessions_app_subsession_change", args=[quote(edge.pk)])
    )
    assert 'data-action="archive"' in change.content.decode()

    assert press(admin_client, edge, "archive") == ["Archived 1 sub-session."]
    assert SubSession.objects.get(pk=edge.pk).status == "archived"
    assert press(admin_client, edge, "archive") == [
        "1 sub-session already archived; nothing was done."
    ]
    assert Event.objects.filter(kind="subsession.archived").count() == 1

    assert press(admin_client, edge, "restore") == ["Restored 1 sub-session."]
    assert SubSession.objects.get(pk=edge.pk).status == "idle"
    assert press(admin_client, edge, "restore") == [
        "1 sub-session already restored (not archived); nothing was done."
    ]
    assert Event.objects.filter(kind="subsession.restored").count() == 1


def test_a_thread_is_closed_from_its_change_page(admin_client, thread):
    assert press(admin_client, thread, "close") == ["Closed 1 thread."]
    assert press(admin_client, thread, "close") == ["1 thread already closed; nothing was done."]
    assert Event.objects.filter(thread_id=thread.pk, kind="thread.closed").count() == 1


def test_a_tree_past_its_bound_says_so(admin_client, session, workspace_root, monkeypatch):
    for n in range(3):
        spawn.session_spawn(session=session, actor=agent(n))
    monkeypatch.setattr(admin_tree, "MAX_NODES", 3)  # the session and two of its children

    response = admin_client.get(tree(session))

    assert response.context["tree"].truncated
    assert len(response.context["tree"].root.children) == 2
    assert "More sub-sessions than this page shows" in response.content.decode()
