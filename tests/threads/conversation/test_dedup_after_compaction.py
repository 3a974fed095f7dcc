"""Appends stay idempotent across compactions (DESIGN.md invariant 2): the id of a message a
compaction summarized away is still a duplicate — through forks, flush → hydrate cycles and
batches — and answers with the seq it had (threads.models.CompactedMessageId)."""

from __future__ import annotations

import gzip
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.threads.conversation.helpers import say
from threads import history
from threads.models import CompactedMessageId, Compaction, Message, Thread
from threads.storage import cold
from threads.storage.snapshot import snapshot_key

pytestmark = pytest.mark.django_db

# say(15) compacted with keep_last 3: m0..m11 (seqs 1..12) are summarized away; the history
# is the summary (seq 16) and m12..m14 (seqs 17..19).
COMPACTED = [f"m{i}" for i in range(12)]
LIVE_SEQ = {"m12": 17, "m13": 18, "m14": 19}
LAST_SEQ = 19


def url(thread, suffix: str = "") -> str:
    return f"/api/v1/threads/{thread.id}/{suffix}"


def msg(message_id: str, content: str = "again") -> dict:
    return {"id": message_id, "role": "user", "content": content}


def post(api, thread, *messages):
    return api.post(url(thread, "messages"), {"messages": list(messages)})


def listed(api, thread) -> list[dict]:
    """The history as {id, seq}, from the database (the system of record: the tests run the
    hot cache's on-commit maintenance only where they capture it)."""
    rows = Message.objects.filter(thread_id=thread.pk).order_by("seq")
    return [{"id": mid, "seq": seq} for mid, seq in rows.values_list("message_id", "seq")]


def compact(api, thread, capture, keep_last: int = 3) -> Compaction:
    with capture(execute=True):  # the task runs eagerly on commit
        response = api.post(url(thread, "compact"), {"keep_last": keep_last})
    assert response.status_code == 202, response.content
    compaction = Compaction.objects.get(pk=response.json()["id"])
    assert compaction.status == "succeeded", compaction.error
    return compaction


@pytest.fixture
def compacted(api, thread, s3, django_capture_on_commit_callbacks) -> Thread:
    """m0..m14 appended through the API, then compacted with keep_last 3."""
    assert post(api, thread, *say(15)).status_code == 201
    compact(api, thread, django_capture_on_commit_callbacks)
    thread.refresh_from_db()
    assert [m["id"] for m in listed(api, thread)][1:] == ["m12", "m13", "m14"]
    assert thread.last_seq == LAST_SEQ
    return thread


def test_the_compaction_records_the_ids_it_summarized_away_with_their_seqs(compacted):
    (compaction,) = Compaction.objects.filter(thread=compacted)
    recorded = list(
        CompactedMessageId.objects.filter(thread=compacted)
        .order_by("seq")
        .values_list("message_id", "seq", "compaction_id")
    )
    assert recorded == [(f"m{i}", i + 1, compaction.pk) for i in range(12)]
    assert not Message.objects.filter(thread=compacted, message_id__in=COMPACTED).exists()


def test_reappending_a_compacted_id_is_a_duplicate_with_its_original_seq(api, compacted):
    before = listed(api, compacted)
    version = compacted.history_version

    response = post(api, compacted, msg("m0"), msg("m7"))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "appended": 0,
        "duplicates": 2,
        "messages": [{"id": "m0", "seq": 1}, {"id": "m7", "seq": 8}],
        "last_seq": LAST_SEQ,
    }
    assert listed(api, compacted) == before
    compacted.refresh_from_db()
    assert (compacted.message_count, compacted.last_seq) == (4, LAST_SEQ)
    assert compacted.history_version == version


def test_a_batch_mixing_compacted_live_and_new_ids(api, compacted):
    response = post(api, compacted, msg("m3"), msg("m13"), msg("n1"), msg("m0"), msg("n2"))

    assert response.status_code == 201, response.content
    assert response.json() == {
        "appended": 2,
        "duplicates": 3,
        "messages": [
            {"id": "m3", "seq": 4},
            {"id": "m13", "seq": LIVE_SEQ["m13"]},
            {"id": "n1", "seq": LAST_SEQ + 1},
            {"id": "m0", "seq": 1},
            {"id": "n2", "seq": LAST_SEQ + 2},
        ],
        "last_seq": LAST_SEQ + 2,
    }
    ids = [m["id"] for m in listed(api, compacted)]
    assert ids[1:] == ["m12", "m13", "m14", "n1", "n2"]
    assert len(ids) == len(set(ids))


def test_the_duplicate_check_reads_live_and_compacted_ids_in_one_query(compacted):
    with CaptureQueriesContext(connection) as queries:
        history.messages_append(thread=compacted, messages=[msg("m0"), msg("m13"), msg("n1")])
    compacted_table = CompactedMessageId._meta.db_table
    touching = [q["sql"] for q in queries.captured_queries if compacted_table in q["sql"]]
    assert len(touching) == 1
    assert "UNION ALL" in touching[0] and Message._meta.db_table in touching[0]


def test_ids_of_every_compaction_stay_known(api, compacted, django_capture_on_commit_callbacks):
    # given: the first summary and m12..m14 summarized away by a second compaction
    first_summary = listed(api, compacted)[0]
    assert post(api, compacted, *say(5, start=100, prefix="n")).status_code == 201
    compact(api, compacted, django_capture_on_commit_callbacks, keep_last=2)
    # when / then: ids of both compactions are duplicates with the seqs they had
    response = post(api, compacted, msg("m0"), msg(first_summary["id"]), msg("m14"))
    assert response.status_code == 200, response.content
    assert response.json()["messages"] == [
        {"id": "m0", "seq": 1},
        {"id": first_summary["id"], "seq": first_summary["seq"]},
        {"id": "m14", "seq": LIVE_SEQ["m14"]},
    ]
    assert CompactedMessageId.objects.filter(thread=compacted).count() == 12 + 7


def test_a_fork_of_a_compacted_thread_dedups_the_same(api, compacted):
    # given
    response = api.post(url(compacted, "fork"), {})
    assert response.status_code == 201, response.content
    fork = Thread.objects.get(pk=response.json()["id"])
    # when
    response = post(api, fork, msg("m0"), msg("m13"), msg("n1"))
    # then
    assert response.status_code == 201, response.content
    assert response.json()["messages"] == [
        {"id": "m0", "seq": 1},
        {"id": "m13", "seq": LIVE_SEQ["m13"]},
        {"id": "n1", "seq": LAST_SEQ + 1},
    ]
    assert CompactedMessageId.objects.filter(thread=fork).count() == len(COMPACTED)
    # and the source is untouched by the fork's append
    assert post(api, compacted, msg("n1")).status_code == 201


def test_a_fork_keeps_its_compacted_ids_when_the_source_is_deleted(api, compacted):
    fork_id = api.post(url(compacted, "fork"), {}).json()["id"]
    fork = Thread.objects.get(pk=fork_id)

    assert api.delete(url(compacted)).status_code == 204

    # the source's ids went with it (CASCADE); the fork's stay, without their compaction
    assert not CompactedMessageId.objects.filter(thread_id=compacted.pk).exists()
    assert list(
        CompactedMessageId.objects.filter(thread=fork).values_list("compaction", flat=True)
    ) == [None] * len(COMPACTED)
    response = post(api, fork, msg("m0"))
    assert response.status_code == 200, response.content
    assert response.json()["messages"] == [{"id": "m0", "seq": 1}]


def test_a_compacted_thread_still_dedups_after_flush_and_hydrate(api, compacted, s3):
    before = listed(api, compacted)
    # given: flushed; the snapshot's dedupIds are its messages' ids, aligned with them
    assert api.post(url(compacted, "flush")).json()["tier"] == "cold"
    snapshot = cold.gunzip_json(cold.get(snapshot_key(compacted.id)))
    assert snapshot["dedupIds"] == [m["id"] for m in before]
    assert CompactedMessageId.objects.filter(thread=compacted).count() == len(COMPACTED)

    # when: a compacted id is appended to the cold thread (hydrated transparently)
    response = post(api, compacted, msg("m0"), msg("m11"))

    # then
    assert response.status_code == 200, response.content
    assert response.json()["messages"] == [{"id": "m0", "seq": 1}, {"id": "m11", "seq": 12}]
    compacted.refresh_from_db()
    assert compacted.tier == "hot"
    assert listed(api, compacted) == before

    # and again after an explicit flush → hydrate cycle
    assert api.post(url(compacted, "flush")).json()["tier"] == "cold"
    assert api.post(url(compacted, "hydrate")).json()["tier"] == "hot"
    assert post(api, compacted, msg("m5")).json()["messages"] == [{"id": "m5", "seq": 6}]
    assert listed(api, compacted) == before


def test_a_plain_zeitlich_snapshot_still_hydrates_a_compacted_thread(api, compacted, s3):
    # given: the cold object of the compacted thread is one zeitlich wrote
    assert api.post(url(compacted, "flush")).json()["tier"] == "cold"
    body = {
        "v": 1,
        "messages": [json.dumps({"id": "z1", "role": "user", "content": "hello"})],
        "state": None,
        "dedupIds": ["z1"],
    }
    s3.client().put_object(
        Bucket=s3.bucket,
        Key=snapshot_key(compacted.id),
        Body=gzip.compress(json.dumps(body).encode()),
    )
    # when
    assert api.post(url(compacted, "hydrate")).json()["tier"] == "hot"
    # then: its messages are the history, and the compacted ids are still known
    assert [m["id"] for m in listed(api, compacted)] == ["z1"]
    response = post(api, compacted, msg("z1"), msg("m0"))
    assert response.status_code == 200, response.content
    # (z1 carries no seq: it gets one after last_seq, never m0's seq 1 a second time)
    assert response.json()["messages"] == [
        {"id": "z1", "seq": LAST_SEQ + 1},
        {"id": "m0", "seq": 1},
    ]


def test_a_replacement_forgets_the_compacted_ids(api, compacted):
    # given: the whole history replaced, the new one reusing a compacted id
    response = api.put(url(compacted, "messages"), {"messages": [msg("r1"), msg("m1", "new")]})
    assert response.status_code == 200, response.content
    assert not CompactedMessageId.objects.filter(thread=compacted).exists()
    # when
    response = post(api, compacted, msg("m0"), msg("m1"), msg("r1"))
    # then: m0 belonged to the replaced history (new now); m1 and r1 are the new history's
    assert response.status_code == 201, response.content
    assert response.json()["messages"] == [
        {"id": "m0", "seq": LAST_SEQ + 3},
        {"id": "m1", "seq": LAST_SEQ + 2},
        {"id": "r1", "seq": LAST_SEQ + 1},
    ]
    assert [m["id"] for m in listed(api, compacted)] == ["r1", "m1", "m0"]


def test_a_truncation_does_not_resurrect_compacted_ids(api, compacted):
    summary = listed(api, compacted)[0]
    # a compacted id is not in the history: nothing to truncate
    response = api.post(url(compacted, "messages/truncate"), {"from_id": "m0"})
    assert response.json() == {"removed": 0}
    # truncating live messages forgets them, and only them
    response = api.post(url(compacted, "messages/truncate"), {"from_id": "m13"})
    assert response.json() == {"removed": 2}
    assert CompactedMessageId.objects.filter(thread=compacted).count() == len(COMPACTED)

    response = post(api, compacted, msg("m0"), msg("m13"))

    assert response.status_code == 201, response.content
    assert response.json()["messages"] == [
        {"id": "m0", "seq": 1},
        {"id": "m13", "seq": LAST_SEQ + 1},
    ]
    assert [m["id"] for m in listed(api, compacted)] == [summary["id"], "m12", "m13"]
