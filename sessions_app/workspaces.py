"""Workspace drivers: where a session's agent works.

- `none`: nothing is made (no Workspace row either).
- `directory`: a fresh directory `WORKSPACE_ROOT/<wsp id>`.
- `git-worktree`: `git worktree add -b threadline/<wsp id> WORKSPACE_ROOT/<wsp id> HEAD` in
  the repository at `WORKSPACE_GIT_REPO`; dispose runs `git worktree remove --force` and
  `git worktree prune`, then deletes the branch only if it holds no commit HEAD lacks
  (`git branch -d`): a branch with the agent's work on it is kept.

Drivers do slow I/O (filesystem, git subprocesses): call them outside any transaction. They
raise WorkspaceError on failure and clean up what they made half-way, so a failed create
leaves nothing behind. Row bookkeeping lives in sessions_app/services.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

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
