"""Handoffs that fail after their lock roll back completely: workspaces disposed, no
partial sessions or sub-sessions, the source idle at its old version, the failure recorded
with an accurate partial_state. The failures are real (git refuses)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from handoffs import services as handoff_services
from handoffs.models import Handoff
from sessions_app.models import Session, SubSession, Workspace
from tests.conftest import assert_error
from tests.handoffs.test_broadcast import broadcast
from tests.handoffs.test_single import handoff
from tests.sessions_app.fixtures import AGENT, USER, agent, git, git_hook, worktrees
from threads.models import Event

THREE = [agent(1), agent(2), agent(3)]


def _source_untouched(session):
    source = Session.objects.get(pk=session.pk)
    assert (source.status, source.owner_version) == ("idle", 0)
    assert (source.current_actor, source.previous_actors) == (USER, [])
    assert (source.lock_token, source.lock_expires_at) == ("", None)


def test_the_second_of_three_workspaces_failing_rolls_everything_back(api, session, git_repo):
    git_hook(git_repo, fail_on=2)  # `git worktree add` #2 exits 1

    response = broadcast(api, session, THREE, workspace_backend="git-worktree")

    details = assert_error(response, 503, "workspace_unavailable")
    partial = {"sessions_created": 0, "subsessions_created": 0, "workspaces_provisioned": 1}
    assert details["partial_state"] == partial
    assert "post-checkout" in details["reason"] or "exited 1" in details["reason"]
    _source_untouched(session)
    assert Session.objects.count() == 1
    assert not SubSession.objects.exists()
    # Worktree 1 was made and disposed, worktree 2 failed and cleaned up, 3 never started.
    assert worktrees(git_repo) == []
    assert git(git_repo, "branch", "--list", "threadline/*") == ""
    assert sorted(Workspace.objects.values_list("status", flat=True)) == ["disposed", "failed"]
    assert not any(Path(w.path).exists() for w in Workspace.objects.all())
    rows = Handoff.objects.filter(group_id=details["handoff"]).order_by("position")
    assert [r.outcome for r in rows] == ["rolled_back"] * 3
    assert rows[0].partial_state == partial
    event = Event.objects.get(session_id=session.pk, kind="handoff.rolled_back")
    assert event.payload["partial_state"] == partial
    assert event.payload["source_reverted"] is True
    # The failed handoff stays readable, for audit.
    kept = api.get(f"/api/v1/handoffs/{details['handoff']}/").json()
    assert (kept["status"], kept["partial_state"]) == ("rolled_back", partial)
    assert kept["recipient_sessions"] == []


def test_after_a_rollback_the_same_handoff_can_be_retried(api, session, git_repo):
    git_hook(git_repo, fail_on=2)
    broadcast(api, session, THREE, workspace_backend="git-worktree")

    response = broadcast(api, session, THREE, workspace_backend="git-worktree")

    assert response.status_code == 201, response.content
    assert len(worktrees(git_repo)) == 3


def test_a_failing_dispose_during_rollback_does_not_mask_the_first_error(
    api, session, git_repo, caplog
):
    # Worktree 1 gets locked (so its removal fails for real); worktree 2 fails to add.
    git_hook(git_repo, fail_on=2, lock_first=True)

    with caplog.at_level(logging.ERROR, logger="handoffs.services"):
        response = broadcast(api, session, THREE, workspace_backend="git-worktree")

    details = assert_error(response, 503, "workspace_unavailable")
    assert "locked" not in details["reason"]  # the first error, not the dispose's
    assert details["partial_state"]["workspaces_provisioned"] == 1
    assert any("disposing" in r.getMessage() for r in caplog.records)
    _source_untouched(session)
    assert not SubSession.objects.exists()
    # The undisposable workspace stays on record (ready, with the error) for the sweep.
    leftover = Workspace.objects.get(status="ready")
    assert "locked" in leftover.error
    assert leftover.session_id is None


def test_a_single_handoff_with_no_usable_backend_rolls_back(api, session, settings, workspace_root):
    plain = workspace_root.parent / "plain"  # a directory but no repository: git fails
    plain.mkdir(exist_ok=True)
    settings.WORKSPACE_GIT_REPO = str(plain)

    response = handoff(api, session, [AGENT], workspace_backend="git-worktree")

    details = assert_error(response, 503, "workspace_unavailable")
    assert details["partial_state"] == {
        "sessions_created": 0,
        "subsessions_created": 0,
        "workspaces_provisioned": 0,
    }
    _source_untouched(session)
    assert Session.objects.count() == 1
    row = Handoff.objects.get()
    assert (row.outcome, row.recipient, row.recipient_session) == ("rolled_back", AGENT, None)


def test_a_lease_that_expires_during_provisioning_rolls_back(api, session, git_repo, monkeypatch):
    # The worktree is made for real, and meanwhile the lease runs out (moved into the past,
    # rather than waited out: as if `git worktree add` had outlasted it).
    provision = handoff_services.workspace_provision

    def provision_past_the_lease(**kwargs):
        workspace = provision(**kwargs)
        past = timezone.now() - timedelta(seconds=1)
        Session.objects.filter(pk=session.pk).update(lock_expires_at=past)
        return workspace

    monkeypatch.setattr(handoff_services, "workspace_provision", provision_past_the_lease)

    response = handoff(api, session, [AGENT], workspace_backend="git-worktree")

    assert_error(response, 409, "lock_expired")
    _source_untouched(session)
    assert worktrees(git_repo) == []
    assert Workspace.objects.get().status == "disposed"
    assert Handoff.objects.get().outcome == "rolled_back"


def test_a_git_worktree_handoff_without_a_repository_is_400_and_writes_nothing(
    api, session, settings
):
    settings.WORKSPACE_GIT_REPO = ""

    response = handoff(api, session, [AGENT], workspace_backend="git-worktree")

    details = assert_error(response, 400, "validation_error")
    assert "WORKSPACE_GIT_REPO" in details["fields"]["workspace_backend"][0]
    _source_untouched(session)
    assert not Handoff.objects.exists()
