"""Hydrate (threads/tiers.py thread_hydrate, thread_ensure_hot) against a real S3 endpoint."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_redis import get_redis_connection

from common.errors import NotFound
from tests.conftest import assert_error
from threads import history, services
from threads.models import Event, Message, Thread
from threads.storage import cold, hotcache, pages, snapshot, tiers

pytestmark = pytest.mark.django_db


def url(thread, suffix=""):
    return f"/api/v1/threads/{thread.id}/{suffix}"


def add(thread, *ids):
    return history.messages_append(
        thread=thread, messages=[{"id": i, "role": "user", "content": f"text {i}"} for i in ids]
    )


def rows(thread) -> list[tuple[str, int]]:
    return list(
        Message.objects.filter(thread_id=thread.pk).order_by("seq").values_list("message_id", "seq")
    )


def flushed(api, thread, *ids) -> Thread:
    add(thread, *ids)
    assert api.post(url(thread, "flush")).json()["tier"] == "cold"
    return Thread.objects.get(pk=thread.pk)


def hydrations(thread) -> int:
    return Event.objects.filter(thread_id=thread.id, kind="thread.hydrated").count()


def overwrite(s3, thread, body: bytes) -> None:
    s3.client().put_object(Bucket=s3.bucket, Key=snapshot.snapshot_key(thread.id), Body=body)


def object_bytes(s3, thread) -> bytes:
    key = snapshot.snapshot_key(thread.id)
    return s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()


def test_reading_messages_of_a_cold_thread_hydrates_it_transparently(api, thread, s3):
    # given
    add(thread, "a", "b")
    before = api.get(url(thread, "messages")).json()
    flushed(api, thread)

    # when
    response = api.get(url(thread, "messages"))

    # then
    assert response.status_code == 200
    assert response.json() == before
    row = Thread.objects.get(pk=thread.pk)
    assert row.tier == "hot" and row.last_hydrated_at is not None
    assert rows(thread) == [("a", 1), ("b", 2)]
    assert hydrations(thread) == 1
    # the snapshot stays where it was (the next flush overwrites it)
    assert object_bytes(s3, thread)


def test_hydrate_restores_everything_the_flush_took(api, thread, s3):
    # given a history with a gap in its seqs, content blocks, metadata and state
    add(thread, "a", "b", "c")
    history.messages_truncate(thread=thread, from_id="c")
    history.messages_append(
        thread=thread,
        messages=[
            {
                "id": "d",
                "role": "assistant",
                "content": [{"type": "text", "text": "ünïcode ☃"}],
                "metadata": {"model": "x", "n": 1.5},
            }
        ],
    )
    services.thread_state_set(thread=thread, state={"tasks": [["t1", {"done": False}]]})
    before_messages = api.get(url(thread, "messages")).json()
    before = Thread.objects.get(pk=thread.pk)
    flushed(api, thread)

    # when
    response = api.post(url(thread, "hydrate"))

    # then
    assert response.status_code == 200
    assert response.json()["tier"] == "hot"
    assert api.get(url(thread, "messages")).json() == before_messages
    after = Thread.objects.get(pk=thread.pk)
    for field in ("last_seq", "message_count", "token_estimate", "history_version", "state"):
        assert getattr(after, field) == getattr(before, field), field
    # and the next append continues after the last seq
    assert add(after, "e").messages == [{"id": "e", "seq": 5}]


def test_hydrate_is_idempotent(api, thread, s3):
    flushed(api, thread, "a")

    first = api.post(url(thread, "hydrate"))
    second = api.post(url(thread, "hydrate"))

    assert first.status_code == second.status_code == 200
    assert second.json()["tier"] == "hot"
    assert rows(thread) == [("a", 1)]
    assert hydrations(thread) == 1


def test_hydrate_seeds_the_cache_so_the_next_read_is_a_hit(
    api, thread, s3, django_capture_on_commit_callbacks
):
    flushed(api, thread, "a", "b")

    with django_capture_on_commit_callbacks(execute=True):
        api.post(url(thread, "hydrate"))

    meta, messages, _ = hotcache.keys(thread.id)
    redis = get_redis_connection("default")
    assert int(redis.hget(meta, "hv")) == Thread.objects.get(pk=thread.pk).history_version
    assert redis.zcard(messages) == 2
    assert staging_keys(thread) == []  # renamed into place


def staging_keys(thread) -> list[bytes]:
    redis = get_redis_connection("default")
    return list(redis.scan_iter(match=f"tl:{{{thread.id}}}:staging:*"))


def test_a_hydrate_that_fails_in_its_transaction_leaves_the_thread_cold_and_no_cache(
    api, thread, s3, monkeypatch
):
    cold_thread = flushed(api, thread, "a", "b")

    def broken(thread_id, rows):
        raise RuntimeError("the COPY failed")

    monkeypatch.setattr(tiers, "insert_messages", broken)
    with pytest.raises(RuntimeError):
        tiers.thread_hydrate(thread=cold_thread)

    assert Thread.objects.get(pk=thread.pk).tier == "cold"
    assert rows(thread) == []
    assert staging_keys(thread) == []
    meta, messages, _ = hotcache.keys(thread.id)
    assert not get_redis_connection("default").exists(meta, messages)


def test_a_read_of_a_thread_flushed_since_it_was_loaded_hydrates_and_answers_every_message(
    api, thread, s3, settings
):
    # given: the thread loaded hot (as a view loads it), then flushed by someone else
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    add(thread, "a", "b", "c")
    loaded = Thread.objects.get(pk=thread.pk)
    tiers.thread_flush(thread=Thread.objects.get(pk=thread.pk))
    assert rows(thread) == []

    # when: the page is read with the instance loaded before the flush
    members, next_seq = pages.messages_page_json(thread=loaded, after_seq=0, limit=2)

    # then: the row read with the page said cold, so it hydrated and read again
    assert [json.loads(m)["id"] for m in members] == ["a", "b"]
    assert next_seq == 2
    assert Thread.objects.get(pk=thread.pk).tier == "hot"
    assert hydrations(thread) == 1
    # and a page past the end is empty, with no cursor
    assert pages.messages_page_json(thread=loaded, after_seq=3, limit=2) == ([], None)


def test_a_read_of_a_thread_deleted_since_it_was_loaded_is_not_found(thread, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    add(thread, "a")
    loaded = Thread.objects.get(pk=thread.pk)
    Thread.objects.filter(pk=thread.pk).delete()
    with pytest.raises(NotFound):
        pages.messages_page_json(thread=loaded, after_seq=0, limit=10)


def test_dedup_survives_flush_and_hydrate(api, thread, s3):
    # given
    flushed(api, thread, "a", "b")

    # when the same id is appended to the cold thread
    response = api.post(
        url(thread, "messages"), {"messages": [{"id": "a", "role": "user", "content": "again"}]}
    )

    # then it is a duplicate, found in the restored rows
    assert response.status_code == 200
    assert response.json()["duplicates"] == 1
    assert response.json()["messages"] == [{"id": "a", "seq": 1}]
    assert rows(thread) == [("a", 1), ("b", 2)]


@pytest.mark.parametrize(
    "write",
    [
        lambda t: history.messages_append(
            thread=t, messages=[{"id": "new", "role": "user", "content": "x"}]
        ),
        lambda t: history.messages_truncate(thread=t, from_id="b"),
        lambda t: history.messages_replace(
            thread=t, messages=[{"id": "r", "role": "user", "content": "x"}]
        ),
        lambda t: services.thread_state_set(thread=t, state={"s": 1}),
        lambda t: services.thread_fork(thread=t),
    ],
    ids=["append", "truncate", "replace", "state", "fork"],
)
def test_every_write_to_a_cold_thread_hydrates_it_first(api, thread, s3, write):
    cold_thread = flushed(api, thread, "a", "b")

    result = write(cold_thread)

    assert Thread.objects.get(pk=thread.pk).tier == "hot"
    assert hydrations(thread) == 1
    if isinstance(result, Thread) and result.pk != thread.pk:  # the fork copied the history
        assert rows(result) == [("a", 1), ("b", 2)]


def test_a_corrupt_object_is_503_and_leaves_object_and_thread_as_they_were(api, thread, s3):
    # given
    flushed(api, thread, "a")
    overwrite(s3, thread, b"\x1f\x8b not really gzip")

    # when
    details = assert_error(api.post(url(thread, "hydrate")), 503, "cold_snapshot_corrupt")

    # then
    assert details["reason"] == "not_gzip_json"
    assert Thread.objects.get(pk=thread.pk).tier == "cold"
    assert object_bytes(s3, thread) == b"\x1f\x8b not really gzip"
    assert rows(thread) == []
    # a read is refused the same way, never a 500 or an empty page
    assert_error(api.get(url(thread, "messages")), 503, "cold_snapshot_corrupt")


def test_a_snapshot_whose_checksum_does_not_match_is_corrupt(api, thread, s3):
    flushed(api, thread, "a", "b")
    snapshot = cold.gunzip_json(object_bytes(s3, thread))
    snapshot["messages"][1] = snapshot["messages"][1].replace("text b", "forged")
    tampered = cold.gzip_json(snapshot)
    overwrite(s3, thread, tampered)

    details = assert_error(api.post(url(thread, "hydrate")), 503, "cold_snapshot_corrupt")

    assert details["reason"] == "checksum_mismatch"
    assert Thread.objects.get(pk=thread.pk).tier == "cold"
    assert object_bytes(s3, thread) == tampered


def test_a_snapshot_of_another_version_is_refused(api, thread, s3):
    """An older body that landed over a newer one must not be restored as if current."""
    flushed(api, thread, "a")
    old = object_bytes(s3, thread)
    api.post(url(thread, "hydrate"))
    flushed(api, thread, "b")
    overwrite(s3, thread, old)

    details = assert_error(api.post(url(thread, "hydrate")), 503, "cold_snapshot_corrupt")

    assert details["reason"] == "stale"


def test_a_missing_object_is_503_and_the_thread_stays_cold(api, thread, s3):
    flushed(api, thread, "a")
    s3.client().delete_object(Bucket=s3.bucket, Key=snapshot.snapshot_key(thread.id))

    details = assert_error(api.post(url(thread, "hydrate")), 503, "cold_snapshot_corrupt")

    assert details["reason"] == "missing"
    assert Thread.objects.get(pk=thread.pk).tier == "cold"


def test_hydrate_while_the_store_is_down_is_503_and_works_once_it_is_back(api, thread, s3):
    flushed(api, thread, "a")
    body = object_bytes(s3, thread)
    bucket = s3.bucket
    s3.stop()
    try:
        assert_error(api.post(url(thread, "hydrate")), 503, "cold_storage_unavailable")
        assert Thread.objects.get(pk=thread.pk).tier == "cold"
    finally:
        s3.start()
        s3.create_bucket(bucket)
    overwrite(s3, thread, body)  # moto forgets everything on restart

    assert api.post(url(thread, "hydrate")).json()["tier"] == "hot"
    assert rows(thread) == [("a", 1)]


def zeitlich_snapshot(messages: list[dict], dedup_ids: list[str], state=None) -> bytes:
    body = {"v": 1, "messages": [json.dumps(m) for m in messages], "state": state}
    body["dedupIds"] = dedup_ids
    return gzip.compress(json.dumps(body).encode())


def test_a_plain_zeitlich_v1_snapshot_hydrates(api, thread, s3):
    # given a cold thread whose object is a snapshot zeitlich wrote
    flushed(api, thread, "old")
    state = {"tasks": [["t1", {"status": "pending"}]], "custom": {}}
    overwrite(
        s3,
        thread,
        zeitlich_snapshot(
            [
                {"id": "z1", "role": "user", "content": "hello"},
                {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
                {"type": "human", "data": {"content": "langchain style"}},
                {"something": "else"},
            ],
            ["z1", "from-dedup", "d3", "d4"],
            state,
        ),
    )

    # when
    response = api.get(url(thread, "messages"))

    # then ids come from the message, else from dedupIds; messages that carry no seq get
    # seqs after the thread's last_seq (1, "old"): seq 1 is never given a second time
    assert response.status_code == 200
    messages = response.json()["results"]
    assert [(m["id"], m["seq"], m["role"]) for m in messages] == [
        ("z1", 2, "user"),
        ("from-dedup", 3, "assistant"),
        ("d3", 4, "user"),
        ("d4", 5, "user"),
    ]
    assert messages[1]["content"] == [{"type": "text", "text": "hi"}]
    assert messages[2]["content"] == "langchain style"
    assert json.loads(messages[3]["metadata"]["zeitlich_raw"]) == {"something": "else"}
    row = Thread.objects.get(pk=thread.pk)
    assert (row.tier, row.message_count, row.state) == ("hot", 4, state)
    assert hydrations(thread) == 1
    # and dedup works on the imported ids
    again = api.post(
        url(thread, "messages"), {"messages": [{"id": "z1", "role": "user", "content": "x"}]}
    )
    assert again.json()["duplicates"] == 1


def test_a_zeitlich_snapshot_without_ids_gets_generated_ones(api, thread, s3):
    flushed(api, thread, "old")
    overwrite(s3, thread, zeitlich_snapshot([{"role": "user", "content": "x"}] * 2, ["a:b"]))

    assert api.post(url(thread, "hydrate")).status_code == 200

    ids = [mid for mid, _ in rows(thread)]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(mid.startswith("msg_") for mid in ids)


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_reads_of_a_cold_thread_restore_it_once(api, thread, s3):
    # given
    add(thread, *[f"m{i}" for i in range(50)])
    api.post(url(thread, "flush"))
    barrier = threading.Barrier(8)
    responses = []

    def read():
        try:
            barrier.wait()
            responses.append(api.get(url(thread, "messages"), {"limit": 1000}))
        finally:
            connection.close()

    # when
    readers = [threading.Thread(target=read) for _ in range(8)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60)

    # then
    assert [r.status_code for r in responses] == [200] * 8
    assert all(len(r.json()["results"]) == 50 for r in responses)
    assert hydrations(thread) == 1
    assert Message.objects.filter(thread_id=thread.pk).count() == 50
    assert Thread.objects.get(pk=thread.pk).tier == "hot"


def test_the_hydrate_thread_command(api, thread, s3):
    flushed(api, thread, "a", "b")
    out = StringIO()

    call_command("hydrate_thread", thread.id, stdout=out)
    call_command("hydrate_thread", thread.id, stdout=out)

    assert out.getvalue().splitlines() == [
        f"{thread.id} hydrated: 2 messages, tier hot.",
        f"{thread.id} is already hot (2 messages).",
    ]
    with pytest.raises(CommandError, match="No thread"):
        call_command("hydrate_thread", "thd_missing")


def test_a_turn_start_on_a_cold_thread_hydrates_it_first(api, thread, s3):
    flushed(api, thread, "a")
    session = api.post(
        "/api/v1/sessions/", {"thread": thread.id, "actor": {"kind": "agent", "id": "bot"}}
    )
    assert session.status_code == 201, session.content

    started = api.post(f"/api/v1/sessions/{session.json()['id']}/turns/start")

    assert started.status_code == 200, started.content
    assert Thread.objects.get(pk=thread.pk).tier == "hot"
    assert rows(thread) == [("a", 1)]


def test_the_messages_checksum_is_that_of_the_standard_librarys_canonical_json():
    for messages in (
        ["plain", 'quote " backslash \\ newline \n tab \t nul \x00', "é ✓ 😀 \u2028 \x7f"],
        [1, 2.5e16, None],  # not a list of strings: the standard library's bytes as well
    ):
        canonical = json.dumps(messages, separators=(",", ":"), ensure_ascii=False)
        expected = hashlib.sha256(canonical.encode()).hexdigest()
        assert snapshot.messages_sha256(messages) == expected
