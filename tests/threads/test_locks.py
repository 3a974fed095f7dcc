"""threads/locks.py: the lock order is checked per transaction, and the locks are
FOR NO KEY UPDATE (inserting a row that refers to a locked row does not wait)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from common.errors import NotFound, ThreadArchived
from threads import locks, services
from threads.models import Message


def test_a_thread_lock_after_a_session_lock_in_one_transaction_is_refused(thread):
    with transaction.atomic():
        locks.lock_sessions([])
        with pytest.raises(locks.LockOrderViolation, match="thread lock taken after a session"):
            locks.lock_thread(thread.pk)


def test_the_documented_order_is_accepted_and_each_transaction_starts_afresh(thread):
    with transaction.atomic():
        locks.lock_thread(thread.pk)
        locks.lock_sessions([])
        locks.lock_queued_messages(thread.pk)
    with transaction.atomic():  # a new transaction: the session lock above is gone
        locks.lock_thread(thread.pk)


def test_a_rolled_back_transaction_leaves_no_order_behind(thread):
    with pytest.raises(RuntimeError), transaction.atomic():
        locks.lock_sessions([])
        raise RuntimeError("rolled back")
    with transaction.atomic():
        assert locks.lock_thread(thread.pk).pk == thread.pk


@pytest.mark.django_db(transaction=True)
def test_a_lock_outside_a_transaction_is_refused(api, project):
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        locks.lock_thread(thread.pk)


def test_lock_open_thread_refuses_an_archived_thread_and_a_missing_one(thread):
    services.thread_archive(thread=thread)
    with transaction.atomic(), pytest.raises(ThreadArchived):
        locks.lock_open_thread(thread.pk)
    with transaction.atomic(), pytest.raises(NotFound):
        locks.lock_thread("thd_missing")


@pytest.mark.django_db(transaction=True)
def test_a_row_referring_to_a_locked_thread_is_inserted_without_waiting(api, project):
    # given: a thread held under its row lock by another connection
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    held, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                locks.lock_thread(thread.pk)
                held.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=30)
        # when: this connection inserts a row with a foreign key to it (a key-share lock)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            Message.objects.create(
                thread_id=thread.pk, message_id="m1", seq=1, role="user", content="hi"
            )
        # then: it committed while the lock was held (FOR UPDATE would have made it wait)
    finally:
        release.set()
        holder.join(timeout=30)
