"""Thread archive and delete refuse while sessions block them (409 thread_not_empty), and
neither can race a session being created or started: both sides take the thread row lock."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from common.errors import ThreadArchived, ThreadNotEmpty
from sessions_app import spawn, transitions
from sessions_app.models import Session, SubSession
from tests.conftest import assert_error
from tests.sessions_app.fixtures import USER
from threads import services as thread_services
from threads.models import Thread


def archive(api, thread):
    return api.post(f"/api/v1/threads/{thread.id}/archive")


@pytest.mark.parametrize(
    "steps",
    [
        [transitions.session_turn_start],
        [transitions.session_turn_start, transitions.session_hitl_request],
    ],
    ids=["active", "awaiting_hitl"],
)
def test_archive_is_refused_while_a_session_is_busy(api, thread, session, steps):
    for step in steps:
        step(session=session)

    details = assert_error(archive(api, thread), 409, "thread_not_empty")

    status = Session.objects.get(pk=session.pk).status
    assert details["blocking_sessions"] == [{"id": session.id, "status": status}]
    assert details["total_blocking_sessions"] == 1
    thread.refresh_from_db()
    assert thread.status == "open"


def test_archive_is_refused_for_locked_and_awaiting_merge_sessions(api, thread, make_session):
    locked, merging = make_session(), make_session()
    Session.objects.filter(pk=locked.pk).update(status="locked")
    Session.objects.filter(pk=merging.pk).update(status="awaiting_merge")

    details = assert_error(archive(api, thread), 409, "thread_not_empty")

    assert {(s["id"], s["status"]) for s in details["blocking_sessions"]} == {
        (locked.id, "locked"),
        (merging.id, "awaiting_merge"),
    }


def test_idle_failed_and_archived_sessions_do_not_block_archiving(api, thread, make_session):
    make_session()
    transitions.session_fail(session=make_session())
    transitions.session_archive(session=make_session())

    response = archive(api, thread)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "archived"


def test_archive_is_checked_even_when_the_thread_is_already_archived(api, thread, session):
    thread_services.thread_archive(thread=thread)
    # A session left busy by a path that bypasses the services still blocks.
    Session.objects.filter(pk=session.pk).update(status="active")

    assert_error(archive(api, thread), 409, "thread_not_empty")


def test_the_blocking_sample_is_capped_at_50_with_the_total(api, thread):
    Session.objects.bulk_create(
        Session(
            tenant=api.tenant,
            thread=thread,
            project_id=thread.project_id,
            status="active",
            current_actor=USER,
        )
        for _ in range(53)
    )

    details = assert_error(archive(api, thread), 409, "thread_not_empty")

    assert len(details["blocking_sessions"]) == 50
    assert details["total_blocking_sessions"] == 53


def test_delete_is_refused_while_a_session_that_is_not_archived_is_attached(api, thread, session):
    details = assert_error(api.delete(f"/api/v1/threads/{thread.id}/"), 409, "thread_not_empty")

    assert details["blocking_sessions"] == [{"id": session.id, "status": "idle"}]
    assert details["total_blocking_sessions"] == 1
    assert Thread.objects.filter(pk=thread.pk).exists()


def test_a_thread_whose_sessions_are_all_archived_is_deleted_with_them(api, thread, session):
    """Was impossible: archived sessions blocked the delete and sessions cannot be deleted."""
    child, _ = spawn.session_spawn(session=session, actor={"kind": "agent", "id": "c"})
    transitions.session_fail(session=child)  # a spawned child starts active
    transitions.session_archive(session=child)
    transitions.session_archive(session=session)

    response = api.delete(f"/api/v1/threads/{thread.id}/")

    assert response.status_code == 204, response.content
    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert not Session.objects.filter(pk__in=[session.pk, child.pk]).exists()
    assert not SubSession.objects.filter(parent_id=session.pk).exists()
    deleted = api.get("/api/v1/events/", {"thread": thread.id, "kind": "thread.deleted"})
    assert deleted.json()["results"][0]["payload"]["archived_sessions"] == 2


def test_a_thread_without_sessions_can_be_deleted(api, thread):
    assert api.delete(f"/api/v1/threads/{thread.id}/").status_code == 204


def _hold_in_transaction(work, hold: float, started: threading.Event, errors: list):
    """Run work() in a transaction that stays open `hold` seconds after it ran."""
    try:
        with transaction.atomic():
            work()
            started.set()
            time.sleep(hold)
    except Exception as exc:  # reported to the test
        errors.append(exc)
        started.set()
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_session_cannot_be_created_on_a_thread_being_archived(api, thread):
    started, errors = threading.Event(), []
    archiver = threading.Thread(
        target=_hold_in_transaction,
        args=(lambda: thread_services.thread_archive(thread=thread), 0.5, started, errors),
    )
    archiver.start()
    started.wait(5)

    # The archive holds the thread's row lock: the create waits for it, then sees archived.
    with pytest.raises(ThreadArchived):
        transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
    archiver.join()

    assert errors == []
    assert not Session.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_thread_cannot_be_archived_while_a_turn_is_starting(api, thread):
    session = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
    started, errors = threading.Event(), []
    starter = threading.Thread(
        target=_hold_in_transaction,
        args=(lambda: transitions.session_turn_start(session=session), 0.5, started, errors),
    )
    starter.start()
    started.wait(5)

    with pytest.raises(ThreadNotEmpty):
        thread_services.thread_archive(thread=thread)
    starter.join()

    assert errors == []
    thread.refresh_from_db()
    assert thread.status == "open"


def test_the_admin_offers_no_delete_for_a_thread_with_sessions(admin_client, thread, session):
    # given: a thread with an attached session
    url = f"/admin/threads/thread/{thread.pk}/delete/"
    # when
    response = admin_client.post(url, {"post": "yes"})
    # then: refused (403), not a 500, and the thread is still there
    assert response.status_code == 403
    assert Thread.objects.filter(pk=thread.pk).exists()


def test_the_admin_bulk_delete_skips_threads_with_sessions(admin_client, thread, session):
    response = admin_client.post(
        "/admin/threads/thread/",
        {"action": "delete_selected", "_selected_action": [thread.pk], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    assert Thread.objects.filter(pk=thread.pk).exists()
    assert "Not deleted: 1 thread_not_empty" in response.content.decode()


def test_reopening_a_closed_thread_during_a_turn_makes_it_active(api, thread, session):
    # given: a turn is running while the user closed the conversation
    transitions.session_turn_start(session=session)
    assert api.post(f"/api/v1/threads/{thread.id}/close").json()["lifecycle"] == "closed"
    # when
    response = api.post(f"/api/v1/threads/{thread.id}/open")
    # then: lifecycle follows the running session, not a blind idle
    assert response.status_code == 200
    assert response.json()["lifecycle"] == "active"


def test_reopening_a_closed_thread_without_a_turn_makes_it_idle(api, thread, session):
    api.post(f"/api/v1/threads/{thread.id}/close")
    assert api.post(f"/api/v1/threads/{thread.id}/open").json()["lifecycle"] == "idle"
