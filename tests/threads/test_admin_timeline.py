"""The conversation view of a thread in the admin: a paginated timeline of its messages
(roles, text, tool calls with their inputs and results, thinking collapsed, metadata),
compaction summaries linked to their archived originals, the state slice and the queued
steering messages; a cold thread is read from its snapshot and stays cold."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from tests.admin_filters import CONVERSATION
from tests.threads.conversation.helpers import append, say
from threads import history, services
from threads.admin import timeline
from threads.conversation import queue
from threads.conversation.compaction import compaction_request, compaction_run
from threads.models import Compaction, Event, Message, Thread, Tier
from threads.storage import tiers

pytestmark = pytest.mark.django_db


def conversation(thread: Thread) -> str:
    return reverse("admin:threads_thread_conversation", args=[quote(thread.pk)])


@pytest.fixture
def talked(thread):
    history.messages_append(thread=thread, messages=CONVERSATION)
    services.thread_state_set(thread=thread, state={"plan": ["look up", "answer"]})
    queue.queue_enqueue(thread=thread, content="Answer in Fahrenheit too.")
    thread.refresh_from_db()
    return thread


def test_a_hot_thread_reads_as_a_timeline_with_its_state_and_queue(admin_client, talked):
    response = admin_client.get(conversation(talked))

    assert response.status_code == 200
    page = response.content.decode()
    assert response.context["page"].source == "database"
    assert [m["seq"] for m in response.context["page"].messages] == [1, 2, 3, 4]
    assert "What is the weather in Lisbon?" in page
    # the tool call with its input, linked to its result two messages later
    assert 'id="tool-tu_1"' in page and "weather" in page and "&quot;city&quot;" in page
    assert 'href="#seq-3">result at seq 3' in page
    assert "21 C, sunny" in page
    # thinking is collapsed; metadata is shown
    assert '<details class="tl-thinking"><summary>Thinking</summary>' in page
    assert "I should call the weather tool." in page
    assert "claude-test" in page
    # beside it: the state slice and the queued steering message
    assert "look up" in page
    assert "Answer in Fahrenheit too." in page


def test_the_timeline_is_paginated_both_ways(admin_client, thread, settings):
    append(thread, say(7))

    first = timeline.timeline_page(thread=thread, window=timeline.Window(), size=3)
    second = timeline.timeline_page(thread=thread, window=timeline.Window(after=3), size=3)
    latest = timeline.timeline_page(thread=thread, window=timeline.Window(before=8), size=3)

    assert [m["seq"] for m in first.messages] == [1, 2, 3]
    assert (first.has_older, first.has_newer) == (False, True)
    assert [m["seq"] for m in second.messages] == [4, 5, 6]
    assert (second.has_older, second.has_newer) == (True, True)
    assert [m["seq"] for m in latest.messages] == [5, 6, 7]
    assert (latest.has_older, latest.has_newer) == (True, False)
    response = admin_client.get(conversation(thread), {"after": "abc"})  # bad cursor: page 1
    assert response.status_code == 200
    assert response.context["page"].first_seq == 1


def test_a_cold_thread_is_read_from_its_snapshot_and_stays_cold(admin_client, talked, s3):
    tiers.thread_flush(thread=talked)
    talked.refresh_from_db()
    assert talked.tier == Tier.COLD
    assert not Message.objects.filter(thread=talked).exists()

    response = admin_client.get(conversation(talked))

    assert response.status_code == 200
    page = response.context["page"]
    assert page.source == "snapshot" and page.error == ""
    assert [m["id"] for m in page.messages] == ["m1", "m2", "m3", "m4"]
    assert "It is 21 C and sunny in Lisbon." in response.content.decode()
    assert "the thread was not hydrated" in response.content.decode()
    talked.refresh_from_db()
    assert talked.tier == Tier.COLD  # not hydrated
    assert not Message.objects.filter(thread=talked).exists()
    assert not Event.objects.filter(thread_id=talked.pk, kind="thread.hydrated").exists()


def test_a_cold_thread_page_says_its_messages_are_in_the_snapshot_not_zero(
    admin_client, talked, s3
):
    tiers.thread_flush(thread=talked)

    response = admin_client.get(reverse("admin:threads_thread_change", args=[quote(talked.pk)]))

    page = response.content.decode()
    assert "conversation (4 messages, in the cold snapshot)" in page
    assert conversation(talked) in page


def test_a_cold_thread_whose_snapshot_is_gone_shows_why(admin_client, talked, s3):
    tiers.thread_flush(thread=talked)
    talked.refresh_from_db()
    s3.client().delete_object(Bucket=s3.bucket, Key=talked.cold_key)

    response = admin_client.get(conversation(talked))

    assert response.status_code == 200
    assert response.context["page"].error == "No object at that key."
    talked.refresh_from_db()
    assert talked.tier == Tier.COLD


def test_a_compaction_summary_is_marked_with_a_link_to_its_originals(
    admin_client, thread, s3, settings
):
    settings.LLM_PROVIDER = "local"
    append(thread, say(8))
    done = compaction_request(thread=thread, keep_last=3)
    compaction_run(compaction_id=done.id)

    response = admin_client.get(conversation(thread))

    summary = response.context["page"].messages[0]
    assert summary["compaction"]["id"] == done.pk
    originals = reverse("admin:threads_compaction_originals", args=[quote(done.pk)])
    assert f'href="{originals}">archived originals' in response.content.decode()
    assert admin_client.get(originals).status_code == 200


def test_the_view_is_for_staff_only_and_a_missing_thread_is_404(client, admin_client):
    assert admin_client.get("/admin/threads/thread/thd_missing/conversation/").status_code == 404
    anonymous = client.get("/admin/threads/thread/thd_missing/conversation/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_the_message_list_of_a_cold_thread_points_to_its_snapshot(admin_client, talked, s3):
    tiers.thread_flush(thread=talked)

    response = admin_client.get(
        reverse("admin:threads_message_changelist"), {"thread__id__exact": talked.pk}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Thread {talked.pk} is cold: its 4 messages are in its snapshot" in page
    assert conversation(talked) in page


def test_a_queued_message_is_cancelled_from_its_page_once(admin_client, talked):
    item = queue.queue_list(thread=talked).get()
    url = reverse("admin:threads_queuedmessage_act", args=[quote(item.pk), "cancel"])

    first = admin_client.post(url, follow=True)
    again = admin_client.post(url, follow=True)

    assert "Cancelled 1 queued message." in first.content.decode()
    assert "1 queued message already delivered or cancelled; nothing was done." in (
        again.content.decode()
    )
    assert Event.objects.filter(thread_id=talked.pk, kind="queue.cancelled").count() == 1


def test_content_of_any_shape_renders_as_known_blocks():
    blocks = timeline.content_blocks(
        [
            {"type": "redacted_thinking", "data": "x"},
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "is_error": True,
                "content": [{"type": "text", "text": "boom"}],
            },
            {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
            "a bare string",
        ]
    )

    assert [b["kind"] for b in blocks] == ["thinking", "tool_result", "other", "other"]
    assert blocks[0]["text"] == "(redacted)"
    assert blocks[1]["is_error"] and blocks[1]["text"] == "boom"
    assert blocks[2]["type"] == "image" and '"data": "AAAA"' in blocks[2]["json"]
    assert timeline.content_blocks({"odd": 1}) == [{"kind": "other", "json": '{\n  "odd": 1\n}'}]


def test_compact_now_pressed_twice_queues_one_compaction(admin_client, thread):
    append(thread, say(12))
    url = reverse("admin:threads_thread_act", args=[quote(thread.pk), "compact_now"])

    first = admin_client.post(url, follow=True)  # its task runs on commit: not in this test
    again = admin_client.post(url, follow=True)

    assert "Queued 1 compaction." in first.content.decode()
    assert "1 compaction already queued or running; nothing was done." in again.content.decode()
    assert Compaction.objects.filter(thread=thread).count() == 1
