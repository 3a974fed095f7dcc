"""Workspaces, where a session's agent works: their drivers and their rows.

- `none`: nothing is made (no Workspace row either).
- `directory`: a fresh directory `WORKSPACE_ROOT/<wsp id>`.
- `git-worktree`: `git worktree add -b threadline/<wsp id> WORKSPACE_ROOT/<wsp id> HEAD` in
  the repository at `WORKSPACE_GIT_REPO`; dispose runs `git worktree remove --force` and
  `git worktree prune`, then deletes the branch only if it holds no commit HEAD lacks
  (`git branch -d`): a branch with the agent's work on it is kept.

Drivers do slow I/O (filesystem, git subprocesses): call them outside any transaction. They
raise WorkspaceError on failure and clean up what they made half-way, so a failed create
leaves nothing behind.

The rows (at the end): a Workspace row is written before its driver makes anything, so a
crash mid-way leaves a record for the lock sweep to dispose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from common.ids import new_id
from sessions_app.models import Workspace, WorkspaceStatus
from threads.models import WorkspaceBackend

GIT_TIMEOUT_SECONDS = 120


class WorkspaceError(Exception):
    """The backend could not create or dispose a workspace."""


@dataclass(frozen=True)
class Plan:
    """Where a workspace will live; written to its row before anything is made."""

    path: str = ""
    branch: str = ""


def _root() -> Path:
    return Path(settings.WORKSPACE_ROOT)


class DirectoryDriver:
    name = WorkspaceBackend.DIRECTORY

    def plan(self, workspace_id: str) -> Plan:
        return Plan(path=str(_root() / workspace_id))

    def create(self, plan: Plan) -> None:
        path = Path(plan.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()  # not exist_ok: a path already taken is a failure, never shared
        except OSError as exc:
            raise WorkspaceError(f"cannot create directory {path}: {exc}") from exc

    def dispose(self, plan: Plan) -> None:
        path = Path(plan.path)
        if not path.exists():
            return
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise WorkspaceError(f"cannot remove directory {path}: {exc}") from exc


class GitWorktreeDriver:
    name = WorkspaceBackend.GIT_WORKTREE

    def plan(self, workspace_id: str) -> Plan:
        return Plan(path=str(_root() / workspace_id), branch=f"threadline/{workspace_id}")

    def create(self, plan: Plan) -> None:
        repo = self._repo()
        Path(plan.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            _git(repo, "worktree", "add", "-b", plan.branch, plan.path, "HEAD")
        except WorkspaceError:
            # `worktree add` can fail after checking out (a failing post-checkout hook, a
            # full disk): remove whatever it left, including the branch it created.
            self._cleanup(repo, plan)
            raise

    def dispose(self, plan: Plan) -> None:
        repo = self._repo()
        if Path(plan.path).exists():
            _git(repo, "worktree", "remove", "--force", plan.path)
        _git(repo, "worktree", "prune")
        # `-d`, not `-D`: the branch goes only if it holds nothing HEAD lacks (the agent
        # committed nothing); a branch with work on it is kept.
        try:
            _git(repo, "branch", "-d", plan.branch)
        except WorkspaceError:
            pass

    def _cleanup(self, repo: str, plan: Plan) -> None:
        for args in (
            ("worktree", "remove", "--force", plan.path),
            ("worktree", "prune"),
            ("branch", "-D", plan.branch),
        ):
            try:
                _git(repo, *args)
            except WorkspaceError:
                pass
        shutil.rmtree(plan.path, ignore_errors=True)

    @staticmethod
    def _repo() -> str:
        repo = settings.WORKSPACE_GIT_REPO
        if not repo:
            raise WorkspaceError("WORKSPACE_GIT_REPO is not set.")
        if not Path(repo).is_dir():
            raise WorkspaceError(f"WORKSPACE_GIT_REPO {repo} is not a directory.")
        try:
            _git(repo, "rev-parse", "--verify", "HEAD")
        except WorkspaceError as exc:
            raise WorkspaceError(
                f"WORKSPACE_GIT_REPO {repo} is not a git repository with a commit: {exc}"
            ) from exc
        return repo


def _git(repo: str, *args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(
            ["git", "-C", repo, *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkspaceError(f"git {args[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip().splitlines()
        raise WorkspaceError(
            f"git {' '.join(args[:2])} exited {proc.returncode}: {' '.join(output[-3:])}"
        )
    return proc.stdout


_DRIVERS = {
    WorkspaceBackend.DIRECTORY: DirectoryDriver(),
    WorkspaceBackend.GIT_WORKTREE: GitWorktreeDriver(),
}


def driver_for(backend: str) -> DirectoryDriver | GitWorktreeDriver | None:
    """The driver of `backend`; None for `none` (nothing to make)."""
    if backend == WorkspaceBackend.NONE:
        return None
    try:
        return _DRIVERS[backend]
    except KeyError:
        raise WorkspaceError(f"unknown workspace backend {backend!r}") from None


# --- Rows ------------------------------------------------------------------------------


def workspace_provision(
    *,
    tenant_id: str,
    project_id: str,
    backend: str,
    label: str,
    operation: str,
    lease_expires_at: datetime,
) -> Workspace | None:
    """Make a workspace; None for the `none` backend. Call outside any transaction.

    The row is written first (status provisioning, with its planned path), so a crash
    mid-way leaves a record for the sweep; on failure it is marked failed and the driver's
    WorkspaceError propagates."""
    driver = driver_for(backend)
    if driver is None:
        return None
    workspace_id = new_id("wsp")
    plan = driver.plan(workspace_id)
    workspace = Workspace.objects.create(
        id=workspace_id,
        tenant_id=tenant_id,
        project_id=project_id,
        backend=backend,
        label=label,
        operation=operation,
        lease_expires_at=lease_expires_at,
        path=plan.path,
        branch=plan.branch,
    )
    try:
        driver.create(plan)
    except WorkspaceError as exc:
        Workspace.objects.filter(pk=workspace.pk).update(
            status=WorkspaceStatus.FAILED, error=str(exc)[:4000]
        )
        raise
    Workspace.objects.filter(pk=workspace.pk).update(status=WorkspaceStatus.READY)
    workspace.status = WorkspaceStatus.READY
    return workspace


def workspace_attach(*, workspace: Workspace, session_id: str) -> None:
    """Inside the commit transaction: the workspace now belongs to the session and is no
    longer an orphan candidate."""
    Workspace.objects.filter(pk=workspace.pk).update(session_id=session_id, lease_expires_at=None)


def workspace_dispose(*, workspace: Workspace) -> None:
    """Remove the directory/worktree (idempotent) and mark the row disposed. Call outside
    any transaction. A failure is recorded on the row and raised (WorkspaceError)."""
    if workspace.status == WorkspaceStatus.DISPOSED:
        return
    driver = driver_for(workspace.backend)
    try:
        if driver is not None:
            driver.dispose(Plan(path=workspace.path, branch=workspace.branch))
    except WorkspaceError as exc:
        Workspace.objects.filter(pk=workspace.pk).update(error=str(exc)[:4000])
        raise
    Workspace.objects.filter(pk=workspace.pk).exclude(status=WorkspaceStatus.DISPOSED).update(
        status=WorkspaceStatus.DISPOSED, disposed_at=timezone.now()
    )
    workspace.status = WorkspaceStatus.DISPOSED
