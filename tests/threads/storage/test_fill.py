"""Pages of a long thread and the hot cache filled off the request path
(threads/storage/pages.py, threads/storage/fill.py), against real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from django_redis import get_redis_connection

from tests.threads.storage.test_hotcache import cached, database_messages, essentials
from threads import history
from threads.storage import fill, hotcache

pytestmark = pytest.mark.django_db


def url(thread, suffix=""):
    return f"/api/v1/threads/{thread.id}/{suffix}"


def say(thread, *ids, chars=10):
    history.messages_append(
        thread=thread,
        messages=[{"id": i, "role": "user", "content": i[0] * chars} for i in ids],
    )


def drop_cache(thread):
    get_redis_connection("default").delete(*hotcache.keys(thread.id))


def read_all(api, thread, limit=100):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = api.get(url(thread, "messages"), params).json()
        seen += [m["id"] for m in body["results"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return seen, pages


def test_a_page_holds_at_most_page_max_bytes_and_the_cursor_goes_on(api, thread, settings):
    # given: five messages of ~1 KB each (254 tokens, ~1,016 estimated bytes), uncached
    say(thread, "a", "b", "c", "d", "e", chars=1000)
    settings.PAGE_MAX_BYTES = 2500
    settings.HOT_CACHE_MAX_BYTES = 0  # never cached: every page comes from the database
    drop_cache(thread)
    # when
    first = api.get(url(thread, "messages"), {"limit": 100}).json()
    # then: what fits in 2,500 bytes (three messages), and the cursor after the last one
    assert [m["id"] for m in first["results"]] == ["a", "b", "c"]
    assert first["next"] == "3"
    assert read_all(api, thread) == (["a", "b", "c", "d", "e"], 2)


def test_one_message_larger_than_the_bound_is_still_served_alone(api, thread, settings):
    say(thread, "a", "b", chars=5000)
    settings.PAGE_MAX_BYTES = 100
    settings.HOT_CACHE_MAX_BYTES = 0
    drop_cache(thread)
    assert read_all(api, thread) == (["a", "b"], 2)


def test_a_miss_serves_the_page_and_the_fill_stores_the_whole_history(api, thread):
    say(thread, *[f"m{i}" for i in range(30)])
    drop_cache(thread)
    # when: a page is read (the fill task runs in-process in tests)
    body = api.get(url(thread, "messages"), {"limit": 5}).json()
    # then: the page, and the cache holds the whole history at the thread's version
    assert [m["id"] for m in body["results"]] == ["m0", "m1", "m2", "m3", "m4"]
    thread.refresh_from_db()
    version, members, _ = cached(thread.id)
    assert version == thread.history_version
    assert essentials(members) == database_messages(thread)


def test_a_thread_over_hot_cache_max_bytes_is_not_cached(api, thread, settings):
    say(thread, "a", "b", chars=1000)
    settings.HOT_CACHE_MAX_BYTES = 1000
    drop_cache(thread)
    assert read_all(api, thread) == (["a", "b"], 1)
    assert cached(thread.id) == (None, [], None)


def test_a_fill_that_sees_the_history_change_under_it_starts_over(api, thread, monkeypatch):
    # given: a truncation lands between the fill's batches and its catch-up
    say(thread, "a", "b", "c", "d")
    drop_cache(thread)
    real_head, calls = fill._head, []

    def head_after_a_truncation(thread_id):
        if not calls:
            history.messages_truncate(thread=thread, from_id="c")
            say(thread, "e", "f")  # the batches read c and d, which are gone now
        calls.append(thread_id)
        return real_head(thread_id)

    monkeypatch.setattr(fill, "_head", head_after_a_truncation)
    # when
    outcome = fill.hot_cache_fill(thread_id=thread.id)
    # then: the first attempt was refused, the second stored the current history
    assert outcome == "filled"
    thread.refresh_from_db()
    version, members, _ = cached(thread.id)
    assert version == thread.history_version
    assert [m["id"] for m in members] == ["a", "b", "e", "f"]
    assert essentials(members) == database_messages(thread)


def test_only_one_fill_per_thread_is_requested_at_a_time(api, thread):
    say(thread, "a")
    assert hotcache.fill_claim(thread.id, seconds=30)
    assert fill.request_fill(thread=thread) is False  # a fill holds the claim
    hotcache.fill_release(thread.id)
    drop_cache(thread)
    assert fill.request_fill(thread=thread) is True


def test_an_append_racing_the_fills_store_is_caught_up(
    api, thread, monkeypatch, django_capture_on_commit_callbacks
):
    # given: an append commits after the fill read the thread's head and before it stores
    # the history; the append's own cache delta finds no cache and is dropped
    say(thread, "a", "b")
    drop_cache(thread)
    real_rebuild, calls = hotcache.rebuild, []

    def rebuild_after_an_append(**kwargs):
        if not calls:
            with django_capture_on_commit_callbacks(execute=True):
                say(thread, "late")
        calls.append(kwargs["history_version"])
        return real_rebuild(**kwargs)

    monkeypatch.setattr(hotcache, "rebuild", rebuild_after_an_append)
    # when
    outcome = fill.hot_cache_fill(thread_id=thread.id)
    # then: the stale store was followed by one at the thread's version, with the append
    assert outcome == "filled"
    thread.refresh_from_db()
    assert calls == [thread.history_version - 1, thread.history_version]
    version, members, _ = cached(thread.id)
    assert version == thread.history_version
    assert [m["id"] for m in members] == ["a", "b", "late"]
    assert essentials(members) == database_messages(thread)
