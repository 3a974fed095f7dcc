"""Another tenant's sessions and handoffs are indistinguishable from missing ones: 404 on
every endpoint, absent from every list, and nothing changes."""

from __future__ import annotations

from handoffs import services as handoff_services
from sessions_app import transitions
from sessions_app.models import Session, SubSession, Summary
from tests.conftest import assert_error
from tests.sessions_app.fixtures import AGENT, USER, agent, url
from threads import services as thread_services
from threads import tenancy

SESSION_ENDPOINTS = [
    ("get", ""),
    ("get", "children"),
    ("post", "turns/start"),
    ("post", "turns/settle"),
    ("post", "hitl/request"),
    ("post", "hitl/resolve"),
    ("post", "fail"),
    ("post", "archive"),
    ("post", "merge"),
    ("post", "spawn"),
    ("post", "summary"),
    ("post", "interventions"),
]

BODIES = {
    "turns/settle": {"usage": {"input_tokens": 1, "output_tokens": 1}},
    "spawn": {"actor": AGENT},
    "summary": {"outcome": {"status": "succeeded"}, "agent_summary": "done"},
    "interventions": {"actor": AGENT},
}


def test_an_outsider_gets_404_on_every_endpoint_and_changes_nothing(api, outsider, thread, session):
    handoff = handoff_services.handoff_execute(
        tenant=api.tenant,
        mode="broadcast",
        source_session_id=session.pk,
        expected_owner_version=0,
        recipients=[agent(1), agent(2)],
    )
    before = list(Session.objects.order_by("pk").values())

    for method, suffix in SESSION_ENDPOINTS:
        if method == "post":
            response = outsider.post(url(session, suffix), BODIES.get(suffix))
        else:
            response = outsider.get(url(session, suffix))
        assert_error(response, 404, "not_found")
    assert_error(outsider.get(f"/api/v1/handoffs/{handoff.id}/"), 404, "not_found")
    response = outsider.post(
        "/api/v1/handoffs/",
        {
            "mode": "single",
            "source_session": handoff.recipient_sessions[0].pk,
            "expected_owner_version": 0,
            "recipients": [USER],
        },
    )
    assert_error(response, 404, "not_found")
    response = outsider.post("/api/v1/sessions/", {"thread": thread.pk, "actor": USER})
    assert_error(response, 404, "not_found")

    assert outsider.get("/api/v1/sessions/").json() == {"results": [], "next": None}
    assert outsider.get("/api/v1/sessions/", {"thread": thread.pk}).json()["results"] == []
    assert list(Session.objects.order_by("pk").values()) == before
    assert SubSession.objects.count() == 2
    assert not Summary.objects.exists()
    # And the owner still sees everything.
    assert len(api.get("/api/v1/sessions/").json()["results"]) == 3


def test_an_outsiders_own_sessions_do_not_leak_into_ours(api, outsider, session):
    project = tenancy.project_create(tenant=outsider.tenant, name="theirs")
    theirs = thread_services.thread_create(tenant=outsider.tenant, project_id=project.pk)
    transitions.session_create(tenant=outsider.tenant, thread_id=theirs.pk, actor=USER)

    ours = api.get("/api/v1/sessions/").json()["results"]

    assert [s["id"] for s in ours] == [session.pk]
