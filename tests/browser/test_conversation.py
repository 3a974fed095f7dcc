"""The operator's conversation view, session tree and change-page actions in a real
browser: log in, open a hot and a cold thread's conversation, walk a session tree, fail a
session from its page with a reason. Screenshots go to var/screenshots/."""

from __future__ import annotations

from playwright.sync_api import expect

from handoffs import services as handoffs
from sessions_app import spawn, summaries, transitions
from sessions_app.models import Session
from tests.admin_filters import CONVERSATION
from tests.sessions_app.fixtures import AGENT, USER, agent, workspace_root  # noqa: F401
from threads import history, services
from threads.conversation import queue
from threads.models import Event, Message, Thread, Tier
from threads.storage import tiers


def talked(api, project) -> Thread:
    thread = services.thread_create(tenant=api.tenant, project_id=project.pk, title="Weather")
    history.messages_append(thread=thread, messages=CONVERSATION)
    services.thread_state_set(thread=thread, state={"plan": ["look up", "answer"]})
    queue.queue_enqueue(thread=thread, content="Answer in Fahrenheit too.")
    return thread


def test_a_hot_threads_conversation_reads_as_a_timeline(
    admin_page, live_url, screenshot, api, project
):
    thread = talked(api, project)
    page = admin_page

    page.goto(f"{live_url}/admin/threads/thread/{thread.pk}/change/")
    page.click("a.change-link:has-text('Conversation')")

    expect(page.locator("#tl-source")).to_contain_text("Read from the database.")
    expect(page.locator(".tl-msg")).to_have_count(4)
    expect(page.locator("#seq-1")).to_contain_text("What is the weather in Lisbon?")
    expect(page.locator("#tool-tu_1")).to_contain_text("weather")
    expect(page.locator("#tool-tu_1")).to_contain_text('"city": "Lisbon"')
    expect(page.locator("#seq-3")).to_contain_text("21 C, sunny")
    # thinking is collapsed until clicked
    thinking = page.locator("#seq-2 details.tl-thinking")
    expect(thinking.locator(".tl-text")).to_be_hidden()
    thinking.locator("summary").click()
    expect(thinking.locator(".tl-text")).to_be_visible()
    expect(thinking).to_contain_text("I should call the weather tool.")
    # beside it: the state slice and the steering queue
    expect(page.locator("#tl-state")).to_contain_text("look up")
    expect(page.locator("#tl-queue")).to_contain_text("Answer in Fahrenheit too.")
    # the tool call links to its result
    page.click("#tool-tu_1 a:has-text('result at seq 3')")
    assert page.url.endswith("#seq-3")
    screenshot(page, "conversation-hot")


def test_a_cold_threads_conversation_is_read_from_its_snapshot(
    admin_page, live_url, screenshot, api, project, s3
):
    thread = talked(api, project)
    tiers.thread_flush(thread=thread)
    page = admin_page

    page.goto(f"{live_url}/admin/threads/thread/{thread.pk}/change/")
    related = page.locator("a:has-text('conversation (4 messages, in the cold snapshot)')")
    expect(related).to_be_visible()
    related.click()

    expect(page.locator("#tl-tier")).to_have_text("cold")
    expect(page.locator("#tl-source")).to_contain_text("the thread was not hydrated")
    expect(page.locator(".tl-msg")).to_have_count(4)
    expect(page.locator("#seq-4")).to_contain_text("It is 21 C and sunny in Lisbon.")
    screenshot(page, "conversation-cold")
    thread.refresh_from_db()
    assert thread.tier == Tier.COLD
    assert not Message.objects.filter(thread_id=thread.pk).exists()


def test_a_session_tree_shows_its_sub_sessions_and_handoffs(
    admin_page,
    live_url,
    screenshot,
    api,
    project,
    workspace_root,  # noqa: F811
):
    thread = talked(api, project)
    root = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
    child, _ = spawn.session_spawn(session=root, actor=AGENT)
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="Looked it up."),
    )
    sent = handoffs.handoff_execute(
        tenant=api.tenant,
        mode="broadcast",
        source_session_id=root.pk,
        expected_owner_version=0,
        recipients=[agent(1), agent(2)],
    )
    page = admin_page

    page.goto(f"{live_url}/admin/sessions_app/session/{child.pk}/change/")
    page.click("a.change-link:has-text('Session tree')")

    expect(page.locator("#st-ancestors")).to_contain_text(root.pk)
    page.click(f"#st-ancestors a:has-text('{root.pk}')")
    page.goto(f"{live_url}/admin/sessions_app/session/{root.pk}/tree/")
    expect(page.locator("#st-tree .st-current")).to_contain_text(root.pk)
    expect(page.locator("#st-tree [data-session]")).to_have_count(4)  # root, spawn, 2 broadcast
    expect(page.locator("#st-tree")).to_contain_text(f"broadcast {sent.id}")
    expect(page.locator("#st-tree")).to_contain_text("Looked it up.")
    expect(page.locator("#st-handoffs tbody tr")).to_have_count(2)
    screenshot(page, "session-tree")


def test_a_session_is_failed_from_its_change_page_with_a_reason(
    admin_page, live_url, screenshot, api, project
):
    thread = talked(api, project)
    session = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=AGENT)
    page = admin_page

    page.goto(f"{live_url}/admin/sessions_app/session/{session.pk}/change/")
    form = page.locator("form.change-action[data-action='fail']")
    form.locator("input[name=reason]").fill("stuck calling the weather tool")
    screenshot(page, "session-fail-before")
    form.locator("button").click()

    expect(page.locator("ul.messagelist")).to_contain_text("Failed 1 session.")
    assert Session.objects.get(pk=session.pk).status == "failed"
    event = Event.objects.get(session_id=session.pk, kind="session.failed")
    assert event.payload["reason"] == "stuck calling the weather tool"

    form = page.locator("form.change-action[data-action='fail']")
    form.locator("input[name=reason]").fill("again")
    form.locator("button").click()
    expect(page.locator("ul.messagelist")).to_contain_text(
        "1 session already failed; nothing was done."
    )
    assert Event.objects.filter(session_id=session.pk, kind="session.failed").count() == 1
    screenshot(page, "session-fail-after")
