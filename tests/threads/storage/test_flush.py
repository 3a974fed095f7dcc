"""Flush (threads/tiers.py thread_flush) against a real S3 endpoint (moto_server) and Redis.

The faults are real: the endpoint is stopped, objects are overwritten behind our back, a
process is killed after its snapshot write.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection
from django_redis import get_redis_connection

from tests import workers
from tests.conftest import assert_error
from threads import history, services
from threads.models import Event, Message, Thread
from threads.storage import cold, hotcache, tiers
from threads.storage.snapshot import messages_sha256, snapshot_key

pytestmark = pytest.mark.django_db


def url(thread, suffix=""):
    return f"/api/v1/threads/{thread.id}/{suffix}"


def add(thread, *ids):
    return history.messages_append(
        thread=thread, messages=[{"id": i, "role": "user", "content": f"text {i}"} for i in ids]
    )


def ids_of(thread) -> list[str]:
    return list(
        Message.objects.filter(thread_id=thread.pk)
        .order_by("seq")
        .values_list("message_id", flat=True)
    )


def stored(s3, thread) -> dict:
    body = s3.client().get_object(Bucket=s3.bucket, Key=snapshot_key(thread.id))["Body"]
    return json.loads(gzip.decompress(body.read()))


def test_flush_writes_the_snapshot_deletes_the_rows_and_marks_the_thread_cold(
    api, thread, s3, django_capture_on_commit_callbacks
):
    # given a hot thread with messages, state and a warm cache
    add(thread, "a", "b", "c")
    services.thread_state_set(thread=thread, state={"plan": [1, 2]})
    api.get(url(thread, "messages"))
    thread.refresh_from_db()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(thread, "flush"))

    # then the API answers with the cold thread
    assert response.status_code == 200
    body = response.json()
    assert body["tier"] == "cold"
    assert body["message_count"] == 3 and body["last_seq"] == 3
    assert body["cold_bytes"] > 0 and body["last_flushed_at"]
    # the rows are gone, the counters and the key stay on the row
    assert ids_of(thread) == []
    row = Thread.objects.get(pk=thread.pk)
    assert (row.tier, row.message_count, row.last_seq) == ("cold", 3, 3)
    assert row.cold_key == f"threads/messages/{thread.id}.json.gz"
    assert row.history_version == thread.history_version
    # the object is a gzip zeitlich-v1 superset
    head = s3.client().head_object(Bucket=s3.bucket, Key=row.cold_key)
    assert head["ContentType"] == "application/gzip"
    assert head["ContentLength"] == row.cold_bytes
    snapshot = stored(s3, thread)
    assert snapshot["v"] == 1
    assert snapshot["dedupIds"] == ["a", "b", "c"]
    assert [json.loads(m)["id"] for m in snapshot["messages"]] == ["a", "b", "c"]
    assert all(isinstance(m, str) for m in snapshot["messages"])
    assert snapshot["state"] == {"plan": [1, 2]}
    assert snapshot["thread_id"] == thread.id and snapshot["tenant_id"] == api.tenant.id
    assert (snapshot["last_seq"], snapshot["message_count"]) == (3, 3)
    assert snapshot["history_version"] == thread.history_version
    assert snapshot["sha256"] == messages_sha256(snapshot["messages"])
    # Redis keys dropped, event recorded
    assert get_redis_connection("default").exists(*hotcache.keys(thread.id)) == 0
    event = Event.objects.get(kind="thread.flushed", thread_id=thread.id)
    assert event.payload["messages"] == 3 and event.payload["bytes"] == row.cold_bytes


def test_a_cold_thread_is_never_404_get_answers_from_the_row(api, thread, s3):
    add(thread, "a")
    api.post(url(thread, "flush"))

    response = api.get(url(thread))

    assert response.status_code == 200
    assert response.json()["tier"] == "cold"
    assert response.json()["message_count"] == 1
    assert Thread.objects.get(pk=thread.pk).tier == "cold"  # a GET of the row does not hydrate


def test_listing_threads_by_tier(api, thread, s3, project):
    hot = services.thread_create(tenant=api.tenant, project_id=project.id)
    api.post(url(thread, "flush"))

    cold_ids = [t["id"] for t in api.get("/api/v1/threads/", {"tier": "cold"}).json()["results"]]
    hot_ids = [t["id"] for t in api.get("/api/v1/threads/", {"tier": "hot"}).json()["results"]]

    assert cold_ids == [thread.id]
    assert hot_ids == [hot.id]


def test_flushing_a_cold_thread_again_is_a_no_op(api, thread, s3):
    add(thread, "a")
    first = api.post(url(thread, "flush")).json()

    second = api.post(url(thread, "flush"))

    assert second.status_code == 200
    assert second.json()["last_flushed_at"] == first["last_flushed_at"]
    assert Event.objects.filter(kind="thread.flushed").count() == 1


def test_an_outsider_gets_404_from_flush_and_hydrate(api, outsider, thread, s3):
    add(thread, "a")
    assert_error(outsider.post(url(thread, "flush")), 404, "not_found")
    api.post(url(thread, "flush"))
    assert_error(outsider.post(url(thread, "hydrate")), 404, "not_found")
    assert Thread.objects.get(pk=thread.pk).tier == "cold"


def test_flush_is_refused_while_a_session_runs_a_turn(api, thread, s3):
    from sessions_app.models import Session

    add(thread, "a")
    Session.objects.create(
        tenant=api.tenant, thread=thread, project=thread.project, status="active"
    )

    details = assert_error(api.post(url(thread, "flush")), 409, "thread_generating")

    assert details["thread"] == thread.id
    assert Thread.objects.get(pk=thread.pk).tier == "hot"
    assert ids_of(thread) == ["a"]


def test_flush_keeps_rows_when_the_snapshot_write_fails_and_succeeds_after_a_restart(
    api, thread, s3
):
    # given
    add(thread, "a", "b")
    bucket = s3.bucket
    s3.stop()
    try:
        # when the endpoint is gone
        assert_error(api.post(url(thread, "flush")), 503, "cold_storage_unavailable")
        # then nothing moved and the claim was released
        row = Thread.objects.get(pk=thread.pk)
        assert row.tier == "hot" and row.cold_key == ""
        assert ids_of(thread) == ["a", "b"]
    finally:
        s3.start()
        s3.create_bucket(bucket)

    # when it is back, the same flush succeeds
    response = api.post(url(thread, "flush"))
    assert response.status_code == 200 and response.json()["tier"] == "cold"
    assert [json.loads(m)["id"] for m in stored(s3, thread)["messages"]] == ["a", "b"]


def test_a_write_since_encoding_aborts_the_flush_with_nothing_lost(api, thread, s3, monkeypatch):
    # given an append that lands while the snapshot is being written
    add(thread, "a")
    real_put = cold.put_conditional

    def put_racing_an_append(key, body, **condition):
        add(Thread.objects.get(pk=thread.pk), "late")
        real_put(key, body, **condition)

    monkeypatch.setattr(cold, "put_conditional", put_racing_an_append)

    # when
    details = assert_error(api.post(url(thread, "flush")), 409, "thread_busy")

    # then
    assert details["reason"] == "changed"
    row = Thread.objects.get(pk=thread.pk)
    assert row.tier == "hot" and not row.cold_key.startswith("lease:")
    assert ids_of(thread) == ["a", "late"]

    # and the next flush takes the new message along
    monkeypatch.setattr(cold, "put_conditional", real_put)
    assert api.post(url(thread, "flush")).json()["tier"] == "cold"
    assert stored(s3, thread)["dedupIds"] == ["a", "late"]


def test_a_mismatch_between_write_and_read_back_keeps_the_rows_and_a_retry_converges(
    api, thread, s3, monkeypatch
):
    # given a store that changes the object between our write and our read-back
    add(thread, "a", "b", "c")
    real_put = cold.put_conditional

    def put_then_clobber(key, body, **condition):
        real_put(key, body, **condition)
        s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"clobbered")

    monkeypatch.setattr(cold, "put_conditional", put_then_clobber)

    # when: the write happened, the deletion must not
    details = assert_error(api.post(url(thread, "flush")), 503, "cold_storage_unavailable")

    # then
    assert details["reason"] == "verify_mismatch"
    assert Thread.objects.get(pk=thread.pk).tier == "hot"
    assert ids_of(thread) == ["a", "b", "c"]

    # and a retry converges with nothing lost
    monkeypatch.setattr(cold, "put_conditional", real_put)
    assert api.post(url(thread, "flush")).json()["tier"] == "cold"
    assert api.post(url(thread, "hydrate")).json()["tier"] == "hot"
    assert ids_of(thread) == ["a", "b", "c"]


CRASH_AFTER_WRITE = """
import os, django
django.setup()
from threads.storage import cold, tiers
from threads.models import Thread
real_put = cold.put_conditional
def put_then_die(key, body, **condition):
    real_put(key, body, **condition)
    os._exit(9)  # killed between the snapshot write and the row deletion
cold.put_conditional = put_then_die
tiers.thread_flush(thread=Thread.objects.get(pk=os.environ["THREAD_ID"]))
"""


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_after_the_snapshot_write_loses_nothing_and_a_retry_converges(
    api, thread, s3
):
    # given
    add(thread, "a", "b")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": workers.test_database_url(),
        "COLD_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": s3.bucket,
        "AWS_S3_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "THREAD_ID": thread.id,
    }

    # when the flushing process dies right after its write
    died = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_WRITE], cwd=workers.ROOT, env=env, timeout=60
    )

    # then the object is there, but the thread is hot with every row
    assert died.returncode == 9
    assert stored(s3, thread)["dedupIds"] == ["a", "b"]
    row = Thread.objects.get(pk=thread.pk)
    assert row.tier == "hot" and row.cold_key.startswith("lease:")
    assert ids_of(thread) == ["a", "b"]
    # its claim holds off other flushes until it expires
    assert_error(api.post(url(thread, "flush")), 409, "thread_busy")
    add(row, "after-crash")

    # when the lease has expired (its process is dead; time passes), a retry converges
    expired = "lease:0:" + row.cold_key.split(":", 2)[2]
    Thread.objects.filter(pk=thread.pk).update(cold_key=expired)
    assert api.post(url(thread, "flush")).json()["tier"] == "cold"
    assert stored(s3, thread)["dedupIds"] == ["a", "b", "after-crash"]
    assert [m["id"] for m in api.get(url(thread, "messages")).json()["results"]] == [
        "a",
        "b",
        "after-crash",
    ]


@pytest.mark.django_db(transaction=True)
def test_an_append_racing_a_flush_lands_in_a_hot_thread_after_the_flush_committed(
    api, thread, s3, monkeypatch
):
    """The append is blocked on the row lock the flush's UPDATE holds; once the flush has
    committed it finds the thread cold, hydrates it and lands."""
    add(thread, "a")
    real_event_record = tiers.event_record
    outcome = {}

    def append_from_another_connection():
        try:
            outcome["response"] = api.post(
                url(thread, "messages"),
                {"messages": [{"id": "racer", "role": "user", "content": "hi"}]},
            )
        finally:
            connection.close()

    racer = threading.Thread(target=append_from_another_connection)

    def event_record_then_race(**kwargs):
        # inside the flush transaction: the rows are deleted, the tier is cold (uncommitted)
        if kwargs["kind"] == "thread.flushed":
            racer.start()
            time.sleep(0.3)  # the append is now waiting for the row lock
        return real_event_record(**kwargs)

    monkeypatch.setattr(tiers, "event_record", event_record_then_race)

    flushed = api.post(url(thread, "flush"))
    racer.join(timeout=30)

    assert flushed.status_code == 200
    assert outcome["response"].status_code == 201, outcome["response"].content
    row = Thread.objects.get(pk=thread.pk)
    assert row.tier == "hot"
    assert ids_of(thread) == ["a", "racer"]
    assert Event.objects.filter(thread_id=thread.id, kind="thread.hydrated").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_and_flushes_never_lose_a_message(api, thread, s3):
    """Whatever the interleaving: each append is acknowledged and present, each flush either
    succeeded or was refused."""
    add(thread, "seed")
    statuses: list[int] = []
    acknowledged: list[str] = []
    lock = threading.Lock()

    def appender(n):
        try:
            for i in range(6):
                mid = f"w{n}-{i}"
                for _ in range(5):  # a client retries a 409 thread_busy
                    response = api.post(
                        url(thread, "messages"),
                        {"messages": [{"id": mid, "role": "user", "content": mid}]},
                    )
                    if response.status_code != 409:
                        break
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(mid)
        finally:
            connection.close()

    def flusher():
        try:
            for _ in range(6):
                response = api.post(url(thread, "flush"))
                with lock:
                    statuses.append(response.status_code)
        finally:
            connection.close()

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(2)]
    workers += [threading.Thread(target=flusher) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)

    assert set(statuses) <= {200, 409}
    assert len(acknowledged) == 12
    api.post(url(thread, "hydrate"))
    assert set(ids_of(thread)) == {"seed", *acknowledged}
    assert Thread.objects.get(pk=thread.pk).message_count == 13


def test_the_admin_flushes_and_hydrates_selected_threads(admin_client, api, project, thread, s3):
    add(thread, "a")
    other = services.thread_create(tenant=api.tenant, project_id=project.id)
    changelist = "/admin/threads/thread/"

    flushed = admin_client.post(
        changelist, {"action": "flush", "_selected_action": [thread.id, other.id]}, follow=True
    )

    assert "Flushed 2 threads." in flushed.content.decode()
    assert set(Thread.objects.values_list("tier", flat=True)) == {"cold"}
    listing = admin_client.get(changelist, {"tier__exact": "cold"}).content.decode()
    assert thread.id in listing

    hydrated = admin_client.post(
        changelist, {"action": "hydrate", "_selected_action": [thread.id]}, follow=True
    )

    assert "Hydrated 1 thread." in hydrated.content.decode()
    assert ids_of(thread) == ["a"]


def test_the_admin_reports_a_flush_that_failed(admin_client, thread, s3):
    add(thread, "a")
    bucket = s3.bucket
    s3.stop()
    try:
        response = admin_client.post(
            "/admin/threads/thread/",
            {"action": "flush", "_selected_action": [thread.id]},
            follow=True,
        )
    finally:
        s3.start()
        s3.create_bucket(bucket)

    assert "cold_storage_unavailable: 1" in response.content.decode()
    assert Thread.objects.get(pk=thread.pk).tier == "hot"


def test_deleting_a_cold_thread_deletes_its_snapshot(
    api, thread, s3, django_capture_on_commit_callbacks
):
    add(thread, "a")
    api.post(url(thread, "flush"))

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(url(thread)).status_code == 204

    listed = s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents", [])
    assert listed == []


def test_thread_flush_returns_the_row_as_committed(thread, s3):
    # given a hot thread with messages and state
    add(thread, "a", "b")
    services.thread_state_set(thread=thread, state={"plan": [1, 2]})
    caller = Thread.objects.get(pk=thread.pk)

    # when
    returned = tiers.thread_flush(thread=caller)

    # then the instance (updated in place) is the row, field for field
    assert returned is caller
    row = Thread.objects.get(pk=thread.pk)
    for field in Thread._meta.concrete_fields:
        assert getattr(returned, field.attname) == getattr(row, field.attname), field.name
    assert row.tier == "cold" and row.state == {"plan": [1, 2]}


def test_a_flush_whose_lease_was_taken_over_writes_nothing(thread, s3, settings, monkeypatch):
    # given a flush that stalls past a third of its lease, meanwhile its lease expired and
    # another flush took it over (a heartbeat that could not reach the database)
    settings.FLUSH_LEASE_SECONDS = 3
    add(thread, "a", "b")
    real_encode = tiers.snapshot_encode
    other = "lease:9999999999:other|"

    def encode_then_lose_the_lease(**kwargs):
        snapshot = real_encode(**kwargs)
        Thread.objects.filter(pk=thread.pk).update(cold_key=other)
        time.sleep(1.1)  # past FLUSH_LEASE_SECONDS / 3: the lease is asked for, not assumed
        return snapshot

    monkeypatch.setattr(tiers, "snapshot_encode", encode_then_lose_the_lease)

    # when
    with pytest.raises(tiers.ThreadBusy):
        tiers.thread_flush(thread=thread)

    # then nothing was written, the rows and the other flush's lease are untouched
    with pytest.raises(s3.client().exceptions.NoSuchKey):
        s3.client().get_object(Bucket=s3.bucket, Key=snapshot_key(thread.id))
    row = Thread.objects.get(pk=thread.pk)
    assert row.tier == "hot" and row.cold_key == other
    assert ids_of(thread) == ["a", "b"]
