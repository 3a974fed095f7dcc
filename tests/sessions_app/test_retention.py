"""Retention of sub-sessions (sessions_app/retention.py): archive to a cold bundle on the S3
endpoint (moto_server), dispose the workspace, restore. Workspaces are real directories."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sessions_app import retention, spawn, summaries
from sessions_app.models import Session, SubSession, Workspace
from tasks.schedules import SCHEDULES
from tasks.tasks import subsessions_retention
from tests.conftest import assert_error
from tests.sessions_app.fixtures import agent
from threads import history
from threads.models import Event, Message

pytestmark = pytest.mark.django_db


def url(edge, action):
    return f"/api/v1/subsessions/{edge.pk}/{action}"


@pytest.fixture
def finished(session, project, workspace_root, s3):
    """A spawned child with a directory workspace, a summary and two messages, now idle;
    its project keeps idle sub-sessions for an hour, and it has been idle for two."""
    project.idle_subsession_ttl_seconds = 3600
    project.save(update_fields=["idle_subsession_ttl_seconds"])
    child, edge = spawn.session_spawn(
        session=session, actor=agent(1), workspace_backend="directory"
    )
    history.messages_append(
        thread=child.thread,
        messages=[
            {"id": "c1", "role": "user", "content": "do it"},
            {"id": "c2", "role": "assistant", "content": "done"},
        ],
    )
    summaries.session_summarize(
        session=child,
        summary=summaries.SummaryIn(outcome_status="succeeded", agent_summary="Did it."),
    )
    # Its whole life happened hours ago: spawned 4 h ago, the messages 3 h ago.
    earlier = timezone.now() - timedelta(hours=4)
    Session.objects.filter(pk=child.pk).update(created_at=earlier)
    Message.objects.filter(thread_id=child.thread_id).update(
        created_at=earlier + timedelta(hours=1)
    )
    return idle_since(edge, hours=2)


def idle_since(edge, *, hours):
    SubSession.objects.filter(pk=edge.pk).update(updated_at=timezone.now() - timedelta(hours=hours))
    return SubSession.objects.select_related("child__workspace").get(pk=edge.pk)


def bundle_of(s3, edge) -> dict:
    key = retention.bundle_key(edge.pk)
    return json.loads(
        gzip.decompress(s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read())
    )


def test_the_retention_sweep_runs_on_a_schedule():
    [schedule] = [s for s in SCHEDULES if s.task == "sessions.subsessions_retention"]
    assert schedule.every_seconds == 300


def test_the_sweep_archives_an_idle_sub_session_past_its_ttl(finished, s3):
    workspace = finished.child.workspace
    assert Path(workspace.path).is_dir()

    result = subsessions_retention.delay().get()

    # the bundle: metadata, messages, summary and the workspace reference
    assert result["archived"] == 1
    bundle = bundle_of(s3, finished)
    assert bundle["subsession"]["id"] == finished.pk
    assert bundle["subsession"]["status"] == "idle"
    assert bundle["session"]["id"] == finished.child_id
    assert [json.loads(m)["id"] for m in bundle["messages"]] == ["c1", "c2"]
    assert bundle["summary"]["agent_summary"] == "Did it."
    assert bundle["workspace"]["id"] == workspace.pk
    assert bundle["workspace"]["path"] == workspace.path
    # marked archived after the write, then the workspace disposed
    edge = SubSession.objects.get(pk=finished.pk)
    assert edge.status == "archived" and edge.archived_at is not None
    assert edge.archive_key == retention.bundle_key(finished.pk)
    assert Workspace.objects.get(pk=workspace.pk).status == "disposed"
    assert not Path(workspace.path).exists()
    event = Event.objects.get(kind="subsession.archived")
    assert event.payload["subsession"] == finished.pk and event.payload["messages"] == 2
    assert event.session_id == finished.child_id


def test_the_sweep_leaves_young_running_and_opted_out_sub_sessions_alone(finished, project, s3):
    # young
    idle_since(finished, hours=0)
    assert retention.subsessions_retention_sweep()["archived"] == 0
    # running: its child started a turn again
    idle_since(finished, hours=2)
    Session.objects.filter(pk=finished.child_id).update(status="active")
    assert retention.subsessions_retention_sweep()["archived"] == 0
    # opted out: no TTL on the project
    Session.objects.filter(pk=finished.child_id).update(status="idle")
    project.idle_subsession_ttl_seconds = None
    project.save(update_fields=["idle_subsession_ttl_seconds"])
    assert retention.subsessions_retention_sweep()["archived"] == 0

    assert SubSession.objects.get(pk=finished.pk).status == "idle"


def test_nothing_is_marked_or_disposed_when_the_bundle_cannot_be_written(finished, s3):
    bucket = s3.bucket
    s3.stop()
    try:
        result = retention.subsessions_retention_sweep()
    finally:
        s3.start()
        s3.create_bucket(bucket)

    assert result["failed"] == 1
    assert SubSession.objects.get(pk=finished.pk).status == "idle"
    assert Path(finished.child.workspace.path).is_dir()
    # and the next sweep archives it
    assert retention.subsessions_retention_sweep()["archived"] == 1


def test_restore_brings_an_archived_sub_session_back_to_idle(api, finished, s3):
    retention.subsessions_retention_sweep()

    response = api.post(url(finished, "restore"))

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "idle"
    assert response.json()["archived_at"] is None
    assert SubSession.objects.get(pk=finished.pk).status == "idle"
    event = Event.objects.get(kind="subsession.restored")
    assert event.payload["workspace"]["id"] == finished.child.workspace_id
    # restoring again: nothing to restore
    assert_error(api.post(url(finished, "restore")), 409, "not_archived")


def test_archive_on_demand_and_its_refusals(api, finished, s3):
    archived = api.post(url(finished, "archive"))
    assert archived.status_code == 200
    assert archived.json()["status"] == "archived"

    details = assert_error(api.post(url(finished, "archive")), 409, "not_archivable")
    assert details["reason"] == "already_archived"


def test_a_running_sub_session_is_not_archivable(api, session, workspace_root, s3):
    _, edge = spawn.session_spawn(session=session, actor=agent(2))

    details = assert_error(api.post(url(edge, "archive")), 409, "not_archivable")

    assert details["reason"] == "not_idle"
    assert details["status"] == "active"
    assert SubSession.objects.get(pk=edge.pk).status == "active"


def test_a_corrupt_bundle_is_503_and_the_sub_session_stays_archived(api, finished, s3):
    retention.subsessions_retention_sweep()
    s3.client().put_object(Bucket=s3.bucket, Key=retention.bundle_key(finished.pk), Body=b"junk")

    assert_error(api.post(url(finished, "restore")), 503, "cold_snapshot_corrupt")
    assert SubSession.objects.get(pk=finished.pk).status == "archived"


def test_an_outsider_gets_404(outsider, finished, s3):
    assert_error(outsider.post(url(finished, "archive")), 404, "not_found")
    assert_error(outsider.post(url(finished, "restore")), 404, "not_found")


def test_the_bundle_takes_the_messages_from_the_snapshot_of_a_cold_thread(api, finished, s3):
    assert api.post(f"/api/v1/threads/{finished.child.thread_id}/flush").status_code == 200

    assert retention.subsessions_retention_sweep()["archived"] == 1

    assert [json.loads(m)["id"] for m in bundle_of(s3, finished)["messages"]] == ["c1", "c2"]


# --- A sub-session whose child session is archived (issue 10, item 8) --------------------


def intervene(api, session) -> tuple[str, str]:
    made = api.post(
        f"/api/v1/sessions/{session.pk}/interventions", {"actor": {"kind": "user", "id": "bob"}}
    )
    assert made.status_code == 201, made.content
    return made.json()["session"]["id"], made.json()["subsession"]["id"]


def edge_of(api, session, sub: str) -> dict:
    children = api.get(f"/api/v1/sessions/{session.pk}/children").json()["results"]
    [edge] = [c["subsession"] for c in children if c["subsession"]["id"] == sub]
    return edge


def test_archiving_a_child_session_archives_its_sub_session_with_a_bundle(api, session, s3):
    # given: an intervention's child session
    child, sub = intervene(api, session)
    # when: the child session is archived
    assert api.post(f"/api/v1/sessions/{child}/archive").status_code == 200
    # then: its edge is archived as retention archives one: a time and a verified bundle
    edge = edge_of(api, session, sub)
    assert edge["status"] == "archived" and edge["archived_at"] is not None
    assert bundle_of(s3, SubSession.objects.get(pk=sub))["session"]["id"] == child
    assert_error(api.post(f"/api/v1/subsessions/{sub}/archive"), 409, "not_archivable")
    # and it can be restored, and archived again
    restored = api.post(f"/api/v1/subsessions/{sub}/restore")
    assert restored.status_code == 200, restored.content
    assert (restored.json()["status"], restored.json()["archived_at"]) == ("idle", None)
    again = api.post(f"/api/v1/subsessions/{sub}/archive")
    assert again.status_code == 200, again.content
    assert again.json()["status"] == "archived"


def test_a_child_archived_while_cold_storage_is_down_leaves_its_edge_archivable(api, session, s3):
    child, sub = intervene(api, session)
    s3.stop()
    try:
        # the child's archive stands; its edge stays idle (no bundle, so not archived)
        assert api.post(f"/api/v1/sessions/{child}/archive").status_code == 200
        assert Session.objects.get(pk=child).status == "archived"
        assert edge_of(api, session, sub)["status"] == "idle"
        assert_error(
            api.post(f"/api/v1/subsessions/{sub}/archive"), 503, "cold_storage_unavailable"
        )
    finally:
        s3.start()
        s3.create_bucket(s3.bucket)
    archived = api.post(f"/api/v1/subsessions/{sub}/archive")
    assert archived.status_code == 200, archived.content
    assert archived.json()["archived_at"] is not None


def test_an_edge_archived_without_a_bundle_by_an_older_release_is_repairable(api, session, s3):
    # given: the state an older release left: the edge archived with its child, no bundle
    child, sub = intervene(api, session)
    Session.objects.filter(pk=child).update(status="archived")
    SubSession.objects.filter(pk=sub).update(status="archived", archived_at=None, archive_key="")
    # then: restore brings it back (nothing to read: its rows never left the database) …
    restored = api.post(f"/api/v1/subsessions/{sub}/restore")
    assert restored.status_code == 200, restored.content
    assert restored.json()["status"] == "idle"
    # … and, stuck again, an archive writes the missing bundle
    SubSession.objects.filter(pk=sub).update(status="archived", archived_at=None, archive_key="")
    archived = api.post(f"/api/v1/subsessions/{sub}/archive")
    assert archived.status_code == 200, archived.content
    assert archived.json()["archived_at"] is not None
    assert bundle_of(s3, SubSession.objects.get(pk=sub))["subsession"]["id"] == sub
