"""Turns, HITL, fail, archive: the allowed transitions, everything else 409
illegal_transition, and the thread's lifecycle kept in step."""

from __future__ import annotations

import pytest

from handoffs import services as handoff_services
from handoffs.models import Handoff
from sessions_app import recovery, transitions
from sessions_app.models import Session, SessionStatus, SubSession, Workspace
from tests.conftest import assert_error
from tests.sessions_app.fixtures import AGENT, USER, agent, url
from threads import services as thread_services
from threads.models import Event, Thread

USAGE = {
    "input_tokens": 1200,
    "cache_read_tokens": 800,
    "cache_creation_tokens": 100,
    "output_tokens": 50,
}

# (endpoint, body) for every transition endpoint.
ENDPOINTS = {
    "start": ("turns/start", None),
    "settle": ("turns/settle", {"usage": USAGE}),
    "hitl_request": ("hitl/request", None),
    "hitl_resolve": ("hitl/resolve", None),
    "fail": ("fail", {}),
    "archive": ("archive", None),
    "merge": ("merge", None),
    "spawn": ("spawn", {"actor": AGENT}),
}


def post(api, session, name):
    path, body = ENDPOINTS[name]
    return api.post(url(session, path), body)


def status_of(session) -> str:
    return Session.objects.get(pk=session.pk).status


def test_a_turn_starts_and_settles_with_its_usage(api, thread, session):
    started = post(api, session, "start")
    assert started.status_code == 200, started.content
    assert started.json()["status"] == "active"
    thread.refresh_from_db()
    assert thread.lifecycle == "active"

    settled = post(api, session, "settle")

    assert settled.status_code == 200, settled.content
    body = settled.json()
    assert body["status"] == "idle"
    assert body["usage"] == USAGE
    assert body["last_settled_at"] is not None
    thread.refresh_from_db()
    assert thread.lifecycle == "idle"
    assert (
        thread.last_input_tokens,
        thread.last_cache_read_tokens,
        thread.last_cache_creation_tokens,
        thread.last_output_tokens,
    ) == (1200, 800, 100, 50)
    kinds = list(Event.objects.filter(session_id=session.id).values_list("kind", flat=True))
    assert kinds == ["session.created", "session.turn_started", "session.turn_settled"]


def test_hitl_round_trip(api, session):
    post(api, session, "start")

    assert post(api, session, "hitl_request").json()["status"] == "awaiting_hitl"
    assert post(api, session, "hitl_resolve").json()["status"] == "active"


@pytest.mark.parametrize(
    ("path", "starting", "action"),
    [
        ("settle", "idle", "settle_turn"),
        ("hitl_request", "idle", "request_hitl"),
        ("hitl_resolve", "idle", "resolve_hitl"),
        ("merge", "idle", "merge"),
        ("start", "active", "start_turn"),
        ("archive", "active", "archive"),
        ("hitl_resolve", "active", "resolve_hitl"),
        ("start", "awaiting_hitl", "start_turn"),
        ("settle", "awaiting_hitl", "settle_turn"),
        ("archive", "awaiting_hitl", "archive"),
        ("start", "failed", "start_turn"),
        ("start", "archived", "start_turn"),
        ("fail", "archived", "fail"),
        ("archive", "archived", "archive"),
        # locked and awaiting_merge are left only through handoffs (and fail, and a summary).
        ("start", "locked", "start_turn"),
        ("settle", "locked", "settle_turn"),
        ("hitl_request", "locked", "request_hitl"),
        ("hitl_resolve", "locked", "resolve_hitl"),
        ("archive", "locked", "archive"),
        ("merge", "locked", "merge"),
        ("spawn", "locked", "spawn"),
        ("start", "awaiting_merge", "start_turn"),
        ("settle", "awaiting_merge", "settle_turn"),
        ("hitl_request", "awaiting_merge", "request_hitl"),
        ("hitl_resolve", "awaiting_merge", "resolve_hitl"),
        ("archive", "awaiting_merge", "archive"),
        ("spawn", "awaiting_merge", "spawn"),
    ],
)
def test_any_other_transition_is_409_illegal_transition(api, session, path, starting, action):
    _bring_to(session, starting)
    before = _state(session)

    details = assert_error(post(api, session, path), 409, "illegal_transition")

    assert details == {"from": starting, "action": action}
    assert _state(session) == before


def _state(session) -> dict:
    """What a refused transition must leave as it was: the session row and its children."""
    return {
        "session": Session.objects.filter(pk=session.pk)
        .values("status", "owner_version", "current_actor", "lock_token", "lock_expires_at")
        .get(),
        "sessions": Session.objects.count(),
        "subsessions": list(SubSession.objects.order_by("pk").values_list("pk", "status")),
    }


def _lock_for_a_handoff(*, session) -> None:
    """The lock phase of a real single handoff, and nothing after it (as if its recipient's
    workspace were still being provisioned): the source is locked with a live lease."""
    handoff_services._lock(
        tenant_id=session.tenant_id,
        source_session_id=session.pk,
        mode="single",
        expected=session.owner_version,
        recipients=[AGENT],
        workspace_backend="none",
    )


def _broadcast_to_two(*, session) -> None:
    """A committed broadcast: the source awaits the merge of its two children."""
    handoff_services.handoff_execute(
        tenant=session.tenant,
        mode="broadcast",
        source_session_id=session.pk,
        expected_owner_version=session.owner_version,
        recipients=[agent(1), agent(2)],
    )


def _bring_to(session, status):
    steps = {
        "idle": [],
        "active": [transitions.session_turn_start],
        "awaiting_hitl": [transitions.session_turn_start, transitions.session_hitl_request],
        "locked": [_lock_for_a_handoff],
        "awaiting_merge": [_broadcast_to_two],
        "failed": [transitions.session_fail],
        "archived": [transitions.session_archive],
    }[status]
    for step in steps:
        step(session=session)
    assert status_of(session) == status


@pytest.mark.parametrize(
    "starting", ["idle", "active", "awaiting_hitl", "locked", "awaiting_merge", "failed"]
)
def test_fail_works_from_any_status_but_archived(api, session, starting):
    _bring_to(session, starting)

    response = api.post(url(session, "fail"), {"reason": "tool crashed"})

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "failed"


def test_failing_a_locked_session_releases_the_lock_and_its_handoff_rolls_back(
    api, session, workspace_root, monkeypatch
):
    # given: a real handoff whose source is failed over the API while its workspace is made
    provision = handoff_services.workspace_provision
    failed = []

    def provision_then_fail(**kwargs):
        workspace = provision(**kwargs)
        failed.append(api.post(url(session, "fail"), {"reason": "operator gave up"}))
        return workspace

    monkeypatch.setattr(handoff_services, "workspace_provision", provision_then_fail)

    # when
    response = api.post(
        "/api/v1/handoffs/",
        {
            "mode": "single",
            "source_session": session.pk,
            "expected_owner_version": 0,
            "recipients": [AGENT],
            "workspace_backend": "directory",
        },
    )

    # then: the fail won; the handoff could not commit over it and undid its work
    assert failed[0].status_code == 200, failed[0].content
    assert failed[0].json()["status"] == "failed"
    assert_error(response, 409, "lock_expired")
    source = Session.objects.get(pk=session.pk)
    assert (source.status, source.owner_version, source.current_actor) == ("failed", 0, USER)
    assert (source.lock_token, source.lock_expires_at) == ("", None)
    assert Session.objects.count() == 1
    assert not SubSession.objects.exists()
    assert Handoff.objects.get().outcome == "rolled_back"
    assert Workspace.objects.get().status == "disposed"
    kinds = Event.objects.filter(session_id=session.pk).values_list("kind", flat=True)
    assert list(kinds) == [
        "session.created",
        "handoff.locked",
        "session.failed",
        "handoff.rolled_back",
    ]
    rolled_back = Event.objects.get(session_id=session.pk, kind="handoff.rolled_back")
    assert rolled_back.payload["source_reverted"] is False  # it stays failed, not idle


def test_failing_a_session_whose_handoff_died_after_its_lock_leaves_no_pending_handoff(
    api, session
):
    # given: the lock phase, then nothing (the process died): no rollback will ever run
    _lock_for_a_handoff(session=session)

    # when
    response = api.post(url(session, "fail"), {"reason": "stuck"})

    # then: the lock is gone, and so is the pending handoff that can never commit now
    assert response.status_code == 200, response.content
    source = Session.objects.get(pk=session.pk)
    assert (source.status, source.lock_token, source.lock_expires_at) == ("failed", "", None)
    row = Handoff.objects.get()
    assert (row.outcome, row.recipient_session) == ("rolled_back", None)
    assert "left locked (fail)" in row.error
    assert recovery.session_locks_recover() == {"recovered": 0, "workspaces_disposed": 0}


def test_failing_a_session_awaiting_merge_leaves_its_broadcast_children_running(api, session):
    _bring_to(session, "awaiting_merge")
    children = list(SubSession.objects.filter(parent=session).values_list("child_id", "status"))

    response = api.post(url(session, "fail"), {"reason": "the plan was wrong"})

    assert response.status_code == 200, response.content
    source = Session.objects.get(pk=session.pk)
    assert (source.status, source.owner_version, source.current_actor) == ("failed", 1, USER)
    # The children and their edges are untouched (each can still settle, fail or archive);
    # the broadcast can no longer be merged.
    assert list(SubSession.objects.filter(parent=session).values_list("child_id", "status")) == (
        children
    )
    assert {s for _, s in children} == {"idle"}
    assert set(Handoff.objects.values_list("outcome", flat=True)) == {"committed"}
    details = assert_error(post(api, session, "merge"), 409, "illegal_transition")
    assert details == {"from": "failed", "action": "merge"}


@pytest.mark.parametrize("starting", ["idle", "failed"])
def test_archive_works_from_idle_and_failed(api, session, starting):
    _bring_to(session, starting)

    response = post(api, session, "archive")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "archived"


def test_the_thread_stays_active_while_any_session_is_active(api, thread, make_session):
    first, second = make_session(), make_session(AGENT)
    post(api, first, "start")
    post(api, second, "start")

    post(api, first, "settle")
    thread.refresh_from_db()
    assert thread.lifecycle == "active"

    post(api, second, "hitl_request")
    thread.refresh_from_db()
    assert thread.lifecycle == "idle"


def test_a_closed_thread_stays_closed_until_a_turn_starts(api, thread, make_session):
    first, second = make_session(), make_session(AGENT)
    post(api, first, "start")
    thread_services.thread_close(thread=thread)

    post(api, first, "settle")
    thread.refresh_from_db()
    assert thread.lifecycle == "closed"

    post(api, second, "start")
    thread.refresh_from_db()
    assert thread.lifecycle == "active"
    changes = Event.objects.filter(thread_id=thread.id, kind="thread.lifecycle_changed")
    assert [e.payload for e in changes] == [
        {"from": "idle", "to": "active"},
        {"from": "closed", "to": "active"},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"usage": {**USAGE, "input_tokens": -1}},
        {"usage": {**USAGE, "input_tokens": "12"}},
        {"usage": {**USAGE, "input_tokens": 1.5}},
        {"usage": {**USAGE, "output_tokens": True}},
        {"usage": {**USAGE, "cache_read_tokens": None}},
        {"usage": {**USAGE, "input_tokens": 10**13}},
        {"usage": {**USAGE, "reasoning_tokens": 2}},
        {"usage": [1, 2]},
        {"usage": USAGE, "extra": 1},
    ],
)
def test_settle_refuses_bad_usage_with_400(api, thread, session, body):
    post(api, session, "start")

    assert_error(api.post(url(session, "turns/settle"), body), 400, "validation_error")

    assert status_of(session) == "active"
    thread.refresh_from_db()
    assert thread.last_input_tokens == 0


def test_cache_counts_left_out_count_as_zero(api, session):
    post(api, session, "start")

    response = api.post(
        url(session, "turns/settle"), {"usage": {"input_tokens": 7, "output_tokens": 3}}
    )

    assert response.json()["usage"] == {
        "input_tokens": 7,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "output_tokens": 3,
    }


def test_fail_refuses_an_unknown_field(api, session):
    assert_error(api.post(url(session, "fail"), {"why": "x"}), 400, "validation_error")
    assert status_of(session) == "idle"


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_every_transition_on_an_archived_thread_is_409_thread_archived(api, thread, session, name):
    thread_services.thread_archive(thread=thread)

    assert_error(post(api, session, name), 409, "thread_archived")


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_another_tenant_gets_404_on_every_transition(api, outsider, session, name):
    path, body = ENDPOINTS[name]

    assert_error(outsider.post(url(session, path), body), 404, "not_found")
    assert status_of(session) == "idle"


def test_the_usage_seam_is_called_inside_the_settle_transaction(session, monkeypatch):
    """Auto-compaction and warming hook in at _on_turn_settled; it sees the stored usage."""
    seen = []
    monkeypatch.setattr(
        transitions,
        "_on_turn_settled",
        lambda *, session, thread: seen.append((session.status, thread.last_output_tokens)),
    )
    transitions.session_turn_start(session=session)

    transitions.session_turn_settle(session=session, usage=transitions.Usage(output_tokens=9))

    assert seen == [(SessionStatus.IDLE, 9)]
    assert Thread.objects.get(pk=session.thread_id).last_output_tokens == 9
