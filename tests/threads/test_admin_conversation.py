"""The admin of compaction, warming and the steering queue: compaction history (read-only,
with a link to the archived originals), the queued messages, and the Thread admin's
"compact now" and "warm now" actions, which call the same services as the API."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.urls import reverse

from tests.threads.conversation.helpers import append, events, say
from threads.conversation.compaction import compaction_request, compaction_run
from threads.conversation.queue import queue_enqueue
from threads.models import Compaction, QueuedMessage, Thread

pytestmark = pytest.mark.django_db


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def run_action(admin_client, action: str, threads: list[Thread]) -> list[str]:
    response = admin_client.post(
        reverse("admin:threads_thread_changelist"),
        {"action": action, "_selected_action": [t.pk for t in threads]},
        follow=True,
    )
    assert response.status_code == 200
    return texts(response)


@pytest.fixture
def compacted(thread, s3, settings):
    settings.LLM_PROVIDER = "local"
    append(thread, say(14))
    compaction = compaction_request(thread=thread, keep_last=4)
    compaction_run(compaction_id=compaction.id)
    compaction.refresh_from_db()
    return compaction


def test_the_compaction_history_is_listed_read_only_with_a_link_to_the_originals(
    admin_client, compacted
):
    listed = admin_client.get(reverse("admin:threads_compaction_changelist"))
    assert listed.status_code == 200
    originals_url = reverse("admin:threads_compaction_originals", args=[quote(compacted.pk)])
    assert originals_url.encode() in listed.content
    assert b"10 archived messages" in listed.content

    page = admin_client.get(reverse("admin:threads_compaction_change", args=[quote(compacted.pk)]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # read-only

    originals = admin_client.get(originals_url)
    assert originals.status_code == 200
    assert b"Message number 9 talks about topic 0." in originals.content
    assert b"Message number 10 " not in originals.content


def test_the_compact_now_action_queues_a_compaction(
    admin_client, thread, settings, s3, django_capture_on_commit_callbacks
):
    settings.LLM_PROVIDER = "local"
    append(thread, say(15))  # (5 to summarize: a summary of 2 short ones would be longer)
    short = Thread.objects.create(tenant=thread.tenant, project=thread.project)
    with django_capture_on_commit_callbacks(execute=True):
        messages = run_action(admin_client, "compact_now", [thread, short])
    assert messages == ["Queued 1 compaction. 1 failure (too_short: 1)."]
    assert Compaction.objects.get(thread=thread).status == "succeeded"


def test_the_warm_now_action_warms_through_the_service(admin_client, thread, settings):
    settings.LLM_PROVIDER = "local"
    append(thread, say(2))
    messages = run_action(admin_client, "warm_now", [thread])
    assert messages == ["Warmed 1 thread. Cache hit 0% on average."]
    assert events(thread, "warm.completed")[0]["trigger"] == "manual"


def test_the_thread_list_shows_the_warming_column(admin_client, thread):
    Thread.objects.filter(pk=thread.pk).update(warming_enabled=True, last_cache_pct=87)
    response = admin_client.get(reverse("admin:threads_thread_changelist"))
    assert response.status_code == 200
    assert b"cache 87%" in response.content


def test_queued_messages_are_listed_and_can_be_cancelled(admin_client, thread):
    item = queue_enqueue(thread=thread, content="please also update the docs")
    changelist = reverse("admin:threads_queuedmessage_changelist")
    listed = admin_client.get(changelist)
    assert listed.status_code == 200 and b"please also update the docs" in listed.content
    response = admin_client.post(
        changelist, {"action": "cancel", "_selected_action": [item.pk]}, follow=True
    )
    assert texts(response) == ["Cancelled 1 queued message."]
    assert QueuedMessage.objects.get(pk=item.pk).status == "cancelled"
