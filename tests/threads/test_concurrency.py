"""Races against the real PostgreSQL: appends from many clients at once, and two editors
holding the same ETag. Each worker is a real thread with its own database connection."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from threads import services, tenancy
from threads.models import Message, Project, Thread

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 8


@pytest.fixture
def shared():
    """A tenant, its key and a thread, committed so that every worker's connection sees them."""
    tenant, secret = tenancy.tenant_create(name="racers")
    project = Project.objects.create(tenant=tenant, name="race")
    thread = services.thread_create(tenant=tenant, project_id=project.id, title="race")
    return secret, thread


def race(count: int, secret: str, work: Callable[[int, APIClient, threading.Barrier], Any]) -> list:
    """Run `work(index, client, barrier)` in `count` threads, each with its own APIClient and
    database connection (closed at the end); returns their results in index order."""
    barrier = threading.Barrier(count, timeout=30)

    def worker(index: int) -> Any:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        try:
            return work(index, client, barrier)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(worker, index) for index in range(count)]
        return [f.result(timeout=60) for f in futures]


def assert_contiguous(thread: Thread, expected_ids: set[str]) -> None:
    thread.refresh_from_db()
    rows = list(
        Message.objects.filter(thread_id=thread.id).order_by("seq").values_list("message_id", "seq")
    )
    ids = [message_id for message_id, _ in rows]
    assert len(ids) == len(set(ids)), "an id was stored twice"
    assert set(ids) == expected_ids
    assert [seq for _, seq in rows] == list(range(1, len(rows) + 1))
    assert thread.last_seq == thread.message_count == len(rows)


def test_clients_appending_the_same_ids_at_once_store_each_id_exactly_once(shared):
    secret, thread = shared
    ids = [f"m{i}" for i in range(50)]

    def work(index: int, client: APIClient, barrier: threading.Barrier) -> list[dict]:
        order = ids[:]
        random.Random(index).shuffle(order)
        batches = [order[i : i + 10] for i in range(0, len(order), 10)]
        barrier.wait()
        answers = []
        for batch in batches:
            response = client.post(
                f"/api/v1/threads/{thread.id}/messages",
                {"messages": [{"id": i, "role": "user", "content": i} for i in batch]},
                format="json",
            )
            assert response.status_code in (200, 201), response.content
            answers.extend(response.json()["messages"])
        return answers

    # when
    answers = race(CLIENTS, secret, work)

    # then: each id stored once, and every client was told the seq it was stored at
    assert_contiguous(thread, set(ids))
    stored = dict(Message.objects.filter(thread_id=thread.id).values_list("message_id", "seq"))
    for client_answers in answers:
        assert {a["id"]: a["seq"] for a in client_answers} == stored


def test_clients_appending_distinct_ids_at_once_get_contiguous_seqs(shared):
    secret, thread = shared

    def work(index: int, client: APIClient, barrier: threading.Barrier) -> list[int]:
        barrier.wait()
        seqs = []
        for batch in range(5):
            response = client.post(
                f"/api/v1/threads/{thread.id}/messages",
                {
                    "messages": [
                        {"id": f"c{index}-b{batch}-{n}", "role": "user", "content": "x"}
                        for n in range(3)
                    ]
                },
                format="json",
            )
            assert response.status_code == 201, response.content
            seqs.extend(m["seq"] for m in response.json()["messages"])
        return seqs

    # when
    answers = race(CLIENTS, secret, work)

    # then
    expected = {f"c{c}-b{b}-{n}" for c in range(CLIENTS) for b in range(5) for n in range(3)}
    assert_contiguous(thread, expected)
    every_seq = sorted(seq for seqs in answers for seq in seqs)
    assert every_seq == list(range(1, len(expected) + 1))


def test_two_patches_with_the_same_if_match_one_wins_one_gets_412(shared):
    secret, thread = shared

    def work(index: int, client: APIClient, barrier: threading.Barrier):
        barrier.wait()
        return client.patch(
            f"/api/v1/threads/{thread.id}/",
            {"title": f"editor {index}"},
            format="json",
            HTTP_IF_MATCH='"1"',
        )

    # when
    responses = race(2, secret, work)

    # then
    assert sorted(r.status_code for r in responses) == [200, 412]
    winner = next(r for r in responses if r.status_code == 200)
    loser = next(r for r in responses if r.status_code == 412)
    assert loser.json()["error"]["code"] == "stale_version"
    assert loser.json()["error"]["details"] == {"expected": 1, "actual": 2}
    thread.refresh_from_db()
    assert thread.version == 2
    assert thread.title == winner.json()["title"]
