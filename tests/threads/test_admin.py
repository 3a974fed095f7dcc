"""The operator's admin: every page renders, lists filter and search, actions and edits go
through the services (and so record events), API keys show their secret once, and the
message and event trails are read-only and never counted in full."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from common.admin import NoCountPaginator
from tests.factories import ProjectFactory
from threads import events, history, services, tenancy
from threads.models import (
    ApiKey,
    Event,
    Lifecycle,
    Message,
    Project,
    Tenant,
    Thread,
    ThreadStatus,
)

pytestmark = pytest.mark.django_db


def changelist(model) -> str:
    return reverse(f"admin:threads_{model._meta.model_name}_changelist")


def change(obj) -> str:
    return reverse(f"admin:threads_{obj._meta.model_name}_change", args=[quote(obj.pk)])


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def data(api, project, thread):
    """One of everything: a tenant with a key, a project, a thread with messages, events."""
    history.messages_append(
        thread=thread,
        messages=[
            {"id": "m1", "role": "user", "content": "hello there"},
            {"id": "m2", "role": "assistant", "content": [{"type": "text", "text": "hi!"}]},
        ],
    )
    services.thread_update(thread=thread, changes={"title": "Renamed"})
    thread.refresh_from_db()
    return {
        "tenant": api.tenant,
        "api_key": api.tenant.api_keys.get(),
        "project": project,
        "thread": thread,
        "message": Message.objects.filter(thread=thread).first(),
        "event": Event.objects.filter(thread_id=thread.id).first(),
    }


def make_thread(project, title: str) -> Thread:
    return services.thread_create(tenant=project.tenant, project_id=project.id, title=title)


# --- Every page renders ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tenant", "api_key", "project", "thread", "message", "event"])
def test_every_changelist_and_change_page_renders_with_data(admin_client, data, name):
    obj = data[name]

    response = admin_client.get(changelist(type(obj)))
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1

    response = admin_client.get(change(obj))
    assert response.status_code == 200


def test_the_admin_index_lists_every_model(admin_client, data):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    for model in (Tenant, ApiKey, Thread, Message, Event):
        assert changelist(model) in response.content.decode()


def test_the_api_key_pages_never_show_the_secret_hash(admin_client, data):
    api_key = data["api_key"]
    for url in (changelist(ApiKey), change(api_key)):
        assert api_key.secret_hash not in admin_client.get(url).content.decode()


def test_a_threads_page_links_to_its_messages_and_events(admin_client, data):
    thread = data["thread"]
    response = admin_client.get(change(thread))
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    links = response.content.decode()
    assert f"thread__id__exact={thread.id}" in links
    assert f"thread_id={thread.id}" in links

    response = admin_client.get(changelist(Message), {"thread__id__exact": thread.id})
    assert [m.message_id for m in response.context["cl"].result_list] == ["m1", "m2"]

    response = admin_client.get(
        changelist(Event), {"tenant__id__exact": thread.tenant_id, "thread_id": thread.id}
    )
    assert [e.kind for e in response.context["cl"].result_list] == [
        "thread.edited",
        "thread.created",
    ]


def test_a_tenants_links_list_only_its_keys_projects_threads_and_events(
    admin_client, data, outsider
):
    ProjectFactory(tenant=outsider.tenant)
    tenant = data["tenant"]
    for model in (ApiKey, Project, Thread, Event):
        response = admin_client.get(changelist(model), {"tenant__id__exact": tenant.id})
        assert response.status_code == 200
        rows = list(response.context["cl"].result_list)
        assert rows and {row.tenant_id for row in rows} == {tenant.id}, model


# --- Filters and search ------------------------------------------------------------------


def test_threads_filter_by_status_lifecycle_and_tier(admin_client, project):
    # given
    archived = make_thread(project, "archived one")
    services.thread_archive(thread=archived)
    closed = make_thread(project, "closed one")
    services.thread_close(thread=closed)
    idle = make_thread(project, "idle one")

    def listed(**params) -> set[str]:
        response = admin_client.get(changelist(Thread), params)
        assert response.status_code == 200
        return {t.id for t in response.context["cl"].result_list}

    # then
    assert listed(status__exact="archived") == {archived.id}
    assert listed(status__exact="open") == {closed.id, idle.id}
    assert listed(lifecycle__exact="closed") == {closed.id}
    assert listed(lifecycle__exact="idle") == {archived.id, idle.id}
    assert listed(tier__exact="hot") == {archived.id, closed.id, idle.id}
    assert listed(tier__exact="cold") == set()


def test_threads_are_found_by_exact_id_and_by_title(admin_client, project):
    first = make_thread(project, "Billing question")
    second = make_thread(project, "Refund request")

    def found(q: str) -> set[str]:
        response = admin_client.get(changelist(Thread), {"q": q})
        assert response.status_code == 200
        return {t.id for t in response.context["cl"].result_list}

    assert found(first.id) == {first.id}
    assert found(first.id[:-1]) == set()  # an id matches exactly, not as a prefix
    assert found("refund") == {second.id}
    assert found(project.id) == {first.id, second.id}


def test_messages_are_found_by_thread_id_and_filtered_by_role(admin_client, data, project):
    other = make_thread(project, "other")
    history.messages_append(thread=other, messages=[{"role": "user", "content": "x"}])
    thread = data["thread"]

    response = admin_client.get(changelist(Message), {"q": thread.id})
    assert {m.thread_id for m in response.context["cl"].result_list} == {thread.id}

    response = admin_client.get(changelist(Message), {"q": thread.id, "role__exact": "assistant"})
    assert [m.message_id for m in response.context["cl"].result_list] == ["m2"]


def test_events_filter_by_kind_and_search_by_public_thread_and_session_id(
    admin_client, data, project
):
    thread = data["thread"]
    other = make_thread(project, "other")
    session_event = events.event_record(
        tenant_id=project.tenant_id, kind="session.created", session_id="ses_abc123def456"
    )

    def listed(**params) -> list[Event]:
        response = admin_client.get(changelist(Event), params)
        assert response.status_code == 200
        return list(response.context["cl"].result_list)

    edited = listed(kind="thread.edited")
    assert [e.thread_id for e in edited] == [thread.id]
    assert {e.kind for e in listed(kind="session.created")} == {"session.created"}

    assert {e.kind for e in listed(q=thread.id)} == {"thread.created", "thread.edited"}
    assert {e.thread_id for e in listed(q=other.id)} == {other.id}
    assert listed(q=edited[0].public_id) == edited
    assert listed(q="ses_abc123def456") == [session_event]


# --- Actions call the services ---------------------------------------------------------


def run_action(admin_client, action: str, threads: list[Thread]):
    response = admin_client.post(
        changelist(Thread),
        {"action": action, "_selected_action": [t.pk for t in threads]},
        follow=True,
    )
    assert response.status_code == 200
    return texts(response)


def kinds_of(thread: Thread) -> list[str]:
    return list(Event.objects.filter(thread_id=thread.id).values_list("kind", flat=True))


def test_the_archive_action_archives_through_the_service(admin_client, project):
    # given
    first, second = make_thread(project, "a"), make_thread(project, "b")
    services.thread_archive(thread=second)

    # when
    messages = run_action(admin_client, "archive", [first, second])

    # then
    first.refresh_from_db()
    assert first.status == ThreadStatus.ARCHIVED
    assert first.version == 2
    assert kinds_of(first) == ["thread.created", "thread.archived"]
    assert kinds_of(second).count("thread.archived") == 1
    assert messages == ["Archived 1 thread. 1 already archived."]


def test_the_close_and_open_actions_change_the_lifecycle_and_record_events(admin_client, project):
    thread = make_thread(project, "a")

    assert run_action(admin_client, "close", [thread]) == ["Closed 1 thread."]
    thread.refresh_from_db()
    assert thread.lifecycle == Lifecycle.CLOSED

    assert run_action(admin_client, "open", [thread]) == ["Opened 1 thread."]
    thread.refresh_from_db()
    assert thread.lifecycle == Lifecycle.IDLE
    assert kinds_of(thread) == ["thread.created", "thread.closed", "thread.opened"]


def test_an_action_counts_the_threads_the_service_refused(admin_client, project):
    # given
    open_thread, archived = make_thread(project, "a"), make_thread(project, "b")
    services.thread_archive(thread=archived)

    # when
    messages = run_action(admin_client, "close", [open_thread, archived])

    # then
    assert messages == ["Closed 1 thread. 1 failure (thread_archived: 1)."]
    archived.refresh_from_db()
    assert archived.lifecycle == Lifecycle.IDLE
    assert "thread.closed" not in kinds_of(archived)


# --- Editing and deleting threads --------------------------------------------------------


def thread_form(thread: Thread, **changes) -> dict:
    data = {
        "title": thread.title,
        "metadata": "{}",
        "initial-metadata": "{}",  # the hidden input Django renders for a callable default
        "reasoning_effort": thread.reasoning_effort,
        "compaction_threshold_tokens": "",
        "compaction_threshold_percent": thread.compaction_threshold_percent,
        "compaction_context_window": thread.compaction_context_window,
        "compaction_keep_last": thread.compaction_keep_last,
        "warming_interval_s": thread.warming_interval_s,
        "warming_max_idle_warms": thread.warming_max_idle_warms,
    }
    data.update(changes)
    return data


def test_editing_a_thread_goes_through_thread_update(admin_client, thread):
    response = admin_client.post(
        change(thread), thread_form(thread, title="New title", metadata='{"customer": "acme"}')
    )
    assert response.status_code == 302, response.content
    assert response["Location"] == changelist(Thread)

    edited = Thread.objects.get(pk=thread.pk)
    assert (edited.title, edited.metadata, edited.version) == ("New title", {"customer": "acme"}, 2)
    event = Event.objects.get(thread_id=thread.id, kind="thread.edited")
    assert event.payload["fields"] == ["metadata", "title"]


def test_editing_a_thread_keeps_counters_written_meanwhile(admin_client, thread):
    # given an append that lands after the operator opened the form
    history.messages_append(thread=thread, messages=[{"role": "user", "content": "x"}])

    # when the form (which never carries counters) is saved
    admin_client.post(change(thread), thread_form(thread, title="Renamed"))

    # then
    edited = Thread.objects.get(pk=thread.pk)
    assert (edited.title, edited.last_seq, edited.message_count) == ("Renamed", 1, 1)


def test_a_thread_form_without_changes_writes_nothing(admin_client, thread):
    admin_client.post(change(thread), thread_form(thread))
    assert Thread.objects.get(pk=thread.pk).version == 1
    assert kinds_of(thread) == ["thread.created"]


def test_thread_metadata_must_be_an_object(admin_client, thread):
    response = admin_client.post(change(thread), thread_form(thread, metadata="[1, 2]"))
    assert response.status_code == 200
    assert "Metadata must be a JSON object." in response.content.decode()


def test_an_archived_thread_is_read_only_in_the_admin(admin_client, thread):
    services.thread_archive(thread=thread)
    admin_client.post(change(thread), thread_form(thread, title="Sneaky"))
    assert Thread.objects.get(pk=thread.pk).title == "First thread"


def test_threads_cannot_be_added_in_the_admin(admin_client, db):
    assert admin_client.get(reverse("admin:threads_thread_add")).status_code == 403


def test_deleting_a_thread_goes_through_the_service(admin_client, data):
    thread = data["thread"]
    url = reverse("admin:threads_thread_delete", args=[quote(thread.pk)])

    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert dict(confirm.context["model_count"]) == {"threads": 1, "messages": 2}

    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert not Message.objects.filter(thread_id=thread.pk).exists()
    assert "thread.deleted" in kinds_of(thread)


# --- API keys and tenants: the secret is shown once ------------------------------------


def test_adding_an_api_key_shows_the_secret_once_and_stores_its_hash(admin_client, api):
    # when
    response = admin_client.post(
        reverse("admin:threads_apikey_add"), {"tenant": api.tenant.pk, "name": "ci"}
    )

    # then the page shows the secret, and it authenticates
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    assert secret in response.content.decode()
    api_key = ApiKey.objects.get(tenant=api.tenant, name="ci")
    assert tenancy.api_key_authenticate(secret=secret) == api_key

    # only its hash is stored
    assert api_key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert api_key.prefix == secret[:10]
    assert not ApiKey.objects.filter(secret_hash=secret).exists()

    # and it is never shown again
    for url in (changelist(ApiKey), change(api_key)):
        page = admin_client.get(url).content.decode()
        assert secret not in page
        assert api_key.secret_hash not in page


def test_the_api_key_add_form_asks_only_tenant_and_name(admin_client, db):
    response = admin_client.get(reverse("admin:threads_apikey_add"))
    assert response.status_code == 200
    assert set(response.context["adminform"].form.fields) == {"tenant", "name"}


def test_the_revoke_action_revokes_through_the_service(admin_client, api):
    api_key = api.tenant.api_keys.get()

    response = admin_client.post(
        changelist(ApiKey), {"action": "revoke", "_selected_action": [api_key.pk]}, follow=True
    )

    assert texts(response) == ["Revoked 1 API key."]
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert tenancy.api_key_authenticate(secret=api.secret) is None
    assert api.get("/api/v1/threads/").status_code == 401

    response = admin_client.get(changelist(ApiKey), {"state": "revoked"})
    assert list(response.context["cl"].result_list) == [api_key]


def test_adding_a_tenant_shows_its_first_api_key_once(admin_client, db):
    response = admin_client.post(reverse("admin:threads_tenant_add"), {"name": "acme"})

    assert response.status_code == 200
    tenant = Tenant.objects.get(name="acme")
    secret = response.context["secret"]
    assert tenancy.api_key_authenticate(secret=secret).tenant == tenant


def test_adding_a_project_goes_through_the_service(admin_client, api):
    response = admin_client.post(
        reverse("admin:threads_project_add"),
        {
            "tenant": api.tenant.pk,
            "name": "Ops",
            "max_delegation_depth": 4,
            "max_delegation_width": 8,
            "max_intervention_depth": 10,
            "workspace_backend": "none",
        },
    )
    assert response.status_code == 302, response.content
    assert api.tenant.projects.get().name == "Ops"


def test_api_keys_are_found_by_tenant_id(admin_client, api, outsider):
    response = admin_client.get(changelist(ApiKey), {"q": outsider.tenant.id})
    assert [k.tenant_id for k in response.context["cl"].result_list] == [outsider.tenant.id]


# --- Messages and events are read-only -------------------------------------------------


@pytest.mark.parametrize("name", ["message", "event"])
def test_messages_and_events_refuse_add_change_and_delete(admin_client, data, name):
    obj = data[name]
    model_name = obj._meta.model_name
    before = type(obj).objects.count()

    assert admin_client.get(reverse(f"admin:threads_{model_name}_add")).status_code == 403
    assert admin_client.post(reverse(f"admin:threads_{model_name}_add"), {}).status_code == 403
    assert admin_client.post(change(obj), {"kind": "x", "role": "x"}).status_code == 403
    delete_url = reverse(f"admin:threads_{model_name}_delete", args=[quote(obj.pk)])
    assert admin_client.get(delete_url).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403

    page = admin_client.get(change(obj))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert "delete_selected" not in admin_client.get(changelist(type(obj))).content.decode()
    assert type(obj).objects.count() == before


@pytest.mark.parametrize("model", [Message, Event, Thread])
def test_big_tables_are_never_counted_in_full(admin_client, data, model):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(changelist(model))
    assert response.status_code == 200

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the changelist shows a result count"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_the_no_count_paginator_is_exact_below_its_bound_and_capped_above(data, project):
    class Small(NoCountPaginator):
        exact_up_to = 3

    for n in range(5):
        make_thread(project, f"t{n}")
    events = Event.objects.all()

    assert Small(events.filter(kind="thread.edited"), 2).count == 1
    assert Small(events.filter(kind="thread.created"), 2).count == 4  # 6 exist: capped
    # Unfiltered above the bound: the planner's estimate, never less than the bound.
    assert Small(events, 2).count >= 4
    assert Small(events, 2).num_pages >= 2
    assert NoCountPaginator(events, 100).count == events.count()


def test_a_project_with_threads_can_be_viewed_but_not_deleted(admin_client, thread):
    url = reverse("admin:threads_project_delete", args=[thread.project_id])
    assert admin_client.get(url).status_code == 403
    assert admin_client.get(change(thread.project)).status_code == 200


def test_an_id_that_looks_quoted_opens_its_pages(admin_client):
    """Ids carry "_": the admin decodes "_24" in a path as "$", so every link quotes the id
    and every custom view unquotes it (a random id once sent its change page to a 302)."""
    from tests.factories import ThreadFactory

    thread = ThreadFactory(id="thd_24abcdef01234567")
    for url in (
        change(thread),
        reverse("admin:threads_thread_conversation", args=[quote(thread.pk)]),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert thread.pk in response.content.decode()
