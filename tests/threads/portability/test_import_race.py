"""Two imports of one document at once make one thread: the second INSERT waits on the
first's primary key and then finds the thread the first made."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from tests.factories import ProjectFactory
from tests.threads.portability import fixtures
from threads.models import Message, Thread
from threads.portability import imports
from threads.tenancy import tenant_create

BODY = fixtures.gz(fixtures.zeitlich_v1())


def _blocked_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@pytest.mark.django_db(transaction=True)
def test_racing_imports_of_one_document_make_one_thread():
    tenant, _ = tenant_create(name="racer")
    project = ProjectFactory(tenant=tenant)
    first_inserted, release = threading.Event(), threading.Event()
    results: dict[str, imports.Imported] = {}
    pids: dict[str, int] = {}

    def first():
        try:
            with transaction.atomic():  # holds the new row uncommitted until released
                results["first"] = imports.thread_import(
                    tenant=tenant, project_id=project.id, body=BODY
                )
                first_inserted.set()
                release.wait(30)
        finally:
            connections.close_all()

    def second():
        try:
            first_inserted.wait(30)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids["second"] = cursor.fetchone()[0]
            results["second"] = imports.thread_import(
                tenant=tenant, project_id=project.id, body=BODY
            )
        finally:
            connections.close_all()

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    # the second import has passed its check and waits on the first's row
    deadline = time.monotonic() + 30
    while not ("second" in pids and _blocked_on_a_lock(pids["second"])):
        assert time.monotonic() < deadline, "the second import never waited on the first"
        time.sleep(0.05)
    release.set()
    a.join(30)
    b.join(30)

    assert results["first"].created and not results["second"].created
    assert results["second"].thread.pk == results["first"].thread.pk
    assert Thread.objects.filter(project=project).count() == 1
    assert Message.objects.filter(thread_id=results["first"].thread.pk).count() == 8
