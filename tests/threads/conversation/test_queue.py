"""The steering queue: enqueue, list, cancel, drain (atomic under concurrency), count."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tests.conftest import assert_error
from threads import services
from threads.conversation.queue import queue_count, queue_drain, queue_enqueue
from threads.models import QueuedMessage, Thread


def url(thread, suffix: str = "") -> str:
    return f"/api/v1/threads/{thread.id}/queue{suffix}"


def test_a_queued_message_is_listed_until_it_is_drained(api, thread):
    # when
    first = api.post(url(thread), {"content": "also run the linter"})
    second = api.post(url(thread), {"content": "and the tests"})
    # then
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["id"].startswith("que_") and body["queued_at"]
    assert body["status"] == "queued" and body["content"] == "also run the linter"
    listed = api.get(url(thread)).json()
    assert [item["id"] for item in listed["results"]] == [body["id"], second.json()["id"]]
    assert listed["next"] is None
    assert queue_count(thread=thread) == 2

    drained = api.post(url(thread, "/drain"))
    assert drained.status_code == 200, drained.content
    assert drained.json()["text"] == "also run the linter\n\nand the tests"
    assert [item["id"] for item in drained.json()["items"]] == [
        body["id"],
        second.json()["id"],
    ]
    assert all(item["status"] == "delivered" for item in drained.json()["items"])
    assert api.get(url(thread)).json()["results"] == []
    assert api.post(url(thread, "/drain")).json() == {"items": [], "text": ""}
    assert queue_count(thread=thread) == 0


def test_cancelling_is_204_also_when_the_item_is_already_gone(api, thread):
    item = api.post(url(thread), {"content": "stop"}).json()
    assert api.delete(url(thread, f"/{item['id']}")).status_code == 204
    assert QueuedMessage.objects.get(pk=item["id"]).status == "cancelled"
    assert api.delete(url(thread, f"/{item['id']}")).status_code == 204
    assert api.delete(url(thread, "/que_000000000000")).status_code == 204
    assert api.delete(url(thread, "/not-even-an-id")).status_code == 204
    assert api.post(url(thread, "/drain")).json()["items"] == []


def test_a_delivered_item_cannot_be_cancelled(api, thread):
    item = api.post(url(thread), {"content": "x"}).json()
    api.post(url(thread, "/drain"))
    api.delete(url(thread, f"/{item['id']}"))
    assert QueuedMessage.objects.get(pk=item["id"]).status == "delivered"


def test_the_queue_of_an_archived_thread_is_read_only(api, thread):
    item = queue_enqueue(thread=thread, content="x")
    services.thread_archive(thread=thread)
    assert_error(api.post(url(thread), {"content": "y"}), 409, "thread_archived")
    assert_error(api.post(url(thread, "/drain")), 409, "thread_archived")
    assert_error(api.delete(url(thread, f"/{item.id}")), 409, "thread_archived")
    assert api.get(url(thread)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": ""},
        {"content": "   \n"},
        {"content": None},
        {"content": 12},
        {"content": ["a"]},
        {"content": {"text": "a"}},
        {"content": "a", "priority": 1},
        [],
    ],
)
def test_a_bad_queue_body_is_a_400(api, thread, body):
    assert_error(api.post(url(thread), body), 400, "validation_error")


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": "x"}, {"cursor": "not-a-cursor"}])
def test_bad_list_parameters_are_a_400(api, thread, query):
    assert_error(api.get(url(thread), query), 400, "validation_error")


def test_an_id_that_cannot_be_one_is_not_found(api, thread):
    assert_error(api.delete(url(thread, "/a%00b")), 404, "not_found")


def test_another_tenants_queue_is_404(api, outsider, thread):
    item = queue_enqueue(thread=thread, content="mine")
    assert_error(outsider.get(url(thread)), 404, "not_found")
    assert_error(outsider.post(url(thread), {"content": "x"}), 404, "not_found")
    assert_error(outsider.post(url(thread, "/drain")), 404, "not_found")
    assert_error(outsider.delete(url(thread, f"/{item.id}")), 404, "not_found")
    assert QueuedMessage.objects.get(pk=item.id).status == "queued"


def test_the_queue_is_per_thread(api, thread, project):
    other = services.thread_create(tenant=api.tenant, project_id=project.id)
    item = queue_enqueue(thread=other, content="other")
    queue_enqueue(thread=thread, content="mine")
    api.delete(url(thread, f"/{item.id}"))  # another thread's item: left alone
    assert QueuedMessage.objects.get(pk=item.id).status == "queued"
    assert queue_drain(thread=thread).text == "mine"
    assert queue_count(thread=other) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_never_return_the_same_item(api, project):
    # given: 200 queued items
    thread = services.thread_create(tenant=api.tenant, project_id=project.id)
    QueuedMessage.objects.bulk_create(
        QueuedMessage(thread=thread, content=f"item {i}") for i in range(200)
    )
    results: list[list[str]] = []
    start = threading.Barrier(6)

    def drain_many():
        try:
            start.wait()
            for _ in range(5):
                fresh = Thread.objects.get(pk=thread.pk)
                results.append([item.pk for item in queue_drain(thread=fresh).items])
                queue_enqueue(thread=fresh, content="late")
        finally:
            connection.close()

    # when: six drains race, each also enqueueing more
    workers = [threading.Thread(target=drain_many) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.append([item.pk for item in queue_drain(thread=thread).items])
    # then: every item was delivered exactly once
    delivered = [pk for batch in results for pk in batch]
    assert len(delivered) == len(set(delivered)) == 200 + 30
    assert set(QueuedMessage.objects.values_list("status", flat=True)) == {"delivered"}
