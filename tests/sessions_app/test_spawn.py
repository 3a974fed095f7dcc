"""POST /sessions/{id}/spawn: capacity caps at their boundaries, compensating rollback on a
real workspace failure, and concurrent spawns that never exceed the width."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.db import connection

from sessions_app import summaries, transitions
from sessions_app.errors import CapacityExceeded
from sessions_app.models import Session, SubSession, Workspace
from sessions_app.spawn import session_spawn
from tests.conftest import assert_error
from tests.sessions_app.fixtures import AGENT, USER, agent, git_hook, url, worktrees
from threads import services as thread_services
from threads.models import Event


def spawn(api, parent, actor=AGENT, **body):
    return api.post(url(parent, "spawn"), {"actor": actor, **body})


def test_a_spawn_makes_an_active_child_with_its_edge_and_workspace(
    api, thread, session, workspace_root
):
    transitions.session_turn_start(session=session)

    response = spawn(api, session, workspace_backend="directory")

    assert response.status_code == 201, response.content
    child, edge = response.json()["session"], response.json()["subsession"]
    assert child["status"] == "active"
    assert child["current_actor"] == AGENT
    assert child["depth"] == 2
    assert child["thread"] == thread.id
    assert child["workspace"]["backend"] == "directory"
    assert child["workspace"]["status"] == "ready"
    assert Path(child["workspace"]["path"]).is_dir()
    assert edge["kind"] == "agent_spawn"
    assert edge["status"] == "active"
    assert (edge["parent"], edge["child"]) == (session.id, child["id"])
    assert Workspace.objects.get().session_id == child["id"]
    assert Event.objects.filter(session_id=session.id, kind="session.spawned").exists()


def test_the_project_backend_is_the_default(api, project, session, workspace_root):
    project.workspace_backend = "directory"
    project.save(update_fields=["workspace_backend"])

    response = spawn(api, session)

    assert response.json()["session"]["workspace"]["backend"] == "directory"


def test_children_are_listed_with_their_edges(api, session):
    first = spawn(api, session).json()
    second = spawn(api, session, agent(2)).json()

    body = api.get(url(session, "children")).json()

    assert [c["session"]["id"] for c in body["results"]] == [
        first["session"]["id"],
        second["session"]["id"],
    ]
    assert body["results"][0]["subsession"]["kind"] == "agent_spawn"
    assert body["next"] is None


def test_a_spawned_child_makes_the_thread_active(api, thread, session):
    spawn(api, session)

    thread.refresh_from_db()
    assert thread.lifecycle == "active"


@pytest.mark.parametrize("steps", [["start", "hitl"], ["fail"], ["archive"]])
def test_only_an_idle_or_active_parent_can_spawn(api, session, steps):
    actions = {
        "start": transitions.session_turn_start,
        "hitl": transitions.session_hitl_request,
        "fail": transitions.session_fail,
        "archive": transitions.session_archive,
    }
    for step in steps:
        actions[step](session=session)

    details = assert_error(spawn(api, session), 409, "illegal_transition")

    assert details["action"] == "spawn"
    assert SubSession.objects.count() == 0


def _chain(parent, length):
    """`length` spawned generations under parent; returns the last child."""
    for n in range(length):
        parent, _ = session_spawn(session=parent, actor=agent(n))
    return parent


def test_depth_allows_a_spawn_under_the_last_of_a_chain_at_the_limit(api, project, session):
    project.max_delegation_depth = 5
    project.save(update_fields=["max_delegation_depth"])
    c4 = _chain(session, 4)  # root → c1 → c2 → c3 → c4: c4's ancestry has 5 sessions

    response = spawn(api, c4)

    assert response.status_code == 201, response.content
    assert response.json()["session"]["depth"] == 6


def test_depth_refuses_a_spawn_past_the_limit(api, project, session):
    project.max_delegation_depth = 4
    project.save(update_fields=["max_delegation_depth"])
    c4 = _chain(session, 4)

    details = assert_error(spawn(api, c4), 409, "capacity_exceeded")

    assert details == {"dimension": "depth", "current": 5, "limit": 4, "session": c4.id}
    assert not SubSession.objects.filter(parent=c4).exists()


def test_width_allows_the_limit_and_refuses_one_more(api, session):
    for n in range(8):
        assert spawn(api, session, agent(n)).status_code == 201

    details = assert_error(spawn(api, session, agent(9)), 409, "capacity_exceeded")

    assert details == {
        "dimension": "width",
        "current": 8,
        "requested": 1,
        "limit": 8,
        "session": session.id,
    }
    assert SubSession.objects.filter(parent=session).count() == 8
    assert Session.objects.count() == 9


def test_archived_children_free_their_width_slot(api, project, session):
    project.max_delegation_width = 1
    project.save(update_fields=["max_delegation_width"])
    child, _ = session_spawn(session=session, actor=AGENT)
    transitions.session_fail(session=child)
    transitions.session_archive(session=child)

    assert spawn(api, session, agent(2)).status_code == 201


def test_a_failed_workspace_rolls_the_spawn_back(api, project, session, git_repo):
    project.max_delegation_width = 1
    project.save(update_fields=["max_delegation_width"])
    transitions.session_turn_start(session=session)
    before = Session.objects.filter(pk=session.pk).values().get()
    git_hook(git_repo, fail_on=1)  # the first `git worktree add` fails for real

    response = spawn(api, session, workspace_backend="git-worktree")

    details = assert_error(response, 503, "workspace_unavailable")
    assert details["backend"] == "git-worktree"
    assert "exited 1" in details["reason"]
    # The child is gone, no sub-session is left, the parent is untouched.
    assert list(Session.objects.values_list("pk", flat=True)) == [session.pk]
    assert SubSession.objects.count() == 0
    assert Session.objects.filter(pk=session.pk).values().get() == before
    assert worktrees(git_repo) == []
    assert Event.objects.filter(session_id=session.id, kind="session.spawn_rolled_back").exists()
    # The width slot is free again: the next spawn (checkout #2 succeeds) takes it.
    retry = spawn(api, session, workspace_backend="git-worktree")
    assert retry.status_code == 201, retry.content
    assert worktrees(git_repo) == [retry.json()["session"]["workspace"]["path"]]


def test_repeated_spawn_failures_leave_nothing_behind(
    api, session, settings, workspace_root, tmp_path
):
    plain = tmp_path / "plain"  # a directory, but no git repository: git fails at provisioning
    plain.mkdir()
    settings.WORKSPACE_GIT_REPO = str(plain)

    for _ in range(3):
        assert_error(
            spawn(api, session, workspace_backend="git-worktree"), 503, "workspace_unavailable"
        )

    assert list(Session.objects.values_list("pk", flat=True)) == [session.pk]
    assert SubSession.objects.count() == 0
    assert set(Workspace.objects.values_list("status", flat=True)) == {"failed"}
    assert not workspace_root.exists() or not any(workspace_root.iterdir())


def test_bad_spawn_input_is_400(api, session):
    for body in (
        {},
        {"actor": {"kind": "ghost", "id": "x"}},
        {"actor": AGENT, "workspace_backend": "nfs"},
        {"actor": AGENT, "depth": 3},
    ):
        assert_error(api.post(url(session, "spawn"), body), 400, "validation_error")
    assert SubSession.objects.count() == 0


def test_spawn_on_an_archived_thread_is_409(api, thread, session):
    thread_services.thread_archive(thread=thread)

    assert_error(spawn(api, session), 409, "thread_archived")


def test_another_tenant_cannot_spawn_or_list_children(api, outsider, session):
    spawn(api, session)

    assert_error(spawn(outsider, session), 404, "not_found")
    assert_error(outsider.get(url(session, "children")), 404, "not_found")
    assert SubSession.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_spawns_never_exceed_the_width(api, project, thread):
    project.max_delegation_width = 3
    project.save(update_fields=["max_delegation_width"])
    parent = transitions.session_create(tenant=api.tenant, thread_id=thread.pk, actor=AGENT)
    barrier, results = threading.Barrier(8), []

    def contender(n):
        try:
            barrier.wait(5)
            session_spawn(session=parent, actor=agent(n))
            results.append("spawned")
        except CapacityExceeded as exc:
            results.append(exc.details["dimension"])
        finally:
            connection.close()

    contenders = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for t in contenders:
        t.start()
    for t in contenders:
        t.join(30)

    assert sorted(results) == ["spawned"] * 3 + ["width"] * 5
    assert SubSession.objects.filter(parent=parent).count() == 3


def test_interventions_take_no_width_slot(api, project, session):
    project.max_delegation_width = 1
    project.save(update_fields=["max_delegation_width"])
    summaries.session_intervene(session=session, actor=USER)

    assert spawn(api, session).status_code == 201


def test_a_git_worktree_spawn_without_a_repository_is_400_before_anything(api, session, settings):
    """The server cannot provision it at all: bad input (400), not an outage (503)."""
    settings.WORKSPACE_GIT_REPO = ""

    details = assert_error(
        spawn(api, session, workspace_backend="git-worktree"), 400, "validation_error"
    )

    assert "WORKSPACE_GIT_REPO" in details["fields"]["workspace_backend"][0]
    assert SubSession.objects.count() == 0
    assert not Workspace.objects.exists()
