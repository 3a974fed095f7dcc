"""The Redis hot cache (threads/hotcache.py) against the real Redis of this machine.

Writers refresh it after their commit, so these tests run the on-commit callbacks
(`django_capture_on_commit_callbacks(execute=True)`) the way a real request would.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_redis import get_redis_connection

from tests.s3 import free_port
from threads import history
from threads.message_format import message_json_bytes
from threads.models import MESSAGE_COLUMNS, Message, Thread
from threads.storage import hotcache

pytestmark = pytest.mark.django_db


def url(thread, suffix=""):
    return f"/api/v1/threads/{thread.id}/{suffix}"


def redis():
    return get_redis_connection("default")


def cached(thread_id: str) -> tuple[int | None, list[dict], object]:
    """(cached history version, cached messages, cached state) straight from Redis."""
    meta, messages, state = hotcache.keys(thread_id)
    hv = redis().hget(meta, "hv")
    members = [json.loads(m) for m in redis().zrange(messages, 0, -1)]
    raw_state = redis().get(state)
    return (
        None if hv is None else int(hv),
        members,
        None if raw_state is None else json.loads(raw_state),
    )


def database_messages(thread: Thread) -> list[dict]:
    rows = Message.objects.filter(thread_id=thread.pk).order_by("seq")
    return [{"id": m.message_id, "seq": m.seq, "role": m.role, "content": m.content} for m in rows]


def essentials(messages: list[dict]) -> list[dict]:
    return [{k: m[k] for k in ("id", "seq", "role", "content")} for m in messages]


def append(api, thread, *ids, capture):
    with capture(execute=True):
        response = api.post(
            url(thread, "messages"),
            {"messages": [{"id": i, "role": "user", "content": f"text {i}"} for i in ids]},
        )
    assert response.status_code in (200, 201), response.content
    return response


def message_queries(queries) -> list[str]:
    table = Message._meta.db_table
    return [q["sql"] for q in queries.captured_queries if table in q["sql"]]


def test_keys_of_one_thread_share_one_hash_tag():
    meta, messages, state = hotcache.keys("thd_abc")
    assert (meta, messages, state) == (
        "tl:{thd_abc}:meta",
        "tl:{thd_abc}:messages",
        "tl:{thd_abc}:state",
    )


def test_a_read_fills_the_cache_and_the_next_read_needs_no_message_query(
    api, thread, django_capture_on_commit_callbacks
):
    # given
    append(api, thread, "a", "b", "c", capture=django_capture_on_commit_callbacks)
    redis().flushdb()  # start from a miss
    first = api.get(url(thread, "messages"))
    thread.refresh_from_db()
    assert cached(thread.id)[0] == thread.history_version

    # when
    with CaptureQueriesContext(connection) as queries:
        second = api.get(url(thread, "messages"))

    # then
    assert second.status_code == 200
    assert second.json() == first.json()
    assert [m["id"] for m in second.json()["results"]] == ["a", "b", "c"]
    assert message_queries(queries) == []


def test_a_cache_hit_answers_exactly_what_the_database_path_answers(
    api, thread, settings, django_capture_on_commit_callbacks
):
    append(api, thread, "a", "b", capture=django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        api.post(
            url(thread, "messages"),
            {
                "messages": [
                    {
                        "id": "blocks",
                        "role": "assistant",
                        "content": [{"type": "text", "text": "héllo ☃", "z": 1.5, "a": None}],
                        "metadata": {"b": [1, 2], "a": {"y": True}},
                    }
                ]
            },
        )
    from_cache = api.get(url(thread, "messages")).json()
    assert message_queries_for(api, thread) == []  # it was a hit

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    from_database = api.get(url(thread, "messages")).json()

    assert from_cache == from_database


def test_the_database_path_writes_each_message_as_message_json_does(api, thread, settings):
    # given: ids and text that need escaping, nested JSON, and timestamps with and without
    # microseconds (isoformat drops them when zero)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    tricky = [
        {"id": 'q"uote\\back', "role": "user", "content": "line\nbreak\ttab \u0001 ☃"},
        {"id": "ünï/ code", "role": "tool", "content": [{"type": "text", "text": "é", "k": [1.5]}]},
        {"id": "plain", "role": "assistant", "content": "", "metadata": {"n": 10**15}},
    ]
    response = api.post(url(thread, "messages"), {"messages": tricky})
    assert response.status_code == 201, response.json()
    whole = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    Message.objects.filter(thread_id=thread.pk, seq=1).update(created_at=whole)
    Message.objects.filter(thread_id=thread.pk, seq=2).update(
        created_at=whole.replace(microsecond=120)
    )

    # when: pages of one from the database
    served, cursor = [], ""
    while cursor is not None:
        page = api.get(url(thread, f"messages?limit=1{cursor}")).json()
        served += page["results"]
        cursor = f"&cursor={page['next']}" if page["next"] is not None else None

    # then: each as the Python writer gives it, and the cursor walks all three
    rows = Message.objects.filter(thread_id=thread.pk).order_by("seq")
    expected = [json.loads(message_json_bytes(*row)) for row in rows.values_list(*MESSAGE_COLUMNS)]
    assert served == expected
    assert [m["created_at"] for m in served[:2]] == [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.000120Z",
    ]


def message_queries_for(api, thread) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert api.get(url(thread, "messages")).status_code == 200
    return message_queries(queries)


def test_pages_come_from_the_cache_with_the_same_cursors(
    api, thread, django_capture_on_commit_callbacks
):
    append(api, thread, *[f"m{i}" for i in range(7)], capture=django_capture_on_commit_callbacks)
    api.get(url(thread, "messages"))  # fill

    with CaptureQueriesContext(connection) as queries:
        first = api.get(url(thread, "messages"), {"limit": 3}).json()
        second = api.get(url(thread, "messages"), {"limit": 3, "cursor": first["next"]}).json()
        third = api.get(url(thread, "messages"), {"limit": 3, "cursor": second["next"]}).json()
        after = api.get(url(thread, "messages"), {"after_seq": 5}).json()

    assert message_queries(queries) == []
    assert [m["seq"] for m in first["results"]] == [1, 2, 3] and first["next"] == "3"
    assert [m["seq"] for m in second["results"]] == [4, 5, 6] and second["next"] == "6"
    assert [m["seq"] for m in third["results"]] == [7] and third["next"] is None
    assert [m["seq"] for m in after["results"]] == [6, 7]


def test_an_append_writes_through_after_commit(api, thread, django_capture_on_commit_callbacks):
    append(api, thread, "a", capture=django_capture_on_commit_callbacks)
    api.get(url(thread, "messages"))  # cache at the current version

    append(api, thread, "b", "c", capture=django_capture_on_commit_callbacks)

    thread.refresh_from_db()
    hv, members, _ = cached(thread.id)
    assert hv == thread.history_version
    assert [m["id"] for m in members] == ["a", "b", "c"]
    assert message_queries_for(api, thread) == []
    assert essentials(api.get(url(thread, "messages")).json()["results"]) == database_messages(
        thread
    )


def test_truncate_replace_and_state_keep_the_cache_coherent(
    api, thread, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    append(api, thread, "a", "b", "c", "d", capture=capture)
    api.get(url(thread, "messages"))

    # truncate: a delta
    with capture(execute=True):
        assert api.post(url(thread, "messages/truncate"), {"from_id": "c"}).json() == {"removed": 2}
    thread.refresh_from_db()
    hv, members, _ = cached(thread.id)
    assert (hv, [m["id"] for m in members]) == (thread.history_version, ["a", "b"])

    # state: a delta of the state key
    with capture(execute=True):
        api.put(url(thread, "state"), {"state": {"step": 2}})
    thread.refresh_from_db()
    hv, members, state = cached(thread.id)
    assert (hv, state, len(members)) == (thread.history_version, {"step": 2}, 2)

    # replace: a rebuild with the new history
    with capture(execute=True):
        api.put(
            url(thread, "messages"),
            {"messages": [{"id": "x", "role": "system", "content": "fresh"}]},
        )
    thread.refresh_from_db()
    hv, members, state = cached(thread.id)
    assert hv == thread.history_version
    assert [(m["id"], m["seq"]) for m in members] == [("x", 5)]
    assert state == {"step": 2}

    # and every read agrees with the database, from the cache
    assert message_queries_for(api, thread) == []
    assert essentials(api.get(url(thread, "messages")).json()["results"]) == database_messages(
        thread
    )


def test_a_fork_reads_its_own_history_and_leaves_the_source_cache_alone(
    api, thread, django_capture_on_commit_callbacks
):
    append(api, thread, "a", "b", capture=django_capture_on_commit_callbacks)
    api.get(url(thread, "messages"))
    before = cached(thread.id)

    with django_capture_on_commit_callbacks(execute=True):
        fork_id = api.post(url(thread, "fork"), {}).json()["id"]
    fork = Thread.objects.get(pk=fork_id)
    append(api, fork, "c", capture=django_capture_on_commit_callbacks)

    assert cached(thread.id) == before
    assert [m["id"] for m in api.get(url(fork, "messages")).json()["results"]] == ["a", "b", "c"]
    assert [m["id"] for m in api.get(url(thread, "messages")).json()["results"]] == ["a", "b"]


def test_a_cache_of_another_version_is_never_served(
    api, thread, django_capture_on_commit_callbacks
):
    # given a cache holding version N
    append(api, thread, "a", capture=django_capture_on_commit_callbacks)
    api.get(url(thread, "messages"))
    # when the database moves on without the write-through (its callback never ran)
    history.messages_append(thread=thread, messages=[{"id": "b", "role": "user", "content": "x"}])
    # then the read sees the mismatch and rebuilds
    assert [m["id"] for m in api.get(url(thread, "messages")).json()["results"]] == ["a", "b"]
    thread.refresh_from_db()
    assert cached(thread.id)[0] == thread.history_version


def test_an_incomplete_cache_is_rebuilt(api, thread, django_capture_on_commit_callbacks):
    append(api, thread, "a", "b", capture=django_capture_on_commit_callbacks)
    api.get(url(thread, "messages"))
    _, messages_key, _ = hotcache.keys(thread.id)
    redis().delete(messages_key)  # evicted on its own; meta survived

    assert [m["id"] for m in api.get(url(thread, "messages")).json()["results"]] == ["a", "b"]
    assert len(cached(thread.id)[1]) == 2


def test_a_stale_writer_cannot_put_an_older_version_over_a_newer_one(thread):
    member = json.dumps({"id": "new"})
    assert hotcache.rebuild(thread_id=thread.id, history_version=6, members=[(1, member)], state={})
    # an older rebuild is refused
    old = json.dumps({"id": "old"})
    assert not hotcache.rebuild(
        thread_id=thread.id, history_version=5, members=[(1, old)], state={}
    )
    # a delta from a version the cache does not hold (5 → 6) is refused too
    hotcache._delta(thread.id, "append", 5, 6, 2, json.dumps({"id": "late"}))

    hv, members, _ = cached(thread.id)
    assert (hv, members) == (6, [{"id": "new"}])


def staging_keys(thread_id):
    return list(redis().scan_iter(match=f"tl:{{{thread_id}}}:staging:*"))


def test_a_rebuild_larger_than_a_staging_batch_stores_every_member_and_no_staging_key(
    thread,
):
    count = hotcache.STAGING_BATCH * 2 + 7
    members = [(seq, json.dumps({"id": f"m{seq}"})) for seq in range(1, count + 1)]
    assert hotcache.rebuild(thread_id=thread.id, history_version=2, members=members, state={})
    hv, cached_members, state = cached(thread.id)
    assert (hv, state) == (2, {})
    assert [m["id"] for m in cached_members] == [f"m{seq}" for seq in range(1, count + 1)]
    assert staging_keys(thread.id) == []
    # a refused rebuild (the cache holds that version, complete) leaves none behind either
    assert not hotcache.rebuild(thread_id=thread.id, history_version=2, members=members, state={})
    assert staging_keys(thread.id) == []


def test_an_incomplete_staging_key_is_never_renamed_into_place(thread):
    # given: the cache at 1; a rebuild at 2 whose staging pipeline was cut short (it holds
    # one member of the two the script is told of)
    hotcache.rebuild(thread_id=thread.id, history_version=1, members=[(1, '{"id":"a"}')], state={})
    meta, messages, state = hotcache.keys(thread.id)
    staging = f"tl:{{{thread.id}}}:staging:cut"
    redis().zadd(staging, {'{"id":"x"}': 1})
    script = redis().register_script(hotcache._REBUILD)
    written = script(
        keys=[meta, messages, state, hotcache.parked_key(thread.id), staging],
        args=[2, 60, "{}", 2],
    )
    # then: nothing written, the staging key gone
    assert written == -1
    assert cached(thread.id)[:2] == (1, [{"id": "a"}])
    assert not redis().exists(staging)


def test_a_delta_ahead_of_the_cache_waits_for_the_one_before_it(thread):
    # given: the cache at 3; the append 4 → 5 reaches Redis before the append 3 → 4
    hotcache.rebuild(thread_id=thread.id, history_version=3, members=[], state=None)
    hotcache._delta(thread.id, "append", 4, 5, 2, json.dumps({"id": "second"}))
    # then: it waits (the cache stays at 3, which reads find stale), with a bounded life
    assert cached(thread.id)[:2] == (3, [])
    parked = hotcache.parked_key(thread.id)
    assert 0 < redis().ttl(parked) <= hotcache.PARKED_TTL_SECONDS
    # when the earlier one lands, both apply, in order
    hotcache._delta(thread.id, "append", 3, 4, 1, json.dumps({"id": "first"}))
    assert cached(thread.id)[:2] == (5, [{"id": "first"}, {"id": "second"}])
    assert not redis().exists(parked)


def test_a_rebuild_applies_the_deltas_waiting_on_its_version(thread):
    hotcache.rebuild(thread_id=thread.id, history_version=1, members=[], state=None)
    hotcache._delta(thread.id, "state", 3, 4, json.dumps({"k": 1}))
    hotcache._delta(thread.id, "append", 4, 5, 2, json.dumps({"id": "b"}))
    # a fill stores version 3 (a catch-up, say): what waited on 3 and then 4 follows
    member = json.dumps({"id": "a"})
    assert hotcache.rebuild(thread_id=thread.id, history_version=3, members=[(1, member)], state={})
    assert cached(thread.id) == (5, [{"id": "a"}, {"id": "b"}], {"k": 1})


def test_dropping_the_cache_drops_the_deltas_waiting_too(thread):
    hotcache.rebuild(thread_id=thread.id, history_version=1, members=[], state=None)
    hotcache._delta(thread.id, "append", 2, 3, 1, json.dumps({"id": "x"}))
    hotcache.drop(thread.id)
    assert not redis().exists(hotcache.parked_key(thread.id))


def test_the_keys_expire_after_the_hot_ttl(thread, settings):
    settings.HOT_TTL_SECONDS = 120
    hotcache.rebuild(thread_id=thread.id, history_version=1, members=[(1, "{}")], state=None)
    for key in hotcache.keys(thread.id):
        assert 0 < redis().ttl(key) <= 120


# --- Redis down --------------------------------------------------------------------------


@pytest.fixture
def dead_redis(settings):
    """The cache pointed at a loopback port nothing listens on: connections are refused."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }


def test_appends_and_reads_succeed_when_redis_is_down(
    api, thread, dead_redis, caplog, django_capture_on_commit_callbacks
):
    with caplog.at_level(logging.WARNING, logger="threads.storage.hotcache"):
        appended = append(api, thread, "a", "b", capture=django_capture_on_commit_callbacks)
        read = api.get(url(thread, "messages"))
        state = api.put(url(thread, "state"), {"state": {"k": 1}})

    assert appended.status_code == 201
    assert read.status_code == 200
    assert [m["id"] for m in read.json()["results"]] == ["a", "b"]
    assert state.status_code == 200
    assert any("redis" in r.getMessage() for r in caplog.records)


def test_readyz_reports_redis_degraded_but_stays_200(client, dead_redis, s3):
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["redis"]["status"] == "degraded"
    assert body["checks"]["cold_storage"]["status"] == "ok"
    assert body["status"] == "ok"


def test_readyz_reports_redis_ok_when_it_answers(client, s3):
    checks = client.get("/readyz").json()["checks"]
    assert checks["redis"]["status"] == "ok"
    assert "password" not in checks["redis"]["detail"]


def test_without_redis_the_cache_is_off_and_reads_use_the_database(api, thread, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    history.messages_append(thread=thread, messages=[{"id": "a", "role": "user", "content": "x"}])

    assert not hotcache.enabled()
    assert [m["id"] for m in api.get(url(thread, "messages")).json()["results"]] == ["a"]
    assert hotcache.probe() == ("ok", "off (REDIS_URL unset)")


@pytest.mark.parametrize("microsecond", [0, 120000, 7])
def test_a_database_page_is_the_messages_json_whatever_the_timestamp(
    api, thread, settings, microsecond
):
    # given: messages read from the database (no Redis), one stored at a whole second
    # (Python's isoformat then omits the fraction) and with nested, non-ASCII content
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    content = [{"type": "text", "text": 'héllo ☃ "q" \\ \n', "z": 1.5, "a": None, "n": [1, {}]}]
    body = {
        "messages": [
            {"id": "x", "role": "assistant", "content": content, "metadata": {"k": [True]}}
        ]
    }
    assert api.post(url(thread, "messages"), body).status_code == 201
    row = Message.objects.get(thread_id=thread.pk, message_id="x")
    row.created_at = row.created_at.replace(microsecond=microsecond)
    Message.objects.filter(pk=row.pk).update(created_at=row.created_at)

    # when
    page = api.get(url(thread, "messages")).json()["results"]

    # then: equal, as JSON, to the canonical message JSON the cache and snapshots hold
    expected = message_json_bytes(*(getattr(row, name) for name in MESSAGE_COLUMNS))
    assert page == [json.loads(expected)]
    assert page[0]["created_at"] == row.created_at.isoformat().replace("+00:00", "Z")
