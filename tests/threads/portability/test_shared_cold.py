"""A cold object shared with zeitlich, written the way zeitlich writes it (encode: `{v: 1,
messages, state, dedupIds}` gzipped to the same key; its hydrate loads the list as is): seqs
never reused across its writes, and its writes never silently overwritten."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import assert_error
from tests.factories import ProjectFactory
from tests.threads.portability import fixtures
from tests.threads.portability.helpers import messages_of
from threads import history
from threads.models import Thread
from threads.storage import cold, snapshot
from threads.storage.models import ColdObject

pytestmark = pytest.mark.django_db


def url(thread_id: str, suffix: str = "") -> str:
    return f"/api/v1/threads/{thread_id}/{suffix}"


def say(*ids) -> list[dict]:
    return [{"id": i, "role": "user", "content": f"text {i}"} for i in ids]


class Zeitlich:
    """What zeitlich 0.2.46's thread manager does to the object, against the same bucket."""

    def __init__(self, s3, thread_id: str) -> None:
        self.s3, self.key = s3, snapshot.snapshot_key(thread_id)

    def load(self) -> dict:
        body = self.s3.client().get_object(Bucket=self.s3.bucket, Key=self.key)["Body"].read()
        return json.loads(gzip.decompress(body))

    def append_and_flush(self, *stored: dict) -> bytes:
        """hydrate (the list as stored), append raw JSON strings, flush (encode + put)."""
        snap = self.load()
        messages = snap["messages"] + [json.dumps(m) for m in stored]
        # the batch's dedup key: the adapters' idOf joined by ":" (LangChain: data.id)
        dedup = snap.get("dedupIds", []) + [
            ":".join(m.get("id") or m["data"]["id"] for m in stored)
        ]
        body = gzip.compress(
            json.dumps(
                {"v": 1, "messages": messages, "state": snap.get("state"), "dedupIds": dedup}
            ).encode()
        )
        self.s3.client().put_object(Bucket=self.s3.bucket, Key=self.key, Body=body)
        return body

    def object_bytes(self) -> bytes:
        return self.s3.client().get_object(Bucket=self.s3.bucket, Key=self.key)["Body"].read()


def test_the_round_trip_through_zeitlich_reuses_no_seq(api, thread, s3):
    # given a truncation and an append that leave seqs 1 and 4, and a flush
    history.messages_append(thread=thread, messages=say("a", "b", "c"))
    history.messages_truncate(thread=Thread.objects.get(pk=thread.pk), from_id="b")
    history.messages_append(thread=Thread.objects.get(pk=thread.pk), messages=say("d"))
    assert [(m["id"], m["seq"]) for m in messages_of(api, thread.id)] == [("a", 1), ("d", 4)]
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"

    # when zeitlich appends and flushes back, and a reader pages after seq 4
    Zeitlich(s3, thread.id).append_and_flush(fixtures.PLAIN)
    after = messages_of(api, thread.id, after_seq=4)

    # then our messages keep their seqs and zeitlich's lands after last_seq
    assert [(m["id"], m["seq"]) for m in after] == [("z-p1", 5)]
    assert [(m["id"], m["seq"]) for m in messages_of(api, thread.id)] == [
        ("a", 1),
        ("d", 4),
        ("z-p1", 5),
    ]
    row = Thread.objects.get(pk=thread.pk)
    assert (row.tier, row.last_seq, row.message_count) == ("hot", 5, 3)
    # and the next append continues after it, and the flush back is ours to make
    appended = api.post(url(thread.id, "messages"), {"messages": say("f")}).json()
    assert appended["messages"] == [{"id": "f", "seq": 6}]
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"


def test_a_zeitlich_flush_while_we_are_hot_is_never_overwritten(api, thread, s3):
    # given a thread flushed, hydrated again (hot), and then flushed by zeitlich
    history.messages_append(thread=thread, messages=say("a"))
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"
    history.messages_append(thread=Thread.objects.get(pk=thread.pk), messages=say("b"))
    zeitlich = Zeitlich(s3, thread.id)
    theirs = zeitlich.append_and_flush(fixtures.PLAIN)

    # when Threadline flushes
    details = assert_error(api.post(url(thread.id, "flush")), 409, "cold_object_changed")

    # then zeitlich's object is untouched and we keep every row
    assert details["key"] == zeitlich.key
    assert zeitlich.object_bytes() == theirs
    assert [m["id"] for m in messages_of(api, thread.id)] == ["a", "b"]
    assert Thread.objects.get(pk=thread.pk).tier == "hot"
    # and the operator may choose to replace it
    assert api.post(url(thread.id, "flush") + "?overwrite=true").json()["tier"] == "cold"
    assert [json.loads(m)["id"] for m in zeitlich.load()["messages"]] == ["a", "b"]
    assert_error(api.post(url(thread.id, "flush") + "?overwrite=maybe"), 400, "validation_error")


@pytest.fixture(params=["s3-read-before-write", "filesystem"])
def unconditional_store(request, settings, tmp_path, s3):
    """Stores where the check is a read before the write."""
    settings.COLD_CONDITIONAL_WRITES = False
    if request.param == "filesystem":
        settings.STORAGES = {
            **settings.STORAGES,
            "cold": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(tmp_path), "allow_overwrite": True},
            },
        }
    return request.param


def test_without_conditional_writes_a_checked_read_refuses_too(
    api, thread, unconditional_store, settings, tmp_path
):
    history.messages_append(thread=thread, messages=say("a"))
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"
    history.messages_append(thread=Thread.objects.get(pk=thread.pk), messages=say("b"))
    key = snapshot.snapshot_key(thread.id)
    foreign = fixtures.gz(fixtures.zeitlich_v1())
    cold.put(key, foreign)  # another writer

    assert_error(api.post(url(thread.id, "flush")), 409, "cold_object_changed")
    assert cold.get(key) == foreign
    assert api.post(url(thread.id, "flush") + "?overwrite=true").json()["tier"] == "cold"


def test_an_object_of_ours_without_a_recorded_tag_is_still_ours(api, thread, s3):
    # given a thread flushed before tags were recorded (its record gone), now hot again
    history.messages_append(thread=thread, messages=say("a"))
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"
    history.messages_append(thread=Thread.objects.get(pk=thread.pk), messages=say("b"))
    ColdObject.objects.filter(thread_id=thread.pk).delete()

    # when / then: our own snapshot of this thread is replaced without a fuss
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"
    assert ColdObject.objects.get(thread_id=thread.pk).key == snapshot.snapshot_key(thread.id)


def test_a_zeitlich_thread_we_do_not_know_imports_from_its_key_and_stays_shared(api, project, s3):
    # given a thread only zeitlich knows, in the shared bucket
    key = snapshot.snapshot_key("thd_zeit1")
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=fixtures.gz(fixtures.zeitlich_v1()))

    # when
    response = api.post(f"/api/v1/threads/import?project={project.id}&cold_key={key}")

    # then it keeps its id, so both tools go on sharing the object
    assert response.status_code == 201, response.content
    assert response.json()["thread"]["id"] == "thd_zeit1"
    assert len(messages_of(api, "thd_zeit1")) == 8
    again = api.post(f"/api/v1/threads/import?project={project.id}&cold_key={key}")
    assert (again.status_code, again.json()["created"]) == (200, False)
    # and our flush writes on top of exactly the object we imported
    assert api.post(url("thd_zeit1", "flush")).json()["tier"] == "cold"
    # while a zeitlich write after our hydrate is refused
    assert api.post(url("thd_zeit1", "hydrate")).json()["tier"] == "hot"
    Zeitlich(s3, "thd_zeit1").append_and_flush({"id": "z-9", "role": "user", "content": "hi"})
    assert_error(api.post(url("thd_zeit1", "flush")), 409, "cold_object_changed")


def test_a_cold_key_import_cannot_reach_another_tenants_thread_or_leave_the_prefix(
    api, outsider, thread, s3
):
    history.messages_append(thread=thread, messages=say("a"))
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"
    key = snapshot.snapshot_key(thread.id)
    theirs = ProjectFactory(tenant=outsider.tenant)
    response = outsider.post(f"/api/v1/threads/import?project={theirs.id}&cold_key={key}")
    assert_error(response, 404, "not_found")
    response = outsider.post(f"/api/v1/threads/import?project={theirs.id}&cold_key=secret/x.json")
    assert_error(response, 400, "validation_error")
    missing = snapshot.snapshot_key("thd_nothere")
    response = outsider.post(f"/api/v1/threads/import?project={theirs.id}&cold_key={missing}")
    assert_error(response, 404, "not_found")


def test_zeitlich_adapter_messages_hydrate_mapped_not_as_raw_json(api, thread, s3):
    # given a cold thread to which zeitlich's Anthropic and LangChain adapters appended
    history.messages_append(thread=thread, messages=say("a"))
    assert api.post(url(thread.id, "flush")).json()["tier"] == "cold"
    Zeitlich(s3, thread.id).append_and_flush(
        fixtures.ANTHROPIC_SYSTEM, fixtures.ANTHROPIC_ASSISTANT, fixtures.LANGCHAIN_AI
    )

    # when
    messages = messages_of(api, thread.id)

    # then
    assert [(m["id"], m["seq"], m["role"]) for m in messages] == [
        ("a", 1, "user"),
        ("z-sys", 2, "system"),
        ("z-a1", 3, "assistant"),
        ("lc-a1", 4, "assistant"),
    ]
    assert messages[2]["content"] == fixtures.ANTHROPIC_ASSISTANT["message"]["content"]
    assert messages[3]["content"] == [
        {"type": "tool_use", "id": "call_9", "name": "weather", "input": {"city": "Bergen"}}
    ]
    assert "zeitlich_raw" not in messages[1]["metadata"]
