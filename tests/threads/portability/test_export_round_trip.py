"""GET /threads/{id}/export, and export → import into another project and another tenant:
identical messages, seqs, state and dedup behaviour."""

from __future__ import annotations

import gzip
import json
import secrets

import pytest

from tests.conftest import assert_error
from tests.factories import ProjectFactory
from tests.threads.portability.helpers import (
    export_document,
    messages_of,
    post_document,
    shape,
)
from threads import history
from threads.models import Compaction, Event, Thread
from threads.portability import document, export
from threads.portability.export import ExportInterrupted

pytestmark = pytest.mark.django_db


def url(thread_id: str, suffix: str = "") -> str:
    return f"/api/v1/threads/{thread_id}/{suffix}"


def say(*ids, size: int = 20) -> list[dict]:
    return [{"id": i, "role": "user", "content": f"{i} " + "x" * size} for i in ids]


@pytest.fixture
def rich_thread(api, thread, s3, django_capture_on_commit_callbacks):
    """Fifteen messages, a compaction (keep_last 3), a truncation of the last one, state."""
    assert api.post(url(thread.id, "messages"), {"messages": say(*[f"m{i}" for i in range(15)])})
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url(thread.id, "compact"), {"keep_last": 3})
    assert Compaction.objects.get(pk=response.json()["id"]).status == "succeeded"
    assert api.post(url(thread.id, "messages/truncate"), {"from_id": "m14"}).status_code == 200
    assert api.put(url(thread.id, "state"), {"state": {"plan": ["a", "b"]}}).status_code == 200
    return Thread.objects.get(pk=thread.pk)


def test_the_export_document_holds_the_thread_its_history_and_a_checksum(api, rich_thread):
    # when
    _, doc = export_document(api, rich_thread.id, originals="true")

    # then
    assert (doc["format"], doc["version"]) == ("threadline.thread", 1)
    assert list(doc)[:2] == ["format", "version"]
    assert list(doc)[-3:] == ["messages", "message_count", "sha256"]
    assert doc["thread"]["id"] == rich_thread.id
    # m0..m14 are seqs 1..15, the summary 16, the kept m12..m14 17..19; m14 truncated
    assert doc["thread"]["last_seq"] == rich_thread.last_seq == 19
    assert doc["state"] == {"plan": ["a", "b"]}
    assert shape(doc["messages"]) == shape(messages_of(api, rich_thread.id))
    assert [m["seq"] for m in doc["messages"]] == [16, 17, 18]
    assert [c["id"] for c in doc["compacted_ids"]] == [f"m{i}" for i in range(12)]
    (compaction,) = doc["compactions"]
    assert compaction["status"] == "succeeded" and compaction["cut_seq"] == 12
    assert [m["id"] for m in compaction["originals"]] == [f"m{i}" for i in range(12)]
    digest = document.MessagesDigest()
    for message in doc["messages"]:
        digest.add(document.canonical(message))
    assert doc["sha256"] == digest.hexdigest() and doc["message_count"] == 3


def test_without_originals_the_compactions_are_records_only(api, rich_thread):
    _, doc = export_document(api, rich_thread.id)
    assert "originals" not in doc["compactions"][0]


def test_export_then_import_elsewhere_gives_the_same_thread(
    api, outsider, rich_thread, other_project
):
    body, doc = export_document(api, rich_thread.id, originals="true")
    their_project = ProjectFactory(tenant=outsider.tenant)
    for caller, project in ((api, other_project), (outsider, their_project)):
        # when
        response = post_document(caller, project, doc, gzipped=True)

        # then
        assert response.status_code == 201, response.content
        copy = response.json()["thread"]
        assert copy["id"] != rich_thread.id and copy["project"] == project.id
        theirs, ours = messages_of(caller, copy["id"]), messages_of(api, rich_thread.id)
        assert theirs == ours  # ids, seqs, content, metadata, token estimates, timestamps
        assert (copy["last_seq"], copy["message_count"], copy["title"]) == (19, 3, "First thread")
        assert caller.get(url(copy["id"], "state")).json() == {"state": {"plan": ["a", "b"]}}
        # dedup: a compacted-away id and a live id are duplicates with their seqs
        again = caller.post(
            url(copy["id"], "messages"),
            {"messages": [{"id": "m3", "role": "user", "content": "x"}, *say("m12", "new")]},
        )
        assert again.status_code == 201
        assert again.json()["messages"] == [
            {"id": "m3", "seq": 4},
            {"id": "m12", "seq": 17},
            {"id": "new", "seq": 20},  # after last_seq 19: the truncated seq is not reused
        ]
        # the compaction came along, originals readable from the new archive
        (compaction,) = caller.get(url(copy["id"], "compactions")).json()["results"]
        originals = caller.get(url(copy["id"], f"compactions/{compaction['id']}/originals"))
        assert [m["id"] for m in originals.json()["results"]] == [f"m{i}" for i in range(12)]
    # and the source stays untouched
    assert messages_of(api, rich_thread.id)[-1]["id"] == "m13"


def test_a_cold_thread_exports_from_its_snapshot_without_hydrating(api, thread, s3):
    history.messages_append(thread=thread, messages=say("a", "b", "c"))
    _, hot = export_document(api, thread.id)
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"

    _, cold = export_document(api, thread.id)

    assert Thread.objects.get(pk=thread.pk).tier == "cold"
    assert not Event.objects.filter(thread_id=thread.id, kind="thread.hydrated").exists()
    assert cold["messages"] == hot["messages"] and cold["sha256"] == hot["sha256"]


def test_an_outsider_cannot_export_our_thread(thread, outsider):
    assert_error(outsider.get(url(thread.id, "export")), 404, "not_found")


def test_a_write_during_the_export_cuts_the_stream_before_its_checksum(thread):
    # given a thread of two batches, and an export that has started streaming
    messages = [
        {"id": f"m{i}", "role": "user", "content": secrets.token_hex(250)}  # incompressible
        for i in range(export.EXPORT_BATCH + 10)
    ]
    history.messages_append(thread=thread, messages=messages)
    stream = export.thread_export(thread=Thread.objects.get(pk=thread.pk)).stream
    first = next(stream)  # a chunk of the first batch: the second is not read yet

    # when a message is appended before the export has read everything
    history.messages_append(thread=thread, messages=say("late"))

    # then the stream fails instead of ending with a checksum
    with pytest.raises(ExportInterrupted):
        for _ in stream:
            pass
    assert first[:2] == b"\x1f\x8b"


def test_a_tampered_export_is_refused(api, thread, other_project):
    history.messages_append(thread=thread, messages=say("a", "b"))
    _, doc = export_document(api, thread.id)
    doc["messages"][1]["content"] = "changed"

    details = assert_error(post_document(api, other_project, doc), 400, "invalid_document")

    assert details["path"] == "$.sha256"


def test_an_export_is_a_gzip_stream(api, thread):
    history.messages_append(thread=thread, messages=say("a"))
    response = api.get(url(thread.id, "export"))
    assert response.streaming
    assert "attachment" in response["Content-Disposition"]
    assert json.loads(gzip.decompress(b"".join(response.streaming_content)))["message_count"] == 1
