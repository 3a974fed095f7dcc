"""Locks a crashed process left behind are reverted by the sweep (service, management
command, Celery task on a real worker, beat schedule)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from handoffs import services as handoff_services
from handoffs.models import Handoff
from sessions_app import recovery, spawn, transitions, workspaces
from sessions_app.models import Session, SubSession, Workspace
from tasks.tasks import recover_session_locks_task
from tests import workers
from tests.sessions_app.fixtures import AGENT, USER, git_hook, worktrees
from tests.workers import ROOT, celery_worker, wait_for
from threads.models import Event


def lock_for_handoff(session, backend="directory"):
    """Phases 1 and 2 of a handoff (lock, provision), then nothing: as if the process died."""
    _, rows, expires = handoff_services._lock(
        tenant_id=session.tenant_id,
        source_session_id=session.pk,
        mode="single",
        expected=0,
        recipients=[AGENT],
        workspace_backend=backend,
    )
    workspace = workspaces.workspace_provision(
        tenant_id=session.tenant_id,
        project_id=session.project_id,
        backend=backend,
        label="crashed",
        operation=rows[0].group_id,
        lease_expires_at=expires,
    )
    return rows[0], workspace


def expire(session):
    past = timezone.now() - timedelta(seconds=1)
    Session.objects.filter(pk=session.pk).update(lock_expires_at=past)
    Workspace.objects.filter(session__isnull=True).update(lease_expires_at=past)


def test_an_expired_handoff_lock_is_reverted_and_its_workspace_disposed(session, workspace_root):
    row, workspace = lock_for_handoff(session)
    expire(session)

    result = recovery.session_locks_recover()

    assert result == {"recovered": 1, "workspaces_disposed": 0}
    source = Session.objects.get(pk=session.pk)
    assert (source.status, source.owner_version, source.lock_token) == ("idle", 0, "")
    assert source.current_actor == USER
    workspace.refresh_from_db()
    assert workspace.status == "disposed"
    assert not Path(workspace.path).exists()
    assert Handoff.objects.get(pk=row.pk).outcome == "rolled_back"
    event = Event.objects.get(session_id=session.pk, kind="session.lock_recovered")
    assert event.payload["lock_token"] == row.group_id
    assert event.payload["handoffs_rolled_back"] == 1


def test_a_lock_whose_lease_is_live_is_left_alone(session, workspace_root):
    _, workspace = lock_for_handoff(session)

    assert recovery.session_locks_recover() == {"recovered": 0, "workspaces_disposed": 0}

    assert Session.objects.get(pk=session.pk).status == "locked"
    assert Path(workspace.path).is_dir()


def test_the_sweep_recovers_a_lock_once(session, workspace_root):
    lock_for_handoff(session)
    expire(session)

    assert recovery.session_locks_recover()["recovered"] == 1
    assert recovery.session_locks_recover()["recovered"] == 0
    assert Event.objects.filter(kind="session.lock_recovered").count() == 1


def test_a_spawn_that_never_committed_is_compensated(session, workspace_root, monkeypatch):
    # The spawn dies during provisioning: its child stays locked on a pending edge.
    def die(**kwargs):
        raise SystemExit("killed")

    monkeypatch.setattr(spawn, "_spawn_compensate", lambda **kwargs: None)
    monkeypatch.setattr(spawn, "workspace_provision", die)
    with pytest.raises(SystemExit):
        spawn.session_spawn(session=session, actor=AGENT)
    child = Session.objects.get(status="locked")
    expire(child)

    assert recovery.session_locks_recover()["recovered"] == 1

    assert list(Session.objects.values_list("pk", flat=True)) == [session.pk]
    assert not SubSession.objects.exists()
    event = Event.objects.get(kind="session.lock_recovered")
    assert event.payload["removed_child"] == child.pk


def test_the_sweep_retries_a_dispose_that_failed_earlier(session, workspace_root):
    row, workspace = lock_for_handoff(session)
    expire(session)
    recovery.session_locks_recover()
    # A workspace an earlier rollback could not dispose: unattached, lease expired.
    stray = workspaces.workspace_provision(
        tenant_id=session.tenant_id,
        project_id=session.project_id,
        backend="directory",
        label="stray",
        operation="hof_000000000000",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    assert recovery.session_locks_recover()["workspaces_disposed"] == 1
    assert not Path(stray.path).exists()


def test_the_management_command_recovers_expired_locks(session, workspace_root):
    lock_for_handoff(session)
    expire(session)
    out = StringIO()

    call_command("recover_session_locks", stdout=out)

    assert "Recovered 1 session lock(s)" in out.getvalue()
    assert Session.objects.get(pk=session.pk).status == "idle"


def test_the_sweep_is_scheduled_every_minute(db):
    task = PeriodicTask.objects.get(name="session-lock-recovery")
    assert task.task == "sessions.recover_session_locks"
    assert (task.interval.every, task.interval.period) == (60, "seconds")


@pytest.mark.django_db(transaction=True)
def test_the_celery_task_recovers_locks_on_a_real_worker(api, thread, workspace_root):
    session = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
    lock_for_handoff(session)
    expire(session)

    with celery_worker(extra_env={"WORKSPACE_ROOT": str(workspace_root)}):
        recover_session_locks_task.delay()
        wait_for(lambda: Session.objects.get(pk=session.pk).status == "idle")

    assert Workspace.objects.get().status == "disposed"


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_between_lock_and_commit_is_recovered_by_the_sweep(
    api, thread, git_repo, workspace_root
):
    session = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=USER)
    # The handoff runs for real in another process; git's post-checkout hook (during
    # provisioning, after the lock committed) SIGKILLs that process.
    hook = git_repo / ".git" / "hooks" / "post-checkout"
    hook.write_text('#!/bin/sh\nkill -9 "$THREADLINE_TEST_VICTIM"\n')
    hook.chmod(0o755)
    script = textwrap.dedent(
        f"""
        import os
        os.environ["THREADLINE_TEST_VICTIM"] = str(os.getpid())
        from handoffs.services import handoff_execute
        from threads.models import Tenant
        handoff_execute(
            tenant=Tenant.objects.get(pk={api.tenant.pk!r}),
            mode="single",
            source_session_id={session.pk!r},
            expected_owner_version=0,
            recipients=[{{"kind": "agent", "id": "doomed"}}],
            workspace_backend="git-worktree",
        )
        print("not killed")
        """
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": workers.test_database_url(),
        "WORKSPACE_ROOT": str(workspace_root),
        "WORKSPACE_GIT_REPO": str(git_repo),
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == -9, proc.stdout + proc.stderr
    # Left behind: a locked source, a pending handoff, a worktree still being provisioned.
    source = Session.objects.get(pk=session.pk)
    assert source.status == "locked"
    assert Handoff.objects.get().outcome == "pending"
    wait_for(lambda: worktrees(git_repo), timeout=10)  # the orphaned git finishes its add
    assert Workspace.objects.get().status == "provisioning"

    # Not before the lease expires …
    assert recovery.session_locks_recover()["recovered"] == 0
    expire(session)
    recovery.session_locks_recover()

    source.refresh_from_db()
    assert (source.status, source.owner_version, source.current_actor) == ("idle", 0, USER)
    assert Handoff.objects.get().outcome == "rolled_back"
    assert Workspace.objects.get().status == "disposed"
    assert worktrees(git_repo) == []
    assert Event.objects.filter(session_id=session.pk, kind="session.lock_recovered").exists()
    git_hook(git_repo)  # a harmless hook: the source can be handed off again
    assert (
        handoff_services.handoff_execute(
            tenant=api.tenant,
            mode="single",
            source_session_id=session.pk,
            expected_owner_version=0,
            recipients=[AGENT],
            workspace_backend="git-worktree",
        ).new_owner_version
        == 1
    )
