"""Fixtures shared by tests/sessions_app and tests/handoffs (each conftest imports them).

Workspaces are real: a temporary WORKSPACE_ROOT and, for git-worktree, a real repository
made with `git init` and one commit. Failures are real too: `git_hook` installs a
post-checkout hook, which `git worktree add` runs and whose exit status it returns.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from sessions_app import transitions
from sessions_app.models import Session
from tests.conftest import Caller
from threads.models import Thread

USER = {"kind": "user", "id": "alice"}
AGENT = {"kind": "agent", "id": "planner"}


def agent(n: int | str) -> dict[str, str]:
    return {"kind": "agent", "id": f"agent-{n}"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def workspace_root(tmp_path, settings) -> Path:
    root = tmp_path / "workspaces"
    settings.WORKSPACE_ROOT = str(root)
    return root


@pytest.fixture
def git_repo(tmp_path, settings, workspace_root) -> Path:
    """A real repository with one commit, configured as WORKSPACE_GIT_REPO."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "init")
    settings.WORKSPACE_GIT_REPO = str(repo)
    return repo


def git_hook(repo: Path, *, fail_on: int | None = None, lock_first: bool = False) -> None:
    """A post-checkout hook: exits 1 on checkout number `fail_on` (so that `git worktree
    add` fails for real), and with `lock_first` locks the first worktree it sees (so that
    `git worktree remove --force` on it fails for real)."""
    counter = repo / ".git" / "checkouts"
    script = f"""#!/bin/sh
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE
n=$(( $(cat "{counter}" 2>/dev/null || echo 0) + 1 ))
echo $n > "{counter}"
if [ "{int(lock_first)}" = 1 ] && [ "$n" = 1 ]; then
  git -C "{repo}" worktree lock --reason "held by a test" "$PWD" || exit 3
fi
if [ "$n" = "{fail_on or 0}" ]; then
  echo "post-checkout refuses checkout $n" >&2
  exit 1
fi
exit 0
"""
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(script)
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)


def worktrees(repo: Path) -> list[str]:
    """Paths of the repository's worktrees other than the main one."""
    lines = git(repo, "worktree", "list", "--porcelain").splitlines()
    paths = [line.split(" ", 1)[1] for line in lines if line.startswith("worktree ")]
    return [p for p in paths if Path(p).resolve() != repo.resolve()]


@pytest.fixture
def make_session(api: Caller, thread: Thread):
    """make_session(actor=USER, thread=thread) → an idle session, made by the service."""

    def make(actor: dict | None = None, *, on: Thread | None = None) -> Session:
        return transitions.session_create(
            tenant=api.tenant, thread_id=(on or thread).pk, actor=actor or USER
        )

    return make


@pytest.fixture
def session(make_session) -> Session:
    return make_session()


def url(session_or_id, suffix: str = "") -> str:
    pk = getattr(session_or_id, "pk", session_or_id)
    return f"/api/v1/sessions/{pk}/{suffix}"


def active(session: Session) -> Session:
    return transitions.session_turn_start(session=session)
