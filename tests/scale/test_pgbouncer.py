"""The app behind PgBouncer in transaction pooling mode (issue 10, scale-out): two gunicorn
processes and the management commands reach the test database only through a real
pgbouncer (Debian's package, started by the fixture) whose pool has fewer server
connections (2) than there are clients (4 gunicorn workers), so consecutive transactions of
one client may land on different server sessions. With DATABASE_TRANSACTION_POOLING=true
nothing may depend on a session: no prepared statements, no server-side cursors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import make_caller
from tests.scale.services import Gunicorn, Http
from tests.threads.conversation.helpers import worker_env
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def bouncer_env(pgbouncer, s3, **extra: str) -> dict[str, str]:
    name = connection.settings_dict["NAME"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{pgbouncer.port}/{name}",
        "DATABASE_TRANSACTION_POOLING": "true",
        **worker_env(s3=s3),
        **extra,
    }


@pytest.fixture
def served(pgbouncer, s3):
    server = Gunicorn(bouncer_env(pgbouncer, s3), workers=2)
    server.start()
    yield server
    server.stop()


def ok(result: tuple[int, dict], *expected: int) -> dict:
    status, body = result
    assert status in (expected or (200, 201)), body
    return body


def test_the_api_flow_works_through_pgbouncer_in_transaction_mode(served, pgbouncer):
    caller = make_caller("bounced")
    http = Http(served.url, caller.secret)
    project = ok(http.call("POST", "/api/v1/projects/", {"name": "p"}))["id"]
    thread = ok(http.call("POST", "/api/v1/threads/", {"project": project, "title": "t"}))["id"]
    base = f"/api/v1/threads/{thread}"

    # appends, each the same statements again (psycopg would prepare them by the 5th)
    for i in range(15):
        ok(
            http.call(
                "POST",
                f"{base}/messages",
                {
                    "messages": [
                        {
                            "id": f"m{i}",
                            "role": "user",
                            "content": f"Message {i} is about step {i} of the deployment plan.",
                        }
                    ]
                },
            )
        )
    # a repeated id stores nothing (the paging below finds 15 contiguous seqs)
    ok(
        http.call(
            "POST",
            f"{base}/messages",
            {
                "messages": [
                    {
                        "id": "m3",
                        "role": "user",
                        "content": "Message 3 is about step 3 of the deployment plan.",
                    }
                ]
            },
        )
    )

    seqs, cursor = [], None
    while True:  # paging, every page a new transaction on some server connection
        page = ok(
            http.call("GET", f"{base}/messages?limit=4" + (f"&cursor={cursor}" if cursor else ""))
        )
        seqs += [m["seq"] for m in page["results"]]
        cursor = page["next"]
        if not cursor:
            break
    assert seqs == list(range(1, 16))

    ok(http.call("PUT", f"{base}/state", {"state": {"step": 1}}))
    assert ok(http.call("GET", f"{base}/state"))["state"] == {"step": 1}
    version = ok(http.call("GET", f"{base}/"))["version"]
    ok(http.call("PATCH", f"{base}/", {"title": "renamed"}, headers={"If-Match": f'"{version}"'}))

    # a flush (S3 + one transaction), a read that hydrates it (COPY), a compaction
    assert ok(http.call("POST", f"{base}/flush"))["tier"] == "cold"
    assert len(ok(http.call("GET", f"{base}/messages?limit=100"))["results"]) == 15
    compaction = ok(http.call("POST", f"{base}/compact", {"keep_last": 5}), 202)["id"]
    assert ok(http.call("GET", f"{base}/compactions/{compaction}/"))["status"] == "succeeded"

    # a session's turn, lists and the audit trail
    session = ok(
        http.call(
            "POST", "/api/v1/sessions/", {"thread": thread, "actor": {"kind": "agent", "id": "a"}}
        )
    )["id"]
    ok(http.call("POST", f"/api/v1/sessions/{session}/turns/start"))
    usage = {
        "input_tokens": 1,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "output_tokens": 1,
    }
    ok(http.call("POST", f"/api/v1/sessions/{session}/turns/settle", {"usage": usage}))
    assert ok(http.call("GET", f"/api/v1/threads/?project={project}&limit=1"))["results"]
    kinds = {
        e["kind"]
        for e in ok(http.call("GET", f"/api/v1/events/?thread={thread}&limit=1000"))["results"]
    }
    assert {"thread.flushed", "thread.hydrated", "thread.compacted"} <= kinds

    assert Thread.objects.get(pk=thread).message_count == 6  # a summary + the 5 kept
    assert "ERROR" not in pgbouncer.log() and "prepared statement" not in pgbouncer.log()


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_sweeps_that_stream_querysets_work_through_pgbouncer(pgbouncer, s3, project):
    # the idle-flush command and the retention sweep (.iterator(): a server-side cursor
    # unless they are disabled) through the pooler
    from threads import history, services

    thread = services.thread_create(tenant=project.tenant, project_id=project.pk)
    history.messages_append(thread=thread, messages=[{"id": "a", "role": "user", "content": "x"}])
    Thread.objects.filter(pk=thread.pk).update(last_activity_at="2000-01-01T00:00:00Z")
    project.idle_subsession_ttl_seconds = 60
    project.save(update_fields=["idle_subsession_ttl_seconds"])
    env = bouncer_env(pgbouncer, s3)
    manage(env, "flush_idle_threads")
    assert Thread.objects.get(pk=thread.pk).tier == "cold"
    out = manage(
        env, "shell", "-c",
        "from tasks.tasks import subsessions_retention; print(subsessions_retention())",
    )  # fmt: skip
    assert "archived" in out
