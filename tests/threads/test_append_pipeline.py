"""The pipelined append (threads.history._append_pipelined, PostgreSQL outside any atomic
block) against the other path (inside an atomic block): the same result and rows, and a
connection left as it was found whatever fails."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DataError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from common.errors import NotFound, ThreadClosed
from threads import history, services, tenancy
from threads.models import Message, Project, Thread

pytestmark = pytest.mark.django_db(transaction=True)


def msg(message_id: str | None, content: str = "hello") -> dict:
    body = {"role": "user", "content": content}
    if message_id is not None:
        body["id"] = message_id
    return body


@pytest.fixture
def tenant():
    tenant, _ = tenancy.tenant_create(name="pipeline")
    return tenant


@pytest.fixture
def make_thread(tenant):
    project = Project.objects.create(tenant=tenant, name="p")

    def make() -> Thread:
        return services.thread_create(tenant=tenant, project_id=project.id, title="t")

    return make


def stored(thread: Thread) -> list[tuple]:
    return list(
        Message.objects.filter(thread_id=thread.id)
        .order_by("seq")
        .values_list("message_id", "seq", "role", "content", "token_estimate")
    )


def counters(thread: Thread) -> tuple:
    thread.refresh_from_db()
    return (thread.last_seq, thread.message_count, thread.token_estimate, thread.history_version)


def assert_connection_clean() -> None:
    """Idle (no transaction left open) and usable, and no row lock left behind."""
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def assert_unlocked(thread: Thread) -> None:
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                f"SELECT id FROM {Thread._meta.db_table} WHERE id = %s FOR NO KEY UPDATE NOWAIT",
                [thread.id],
            )
            assert cursor.fetchone() == (thread.id,)
            cursor.execute("ROLLBACK")
    finally:
        other.close()


BATCHES = [
    [msg("a"), msg("b"), msg(None)],
    [msg("b"), msg("c"), msg("c"), msg("d", "x" * 500)],  # a duplicate, a repeat in the batch
    [msg("a"), msg("d")],  # only duplicates: nothing written
    [msg(None), msg("e")],
]


def append_all(thread: Thread, *, atomic: bool) -> list[dict]:
    results = []
    for batch in BATCHES:
        if atomic:
            with transaction.atomic():
                result = history.messages_append(thread=thread, messages=batch)
        else:
            result = history.messages_append(thread=thread, messages=batch)
        results.append(
            {k: getattr(result, k) for k in ("appended", "duplicates", "messages", "last_seq")}
        )
    return results


def without_generated_ids(results: list[dict]) -> list[dict]:
    for result in results:
        for item in result["messages"]:
            if item["id"].startswith("msg_"):
                item["id"] = "<generated>"
    return results


def test_the_pipelined_path_gives_what_the_atomic_path_gives(make_thread):
    piped, atomic = make_thread(), make_thread()
    piped_results = without_generated_ids(append_all(piped, atomic=False))
    atomic_results = without_generated_ids(append_all(atomic, atomic=True))
    assert piped_results == atomic_results
    assert piped_results[2] == {
        "appended": 0,
        "duplicates": 2,
        "messages": [{"id": "a", "seq": 1}, {"id": "d", "seq": 5}],
        "last_seq": 5,
    }

    def comparable(rows):
        return [(("<generated>" if i.startswith("msg_") else i), *rest) for i, *rest in rows]

    assert comparable(stored(piped)) == comparable(stored(atomic))
    assert [seq for _, seq, *_ in stored(piped)] == list(range(1, 8))
    assert counters(piped)[:3] == counters(atomic)[:3]
    assert counters(piped)[3] == counters(atomic)[3] == 3  # one version per batch that wrote
    assert_connection_clean()


def test_outside_a_transaction_the_append_is_one_pipelined_transaction(make_thread):
    thread = make_thread()
    with CaptureQueriesContext(connection) as queries:
        history.messages_append(thread=thread, messages=[msg("a")])
    sql = [q["sql"] for q in queries.captured_queries]
    assert sql[0] == "BEGIN" and sql[-1] == "COMMIT"
    assert "FOR NO KEY UPDATE" in sql[1]
    assert len(sql) == 5  # BEGIN, lock, duplicate check, INSERT + UPDATE, COMMIT
    assert_connection_clean()


def test_another_tenants_thread_is_not_found_and_nothing_is_left_open(make_thread):
    thread = make_thread()
    outsider, _ = tenancy.tenant_create(name="outsider")
    foreign = Thread.from_db(None, ("id", "tenant_id", "tier"), (thread.id, outsider.id, "hot"))
    with pytest.raises(NotFound):
        history.messages_append(thread=foreign, messages=[msg("a")])
    assert_connection_clean()
    assert_unlocked(thread)
    assert stored(thread) == []


def test_a_closed_conversation_refuses_and_releases_the_lock(make_thread):
    thread = make_thread()
    services.thread_close(thread=thread)
    before = counters(thread)
    with pytest.raises(ThreadClosed):
        history.messages_append(thread=thread, messages=[msg("a")])
    assert_connection_clean()
    assert_unlocked(thread)
    assert counters(thread) == before


def test_a_write_the_database_refuses_stores_nothing_and_rolls_back(make_thread):
    thread = make_thread()
    history.messages_append(thread=thread, messages=[msg("a")])
    before = counters(thread)
    # PostgreSQL's jsonb refuses NUL (the API's parser turns it away before this point).
    with pytest.raises(DataError):
        history.messages_append(thread=thread, messages=[msg("b"), msg("c", "nul\x00here")])
    assert_connection_clean()
    assert_unlocked(thread)
    assert counters(thread) == before
    assert [row[0] for row in stored(thread)] == ["a"]
    # and the next append on the same connection goes on from there
    result = history.messages_append(thread=thread, messages=[msg("b")])
    assert (result.appended, result.last_seq) == (1, 2)


def test_through_the_api_the_pipelined_append_answers_as_documented(make_thread, tenant):
    # given: the API outside any test transaction (the pipelined path), a thread of ours,
    # another tenant's key, and a closed thread
    from tests.conftest import assert_error, make_caller

    thread, closed = make_thread(), make_thread()
    services.thread_close(thread=closed)
    _, secret = tenancy.api_key_create(tenant=tenant)
    ours = make_caller("ours").client
    ours.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")  # a key of the threads' tenant
    outsider = make_caller("outsider").client

    def append(client, target, *messages):
        body = {"messages": list(messages)}
        return client.post(f"/api/v1/threads/{target.id}/messages/", body, format="json")

    # when / then: 201, then 200 for the same id, each with the seq it has
    with CaptureQueriesContext(connection) as queries:
        first = append(ours, thread, msg("a"), msg("b"))
    assert first.status_code == 201, first.content
    assert "BEGIN" in [q["sql"] for q in queries.captured_queries]  # the pipelined path
    assert first.json()["messages"] == [{"id": "a", "seq": 1}, {"id": "b", "seq": 2}]
    again = append(ours, thread, msg("a"))
    assert again.status_code == 200, again.content
    assert again.json() == {
        "appended": 0,
        "duplicates": 1,
        "messages": [{"id": "a", "seq": 1}],
        "last_seq": 2,
    }
    # another tenant's key: 404, and nothing stored; a closed thread: 409 thread_closed
    assert_error(append(outsider, thread, msg("x")), 404, "not_found")
    assert_error(append(ours, closed, msg("x")), 409, "thread_closed")
    assert [row[0] for row in stored(thread)] == ["a", "b"]
    assert stored(closed) == []
    assert_connection_clean()
