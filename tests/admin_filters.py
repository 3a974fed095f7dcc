"""Click every filter of every admin changelist: shared by the PostgreSQL test
(tests/test_admin_filters.py) and the SQLite run (tests/embedded/admin_filters_flow.py).

For each registered ModelAdmin: the changelist, then the changelist with facets
(?_facets=True), then every choice of every sidebar filter as the links that page shows
(which keep _facets=True, so each choice runs both its filter and every filter's facet
counts). Answers what was requested and what did not answer 200.
"""

from __future__ import annotations

from django.contrib import admin
from django.test import Client
from django.urls import reverse


def changelists() -> list[tuple[str, str]]:
    out = []
    for model in admin.site._registry:
        opts = model._meta
        out.append((opts.label, reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")))
    return sorted(out)


def click_every_filter(client: Client) -> tuple[list[str], list[str]]:
    """(every URL requested, the ones that failed with their status)."""
    requested: list[str] = []
    failed: list[str] = []

    def get(url: str):
        requested.append(url)
        response = client.get(url)
        if response.status_code != 200:
            failed.append(f"{response.status_code} {url}")
            return None
        return response

    for _label, url in changelists():
        get(url)
        response = get(f"{url}?_facets=True")
        if response is None or response.context is None or "cl" not in response.context:
            continue
        changelist = response.context["cl"]
        for spec in changelist.filter_specs:
            for choice in spec.choices(changelist):
                query = choice.get("query_string")
                if query:
                    get(f"{url}{query}")
    return requested, failed


def one_of_everything() -> dict:
    """A row of each kind the admin lists, made through the services: a tenant with a key,
    a project, a thread with messages (text, a tool call and its result, thinking), a
    queued steering message, a user session and an agent session that spawned a child
    which summarized, a failed session and a broadcast handoff."""
    from handoffs import services as handoffs
    from sessions_app import spawn, summaries, transitions
    from threads import history, services, tenancy
    from threads.conversation import queue

    tenant, _secret = tenancy.tenant_create(name="filters")
    project = tenancy.project_create(tenant=tenant, name="filters")
    thread = services.thread_create(tenant=tenant, project_id=project.pk, title="Filtered")
    history.messages_append(thread=thread, messages=CONVERSATION)
    queue.queue_enqueue(thread=thread, content="steer left")
    user = transitions.session_create(
        tenant=tenant, thread_id=thread.pk, actor={"kind": "user", "id": "u1"}
    )
    transitions.session_fail(session=user, reason="filters")
    agent = transitions.session_create(
        tenant=tenant, thread_id=thread.pk, actor={"kind": "agent", "id": "a1"}
    )
    child, edge = spawn.session_spawn(session=agent, actor={"kind": "agent", "id": "a2"})
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="child done"),
    )
    handoff = handoffs.handoff_execute(
        tenant=tenant,
        mode="broadcast",
        source_session_id=agent.pk,
        expected_owner_version=0,
        recipients=[{"kind": "agent", "id": "b1"}, {"kind": "agent", "id": "b2"}],
    )
    return {
        "tenant": tenant,
        "project": project,
        "thread": thread,
        "agent": agent,
        "child": child,
        "edge": edge,
        "handoff": handoff,
    }


CONVERSATION = [
    {"id": "m1", "role": "user", "content": "What is the weather in Lisbon?"},
    {
        "id": "m2",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "I should call the weather tool."},
            {"type": "text", "text": "Let me look that up."},
            {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Lisbon"}},
        ],
    },
    {
        "id": "m3",
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "21 C, sunny"}],
    },
    {
        "id": "m4",
        "role": "assistant",
        "content": [{"type": "text", "text": "It is 21 C and sunny in Lisbon."}],
        "metadata": {"model": "claude-test"},
    },
]
