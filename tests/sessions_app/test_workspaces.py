"""The workspace drivers against a real filesystem and a real git repository."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sessions_app import workspaces
from sessions_app.models import Workspace
from sessions_app.workspaces import WorkspaceError
from tests.sessions_app.fixtures import git, git_hook, worktrees


def provision(project, backend):
    return workspaces.workspace_provision(
        tenant_id=project.tenant_id,
        project_id=project.pk,
        backend=backend,
        label="test",
        operation="sub_000000000000",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )


def test_the_none_backend_makes_nothing(project, workspace_root):
    assert provision(project, "none") is None
    assert not Workspace.objects.exists()


def test_a_directory_workspace_is_made_and_disposed(project, workspace_root):
    workspace = provision(project, "directory")

    assert workspace.status == "ready"
    assert Path(workspace.path) == workspace_root / workspace.pk
    assert Path(workspace.path).is_dir()

    workspaces.workspace_dispose(workspace=workspace)

    assert not Path(workspace.path).exists()
    workspace.refresh_from_db()
    assert workspace.status == "disposed"
    assert workspace.disposed_at is not None


def test_disposing_twice_is_harmless(project, workspace_root):
    workspace = provision(project, "directory")
    workspaces.workspace_dispose(workspace=workspace)
    workspaces.workspace_dispose(workspace=Workspace.objects.get(pk=workspace.pk))


def test_a_directory_that_cannot_be_made_fails_and_is_recorded(project, workspace_root):
    # WORKSPACE_ROOT is a file: no directory can be made under it.
    workspace_root.parent.mkdir(parents=True, exist_ok=True)
    workspace_root.write_text("not a directory")

    with pytest.raises(WorkspaceError):
        provision(project, "directory")

    workspace = Workspace.objects.get()
    assert workspace.status == "failed"
    assert "cannot create directory" in workspace.error


def test_a_git_worktree_is_added_and_removed(project, git_repo, workspace_root):
    workspace = provision(project, "git-worktree")

    assert workspace.status == "ready"
    assert workspace.branch == f"threadline/{workspace.pk}"
    assert (Path(workspace.path) / "README").read_text() == "hello\n"
    assert worktrees(git_repo) == [workspace.path]

    workspaces.workspace_dispose(workspace=workspace)

    assert worktrees(git_repo) == []
    assert not Path(workspace.path).exists()
    # The branch held no work, so it went too.
    assert git(git_repo, "branch", "--list", "threadline/*") == ""


def test_a_branch_with_work_on_it_survives_dispose(project, git_repo, workspace_root):
    workspace = provision(project, "git-worktree")
    tree = Path(workspace.path)
    (tree / "notes.txt").write_text("agent output\n")
    git(tree, "add", "notes.txt")
    git(tree, "-c", "user.email=a@example.com", "-c", "user.name=a", "commit", "-q", "-m", "work")

    workspaces.workspace_dispose(workspace=workspace)

    assert worktrees(git_repo) == []
    assert workspace.branch in git(git_repo, "branch", "--list", "threadline/*")


def test_git_worktree_without_a_repository_setting_fails(project, workspace_root, settings):
    settings.WORKSPACE_GIT_REPO = ""

    with pytest.raises(WorkspaceError, match="WORKSPACE_GIT_REPO is not set"):
        provision(project, "git-worktree")


def test_git_worktree_on_a_directory_that_is_not_a_repository_fails(
    project, workspace_root, settings, tmp_path
):
    plain = tmp_path / "plain"
    plain.mkdir()
    settings.WORKSPACE_GIT_REPO = str(plain)

    with pytest.raises(WorkspaceError, match="not a git repository"):
        provision(project, "git-worktree")
    assert Workspace.objects.get().status == "failed"


def test_a_failing_worktree_add_leaves_no_worktree_or_branch(project, git_repo, workspace_root):
    git_hook(git_repo, fail_on=1)

    with pytest.raises(WorkspaceError, match="exited 1"):
        provision(project, "git-worktree")

    workspace = Workspace.objects.get()
    assert workspace.status == "failed"
    assert worktrees(git_repo) == []
    assert not Path(workspace.path).exists()
    assert git(git_repo, "branch", "--list", "threadline/*") == ""


def test_a_dispose_that_git_refuses_raises_and_keeps_the_row_live(
    project, git_repo, workspace_root
):
    git_hook(git_repo, lock_first=True)
    workspace = provision(project, "git-worktree")

    with pytest.raises(WorkspaceError, match="locked"):
        workspaces.workspace_dispose(workspace=workspace)

    workspace.refresh_from_db()
    assert workspace.status == "ready"
    assert "locked" in workspace.error
