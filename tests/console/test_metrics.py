"""GET /metrics: off without METRICS_TOKEN, refused without it, and its figures move when
the operations they count happen through the API."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tasks.tasks import compaction_run_task
from tests.conftest import assert_error
from tests.sessions_app.fixtures import AGENT

TOKEN = "metrics-secret-for-tests"
SESSIONS = "/api/v1/sessions/"


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape() -> dict[tuple[str, tuple], float]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_do_not_exist_without_a_token(db, settings):
    settings.METRICS_TOKEN = ""
    assert_error(Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything"), 404, "not_found")


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
def test_metrics_refuse_a_missing_or_wrong_token(db, metrics_on, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get("/metrics", **extra)
    assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_figures_move_with_the_operations(
    api, project, metrics_on, llm, django_capture_on_commit_callbacks
):
    run_after_commit = django_capture_on_commit_callbacks
    before = scrape()

    # a thread with messages, read twice: a miss (the database, then a cache fill) and a hit
    thread = api.post("/api/v1/threads/", {"project": project.id, "title": "m"}).json()
    tid = thread["id"]
    messages = [
        {"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant", "content": f"text {i}"}
        for i in range(14)
    ]
    with run_after_commit(execute=True):  # the cache fill the miss asks for
        assert (
            api.post(f"/api/v1/threads/{tid}/messages", {"messages": messages}).status_code == 201
        )
        assert api.get(f"/api/v1/threads/{tid}/messages").status_code == 200
    assert api.get(f"/api/v1/threads/{tid}/messages").status_code == 200

    # a turn settled with usage
    session = api.post(SESSIONS, {"thread": tid, "actor": AGENT}).json()["id"]
    assert api.post(f"{SESSIONS}{session}/turns/start/").status_code == 200
    usage = {"input_tokens": 100, "cache_read_tokens": 300, "cache_creation_tokens": 0}
    settled = api.post(
        f"{SESSIONS}{session}/turns/settle/", {"usage": {**usage, "output_tokens": 7}}
    )
    assert settled.status_code == 200, settled.content

    # a compaction whose first provider call is overloaded (a retry), a warm, a handoff
    llm.fail_next(1, status=529)
    with pytest.raises(Retry), run_after_commit(execute=True):  # the task asks for a retry
        compact = api.post(f"/api/v1/threads/{tid}/compact", {"keep_last": 2})
    assert compact.status_code == 202, compact.content
    with run_after_commit(execute=True):  # the retry, as the worker runs it when it is due
        compaction_run_task.apply(args=[compact.json()["id"]])
    warm = api.post(f"/api/v1/threads/{tid}/warm")
    assert warm.status_code == 200, warm.content
    source = api.get(f"{SESSIONS}{session}/").json()
    handoff = api.post(
        "/api/v1/handoffs/",
        {
            "mode": "single",
            "source_session": session,
            "expected_owner_version": source["owner_version"],
            "recipients": [AGENT],
        },
    )
    assert handoff.status_code == 201, handoff.content

    # flushed to cold, then hydrated back
    assert api.post(f"/api/v1/threads/{tid}/flush").status_code == 200
    cold = scrape()
    assert api.post(f"/api/v1/threads/{tid}/hydrate").status_code == 200
    after = scrape()

    def moved(name, samples=after, **labels):
        return value(samples, name, **labels) - value(before, name, **labels)

    assert moved("threadline_threads", cold, tier="cold", lifecycle="idle") == 1
    assert moved("threadline_threads", tier="hot", lifecycle="idle") == 1
    assert moved("threadline_flushes_total") == 1
    assert moved("threadline_hydrates_total") == 1
    assert moved("threadline_compactions_total", outcome="succeeded") == 1
    assert moved("threadline_provider_retries_total") == 1
    assert moved("threadline_warms_total", outcome="completed") == 1
    assert moved("threadline_handoffs_total", outcome="committed") == 1
    assert moved("threadline_turns_settled_total") == 1
    assert moved("threadline_turn_tokens_total", kind="cache_read_tokens") == 300
    assert moved("threadline_turn_tokens_total", kind="input_tokens") == 100
    assert moved("threadline_events_total", kind="thread.created") == 1
    assert moved("threadline_sessions", status="idle") == 2  # the source and the recipient
    assert moved("threadline_cache_reads_total", result="miss") >= 1
    assert moved("threadline_cache_reads_total", result="hit") >= 1
    route = "thread-messages"
    assert moved("threadline_http_requests_total", method="GET", route=route, status="200") == 2
    assert moved("threadline_http_request_duration_seconds_count", method="GET", route=route) == 2
    assert value(after, "threadline_event_tally_lag") == 0
