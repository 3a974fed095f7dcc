"""Broadcast handoffs: the happy path, width, duplicates, one-recipient, merge."""

from __future__ import annotations

from pathlib import Path

from handoffs.models import Handoff
from sessions_app import spawn, transitions
from sessions_app.models import Session, SubSession, Workspace
from tests.conftest import assert_error
from tests.handoffs.test_single import handoff
from tests.sessions_app.fixtures import AGENT, USER, agent, url


def broadcast(api, source, recipients, **extra):
    return handoff(api, source, recipients, mode="broadcast", **extra)


def test_a_broadcast_to_three_makes_three_children_and_awaits_merge(api, session, workspace_root):
    recipients = [agent(1), agent(2), agent(3)]

    response = broadcast(api, session, recipients, workspace_backend="directory")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mode"] == "broadcast"
    assert body["status"] == "committed"
    assert body["new_owner_version"] == 1
    assert [s["current_actor"] for s in body["recipient_sessions"]] == recipients
    assert [h["recipient"] for h in body["handoffs"]] == recipients
    assert body["handoffs"][0]["id"] == body["id"]
    source = Session.objects.get(pk=session.pk)
    assert source.status == "awaiting_merge"
    assert source.owner_version == 1
    assert source.current_actor == USER  # a broadcast does not change the owner
    assert source.previous_actors == []
    edges = SubSession.objects.filter(parent=session)
    assert edges.count() == 3
    assert set(edges.values_list("kind", "broadcast_id")) == {("user_handoff", body["id"])}
    workspaces = Workspace.objects.filter(status="ready")
    assert workspaces.count() == 3
    assert all(Path(w.path).is_dir() for w in workspaces)
    assert {w.session_id for w in workspaces} == {s["id"] for s in body["recipient_sessions"]}
    # Any row's id reads the whole broadcast.
    again = api.get(f"/api/v1/handoffs/{body['handoffs'][2]['id']}/").json()
    assert again["id"] == body["id"]
    assert len(again["handoffs"]) == 3


def test_duplicate_recipients_are_refused_with_no_side_effects(api, session):
    details = assert_error(
        broadcast(api, session, [agent(1), agent(2), agent(1)]), 400, "duplicate_recipient"
    )

    assert details == {"recipient": agent(1), "index": 2}
    _nothing_happened(session)


def test_the_same_id_with_another_kind_is_not_a_duplicate(api, session):
    response = broadcast(api, session, [{"kind": "user", "id": "x"}, {"kind": "agent", "id": "x"}])
    assert response.status_code == 201, response.content


def test_a_width_of_nine_over_eight_is_refused_with_no_side_effects(api, session):
    details = assert_error(
        broadcast(api, session, [agent(n) for n in range(9)]), 409, "capacity_exceeded"
    )

    assert details == {
        "dimension": "width",
        "current": 0,
        "requested": 9,
        "limit": 8,
        "session": session.pk,
    }
    _nothing_happened(session)


def test_a_broadcast_of_exactly_the_width_is_allowed(api, session):
    assert broadcast(api, session, [agent(n) for n in range(8)]).status_code == 201


def test_existing_children_count_towards_the_width(api, session):
    for n in range(6):
        spawn.session_spawn(session=session, actor=agent(f"s{n}"))
    transitions.session_turn_start(session=session)
    transitions.session_turn_settle(session=session, usage=transitions.Usage())
    session.refresh_from_db()

    details = assert_error(
        broadcast(api, session, [agent(1), agent(2), agent(3)]), 409, "capacity_exceeded"
    )
    assert (details["current"], details["requested"], details["limit"]) == (6, 3, 8)


def test_an_empty_list_is_400(api, session):
    assert_error(broadcast(api, session, []), 400, "validation_error")
    _nothing_happened(session)


def test_a_one_recipient_broadcast_is_400(api, session):
    details = assert_error(broadcast(api, session, [AGENT]), 400, "validation_error")
    assert "recipients" in details["fields"]
    _nothing_happened(session)


def _nothing_happened(session):
    source = Session.objects.get(pk=session.pk)
    assert (source.status, source.owner_version) == ("idle", 0)
    assert Session.objects.count() == 1
    assert not SubSession.objects.exists()
    assert not Handoff.objects.exists()
    assert not Workspace.objects.exists()


def test_merge_waits_for_every_child_then_closes_the_broadcast(api, session):
    body = broadcast(api, session, [agent(1), agent(2)]).json()
    first, second = (Session.objects.get(pk=s["id"]) for s in body["recipient_sessions"])
    transitions.session_turn_start(session=first)

    details = assert_error(api.post(url(session, "merge")), 409, "children_running")
    assert details["running"] == [{"id": first.pk, "status": "active"}]
    assert details["total_running"] == 1

    transitions.session_fail(session=first)
    response = api.post(url(session, "merge"))

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "idle"
    assert response.json()["owner_version"] == 1
    assert set(SubSession.objects.filter(parent=session).values_list("status", flat=True)) == {
        "merged"
    }
    assert second.pk in [s["id"] for s in body["recipient_sessions"]]


def test_a_merged_broadcast_frees_its_width(api, project, session):
    project.max_delegation_width = 2
    project.save(update_fields=["max_delegation_width"])
    broadcast(api, session, [agent(1), agent(2)])
    api.post(url(session, "merge"))
    session.refresh_from_db()

    assert broadcast(api, session, [agent(3), agent(4)]).status_code == 201


def test_merge_on_an_archived_thread_is_409_and_for_an_outsider_404(api, outsider, session):
    broadcast(api, session, [agent(1), agent(2)])

    assert_error(outsider.post(url(session, "merge")), 404, "not_found")
    # (An awaiting_merge session blocks archiving, so an archived thread needs a bypass.)
    from threads.models import Thread

    Thread.objects.filter(pk=session.thread_id).update(status="archived")
    assert_error(api.post(url(session, "merge")), 409, "thread_archived")


def test_a_single_handoff_takes_no_width_slot_then_or_later(api, project, session):
    """README: the width cap applies to spawns and broadcasts; a single handoff replaces the
    owner. At width 2, a session with one single handoff behind it still broadcasts to two."""
    project.max_delegation_width = 2
    project.save(update_fields=["max_delegation_width"])
    single = handoff(api, session, [agent("next")])
    assert single.status_code == 201, single.content
    session.refresh_from_db()

    response = broadcast(api, session, [agent(1), agent(2)], version=session.owner_version)

    assert response.status_code == 201, response.content
