"""/api/v1/threads/: create, list and its filters, get with ETag, PATCH with If-Match,
archive, delete, close and open — and an outsider tenant that must see nothing of it."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error
from tests.factories import ProjectFactory
from threads import history, services
from threads.models import Event, Message, Thread

URL = "/api/v1/threads/"


def detail(thread) -> str:
    return f"{URL}{thread.id}/"


def make_thread(api, project, **fields) -> Thread:
    return services.thread_create(tenant=api.tenant, project_id=project.id, **fields)


def listed_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [t["id"] for t in response.json()["results"]]


# --- Create ----------------------------------------------------------------------------


def test_creating_a_thread_answers_201_with_the_thread_and_its_etag(api, project):
    response = api.post(URL, {"project": project.id, "title": "Hi", "metadata": {"a": 1}})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("thd_") and len(body["id"]) == 16
    assert body["project"] == project.id
    assert (body["title"], body["metadata"]) == ("Hi", {"a": 1})
    assert (body["status"], body["lifecycle"], body["tier"]) == ("open", "idle", "hot")
    assert (body["version"], body["last_seq"], body["message_count"]) == (1, 0, 0)
    assert body["reasoning_effort"] == "high"
    assert body["fork_of"] is None
    assert response["ETag"] == '"1"'


def test_a_thread_needs_only_a_project(api, project):
    response = api.post(URL, {"project": project.id})

    assert response.status_code == 201, response.content
    assert (response.json()["title"], response.json()["metadata"]) == ("", {})


def test_creating_a_thread_without_a_project_is_a_validation_error(api):
    details = assert_error(api.post(URL, {"title": "x"}), 400, "validation_error")

    assert "project" in details["fields"]
    assert not Thread.objects.exists()


def test_creating_a_thread_in_an_unknown_project_is_404(api):
    assert_error(api.post(URL, {"project": "prj_000000000000"}), 404, "not_found")
    assert not Thread.objects.exists()


def test_creating_a_thread_refuses_unknown_fields_and_wrong_types(api, project):
    for body in (
        {"project": project.id, "status": "archived"},
        {"project": project.id, "metadata": ["a"]},
        {"project": project.id, "metadata": "a"},
        {"project": project.id, "metadata": None},
        {"project": project.id, "title": {"t": 1}},
        {"project": project.id, "title": "x" * 501},
        {"project": ["prj"]},
    ):
        assert_error(api.post(URL, body), 400, "validation_error")

    assert not Thread.objects.exists()


# --- List and filters --------------------------------------------------------------------


def test_threads_are_listed_in_creation_order_in_pages(api, project):
    ids = [make_thread(api, project, title=f"t{i}").id for i in range(5)]

    # when
    pages, cursor = [], None
    while True:
        response = api.get(URL, {"limit": 2, **({"cursor": cursor} if cursor else {})})
        pages.append(listed_ids(response))
        cursor = response.json()["next"]
        if cursor is None:
            break

    # then
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]


def test_the_list_is_filtered_by_project(api, project):
    other = ProjectFactory(tenant=api.tenant)
    mine = make_thread(api, project)
    make_thread(api, other)

    assert listed_ids(api.get(URL, {"project": project.id})) == [mine.id]


def test_the_list_is_filtered_by_status(api, project):
    kept = make_thread(api, project)
    archived = services.thread_archive(thread=make_thread(api, project))

    assert listed_ids(api.get(URL, {"status": "open"})) == [kept.id]
    assert listed_ids(api.get(URL, {"status": "archived"})) == [archived.id]


def test_the_list_is_filtered_by_a_comma_list_of_lifecycles(api, project):
    idle = make_thread(api, project)
    closed = services.thread_close(thread=make_thread(api, project))
    Thread.objects.filter(pk=make_thread(api, project).pk).update(lifecycle="active")

    assert listed_ids(api.get(URL, {"lifecycle": "closed"})) == [closed.id]
    assert listed_ids(api.get(URL, {"lifecycle": "idle,closed"})) == [idle.id, closed.id]


def test_the_list_is_filtered_by_tier(api, project):
    hot = make_thread(api, project)
    cold = make_thread(api, project)
    Thread.objects.filter(pk=cold.pk).update(tier="cold")

    assert listed_ids(api.get(URL, {"tier": "hot"})) == [hot.id]
    assert listed_ids(api.get(URL, {"tier": "cold"})) == [cold.id]


def test_q_matches_a_title_prefix_only(api, project):
    bug = make_thread(api, project, title="Bug 42: login")
    make_thread(api, project, title="A bug in the login")
    percent = make_thread(api, project, title="100% done")

    assert listed_ids(api.get(URL, {"q": "Bug"})) == [bug.id]
    assert listed_ids(api.get(URL, {"q": "100%"})) == [percent.id]
    assert listed_ids(api.get(URL, {"q": "%"})) == []


def test_metadata_filters_match_a_string_value(api, project):
    acme = make_thread(api, project, metadata={"customer": "acme", "tier": "gold"})
    make_thread(api, project, metadata={"customer": "globex"})

    assert listed_ids(api.get(URL, {"metadata.customer": "acme"})) == [acme.id]
    assert listed_ids(api.get(URL, {"metadata.customer": "acme", "metadata.tier": "x"})) == []


def test_metadata_filters_match_a_json_scalar_or_its_string(api, project):
    number = make_thread(api, project, metadata={"priority": 1})
    string = make_thread(api, project, metadata={"priority": "1"})
    flag = make_thread(api, project, metadata={"urgent": True})
    nothing = make_thread(api, project, metadata={"owner": None})
    make_thread(api, project, metadata={"priority": 2, "urgent": False})

    assert listed_ids(api.get(URL, {"metadata.priority": "1"})) == [number.id, string.id]
    assert listed_ids(api.get(URL, {"metadata.urgent": "true"})) == [flag.id]
    assert listed_ids(api.get(URL, {"metadata.owner": "null"})) == [nothing.id]


@pytest.mark.parametrize("key", ["isnull", "contains", "has_key", "regex", "in", "gt"])
def test_a_metadata_key_named_like_a_lookup_is_just_a_key(api, project, key):
    match = make_thread(api, project, metadata={key: "("})
    make_thread(api, project, metadata={"other": "("})

    assert listed_ids(api.get(URL, {f"metadata.{key}": "("})) == [match.id]


def test_a_metadata_key_of_digits_is_an_object_key_not_an_array_index(api, project):
    year = make_thread(api, project, metadata={"2024": "x"})
    make_thread(api, project, metadata={"2025": "x"})

    assert listed_ids(api.get(URL, {"metadata.2024": "x"})) == [year.id]


def test_the_metadata_filter_is_served_by_the_gin_index(api, project):
    from django.db import connection

    from threads.models import Thread
    from threads.selectors import metadata_filter

    make_thread(api, project, metadata={"customer": "acme"})
    query = Thread.objects.filter(metadata_filter({"metadata.customer": "acme"}))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: make the plan show it
        sql, params = query.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "thread_metadata_gin" in plan, plan


def test_a_bad_metadata_filter_key_is_a_validation_error(api, project):
    for key in ("metadata.", "metadata.a__b", "metadata.a b", "metadata." + "k" * 65):
        assert_error(api.get(URL, {key: "x"}), 400, "validation_error")


def test_fields_returns_only_the_requested_fields(api, project):
    make_thread(api, project, title="only")

    response = api.get(URL, {"fields": "id,title"})

    assert response.status_code == 200
    assert [set(t) for t in response.json()["results"]] == [{"id", "title"}]
    assert_error(api.get(URL, {"fields": "id,secret"}), 400, "validation_error")


def test_unknown_filter_values_are_validation_errors(api, project):
    for params in (
        {"status": "deleted"},
        {"lifecycle": "idle,sleeping"},
        {"tier": "lukewarm"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "abc"},
        {"cursor": "not-a-cursor"},
    ):
        assert_error(api.get(URL, params), 400, "validation_error")


# --- Get ---------------------------------------------------------------------------------


def test_getting_a_thread_carries_its_version_as_the_etag(api, thread):
    Thread.objects.filter(pk=thread.pk).update(version=7)

    response = api.get(detail(thread))

    assert response.status_code == 200
    assert response.json()["id"] == thread.id
    assert response.json()["version"] == 7
    assert response["ETag"] == '"7"'


def test_list_filters_do_not_hide_a_single_thread(api, thread):
    path = f"{URL}{thread.id}"

    assert api.get(f"{path}/", {"status": "archived"}).status_code == 200
    assert api.get(f"{path}/messages", {"project": "prj_000000000000"}).status_code == 200
    response = api.post(
        f"{path}/messages?tier=cold", {"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 201, response.content


def test_an_unknown_thread_is_404(api):
    assert_error(api.get(f"{URL}thd_000000000000/"), 404, "not_found")
    assert_error(api.get(f"{URL}not-an-id/"), 404, "not_found")


# --- PATCH -------------------------------------------------------------------------------


def test_every_edit_bumps_the_version(api, thread):
    first = api.patch(detail(thread), {"title": "Renamed"})
    second = api.patch(detail(thread), {"metadata": {"k": "v"}})

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["version"] == 2 and first["ETag"] == '"2"'
    assert second.json()["version"] == 3 and second["ETag"] == '"3"'
    thread.refresh_from_db()
    assert (thread.title, thread.metadata, thread.version) == ("Renamed", {"k": "v"}, 3)


def test_a_patch_with_the_current_etag_succeeds(api, thread):
    response = api.patch(detail(thread), {"title": "New"}, HTTP_IF_MATCH='"1"')

    assert response.status_code == 200, response.content
    assert response.json()["title"] == "New"


def test_a_patch_with_a_stale_etag_is_412_and_changes_nothing(api, thread):
    api.patch(detail(thread), {"title": "Second"})

    details = assert_error(
        api.patch(detail(thread), {"title": "Lost"}, HTTP_IF_MATCH='"1"'), 412, "stale_version"
    )

    # the version asked for, as when the conditional UPDATE finds it moved (a race)
    assert details == {"expected": 1, "actual": 2}
    thread.refresh_from_db()
    assert (thread.title, thread.version) == ("Second", 2)


@pytest.mark.parametrize(
    "header", ['"abc"', '"-1"', '"01"', '"' + "9" * 40 + '"', '"' + "9" * 4301 + '"', 'W/"1"']
)
def test_an_if_match_naming_no_current_etag_is_412_and_changes_nothing(api, thread, header):
    """Tags compare as strings, strongly: a weak tag never matches, a 4,301-digit one is no
    int() to convert (it was a 500)."""
    assert_error(
        api.patch(detail(thread), {"title": "x"}, HTTP_IF_MATCH=header), 412, "stale_version"
    )

    thread.refresh_from_db()
    assert (thread.title, thread.version) == ("First thread", 1)


@pytest.mark.parametrize("header", ["garbage", '"²"', "1", '"1" "2"', '"1",', ""])
def test_an_if_match_that_is_no_list_of_etags_is_400(api, thread, header):
    details = assert_error(
        api.patch(detail(thread), {"title": "x"}, HTTP_IF_MATCH=header), 400, "validation_error"
    )

    assert details == {"header": "If-Match"}
    thread.refresh_from_db()
    assert thread.version == 1


def test_an_if_match_list_matches_when_one_of_its_etags_is_current(api, thread):
    assert api.patch(detail(thread), {"title": "a"}, HTTP_IF_MATCH='"0", "1"').status_code == 200
    assert api.patch(detail(thread), {"title": "b"}, HTTP_IF_MATCH='W/"2" ,"2"').status_code == 200
    assert api.patch(detail(thread), {"title": "c"}, HTTP_IF_MATCH="*").status_code == 200
    thread.refresh_from_db()
    assert (thread.title, thread.version) == ("c", 4)


def test_reasoning_effort_accepts_only_the_known_levels(api, thread):
    for level in ("low", "medium", "high", "xhigh", "max"):
        response = api.patch(detail(thread), {"reasoning_effort": level})
        assert response.json()["reasoning_effort"] == level

    assert_error(
        api.patch(detail(thread), {"reasoning_effort": "extreme"}), 400, "validation_error"
    )
    thread.refresh_from_db()
    assert thread.reasoning_effort == "max"


def test_compaction_and_warming_settings_are_edited_together(api, thread):
    response = api.patch(
        detail(thread),
        {
            "compaction": {"threshold_tokens": 50_000, "keep_last": 4},
            "warming": {"enabled": True, "interval_s": 120},
        },
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["compaction"]["threshold_tokens"] == 50_000
    assert body["compaction"]["keep_last"] == 4
    assert body["compaction"]["threshold_percent"] == 85
    assert (body["warming"]["enabled"], body["warming"]["interval_s"]) == (True, 120)


def test_turning_warming_off_clears_the_timer(api, thread):
    Thread.objects.filter(pk=thread.pk).update(
        warming_enabled=True, next_warm_at="2030-01-01T00:00:00Z"
    )

    response = api.patch(detail(thread), {"warming": {"enabled": False}})

    assert response.json()["warming"]["enabled"] is False
    thread.refresh_from_db()
    assert thread.next_warm_at is None


@pytest.mark.parametrize(
    "body",
    [
        {"compaction": {"threshold_percent": 101}},
        {"compaction": {"context_window": 10}},
        {"compaction": {"keep_last": 0}},
        {"compaction": {"keep_last": "ten"}},
        {"compaction": {"size": 1}},
        {"compaction": 5},
        {"warming": {"interval_s": 0}},
        {"warming": {"interval_s": 10**30}},
        {"warming": {"enabled": "maybe"}},
        {"warming": {"next_warm_at": "2030-01-01T00:00:00Z"}},
        {"warming": [True]},
        {"status": "archived"},
        {"version": 9},
        {"owner": "me"},
        {"title": None},
        {"metadata": [1]},
        {},
    ],
)
def test_a_bad_patch_is_a_validation_error_and_changes_nothing(api, thread, body):
    assert_error(api.patch(detail(thread), body), 400, "validation_error")

    thread.refresh_from_db()
    assert thread.version == 1
    assert thread.compaction_keep_last == 10 and thread.warming_interval_s == 240


# --- Archive -----------------------------------------------------------------------------


def test_archiving_answers_with_the_archived_thread(api, thread):
    response = api.post(f"{URL}{thread.id}/archive")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "archived"
    assert response.json()["version"] == 2
    assert response["ETag"] == '"2"'


def test_archiving_twice_changes_nothing_more(api, thread):
    api.post(f"{URL}{thread.id}/archive")

    response = api.post(f"{URL}{thread.id}/archive")

    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert Event.objects.filter(thread_id=thread.id, kind="thread.archived").count() == 1


ARCHIVED_WRITES = [
    ("post", "messages", {"messages": [{"role": "user", "content": "x"}]}),
    ("put", "messages", {"messages": [{"role": "user", "content": "x"}]}),
    ("post", "messages/truncate", {"from_id": "a"}),
    ("put", "state", {"state": {"k": 1}}),
    ("patch", "", {"title": "x"}),
    ("post", "close", None),
    ("post", "open", None),
]


@pytest.mark.parametrize("method,path,body", ARCHIVED_WRITES)
def test_every_write_to_an_archived_thread_is_409(api, thread, method, path, body):
    # given
    history.messages_append(thread=thread, messages=[{"id": "a", "role": "user", "content": "hi"}])
    Thread.objects.filter(pk=thread.pk).update(lifecycle="closed")
    thread = services.thread_archive(thread=thread)
    url = f"{URL}{thread.id}/{path}" if path else detail(thread)

    # when
    response = getattr(api, method)(url, body)

    # then
    assert_error(response, 409, "thread_archived")
    after = Thread.objects.get(pk=thread.pk)
    assert (after.version, after.history_version, after.title) == (
        thread.version,
        thread.history_version,
        thread.title,
    )
    assert (after.lifecycle, after.state) == ("closed", None)
    assert list(Message.objects.filter(thread=thread).values_list("message_id", "content")) == [
        ("a", "hi")
    ]


def test_an_archived_thread_can_still_be_read(api, thread):
    history.messages_append(thread=thread, messages=[{"id": "a", "role": "user", "content": "hi"}])
    services.thread_state_set(thread=thread, state={"k": 1})
    services.thread_archive(thread=thread)

    assert api.get(detail(thread)).json()["status"] == "archived"
    assert [m["id"] for m in api.get(f"{URL}{thread.id}/messages").json()["results"]] == ["a"]
    assert api.get(f"{URL}{thread.id}/state").json() == {"state": {"k": 1}}
    assert thread.id in listed_ids(api.get(URL))


# --- Delete ------------------------------------------------------------------------------


def test_deleting_a_thread_removes_it_and_its_messages_but_keeps_its_events(api, thread):
    history.messages_append(thread=thread, messages=[{"role": "user", "content": "hi"}])

    response = api.delete(detail(thread))

    assert response.status_code == 204
    assert not response.content
    assert_error(api.get(detail(thread)), 404, "not_found")
    assert_error(api.delete(detail(thread)), 404, "not_found")
    assert not Message.objects.filter(thread_id=thread.id).exists()
    kinds = list(Event.objects.filter(thread_id=thread.id).values_list("kind", flat=True))
    assert kinds == ["thread.created", "thread.deleted"]


# --- Close and open ----------------------------------------------------------------------


def test_closing_a_thread_sets_lifecycle_closed_and_turns_warming_off(api, thread):
    Thread.objects.filter(pk=thread.pk).update(
        warming_enabled=True, next_warm_at="2030-01-01T00:00:00Z"
    )

    response = api.post(f"{URL}{thread.id}/close")

    assert response.status_code == 200, response.content
    assert response.json()["lifecycle"] == "closed"
    assert response.json()["warming"]["enabled"] is False
    assert response["ETag"] == f'"{response.json()["version"]}"'
    thread.refresh_from_db()
    assert thread.next_warm_at is None


def test_opening_a_closed_thread_makes_it_idle(api, thread):
    api.post(f"{URL}{thread.id}/close")

    response = api.post(f"{URL}{thread.id}/open")

    assert response.status_code == 200
    assert response.json()["lifecycle"] == "idle"
    assert response.json()["version"] == 3


def test_closing_a_closed_thread_or_opening_an_open_one_changes_nothing(api, thread):
    assert api.post(f"{URL}{thread.id}/open").json()["version"] == 1
    assert api.post(f"{URL}{thread.id}/close").json()["version"] == 2
    assert api.post(f"{URL}{thread.id}/close").json()["version"] == 2


# --- Outsider ----------------------------------------------------------------------------

OUTSIDER_CALLS = [
    ("get", "", None),
    ("patch", "", {"title": "pwned"}),
    ("delete", "", None),
    ("post", "archive", None),
    ("post", "close", None),
    ("post", "open", None),
    ("post", "fork", {}),
    ("get", "state", None),
    ("put", "state", {"state": {"pwned": True}}),
    ("get", "messages", None),
    ("post", "messages", {"messages": [{"role": "user", "content": "pwned"}]}),
    ("put", "messages", {"messages": []}),
    ("post", "messages/truncate", {"from_id": "a"}),
]


@pytest.mark.parametrize("method,path,body", OUTSIDER_CALLS)
def test_an_outsider_gets_404_from_every_endpoint_of_a_thread(
    api, outsider, thread, method, path, body
):
    # given
    history.messages_append(thread=thread, messages=[{"id": "a", "role": "user", "content": "hi"}])
    before = Thread.objects.filter(pk=thread.pk).values().get()
    events_before = Event.objects.count()
    url = f"{URL}{thread.id}/{path}" if path else detail(thread)

    # when
    response = getattr(outsider, method)(url, *([body] if body is not None else []))

    # then
    assert_error(response, 404, "not_found")
    assert Thread.objects.filter(pk=thread.pk).values().get() == before
    assert Thread.objects.count() == 1
    assert list(Message.objects.values_list("message_id", flat=True)) == ["a"]
    assert Event.objects.count() == events_before


def test_an_outsider_cannot_create_a_thread_in_our_project(api, outsider, project):
    assert_error(outsider.post(URL, {"project": project.id}), 404, "not_found")

    assert not Thread.objects.exists()


def test_an_outsider_does_not_see_our_threads_in_lists(api, outsider, thread):
    theirs = services.thread_create(
        tenant=outsider.tenant, project_id=ProjectFactory(tenant=outsider.tenant).id
    )

    assert listed_ids(outsider.get(URL)) == [theirs.id]
    assert listed_ids(outsider.get(URL, {"project": thread.project_id})) == []
    assert listed_ids(api.get(URL)) == [thread.id]
