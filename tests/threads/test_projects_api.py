"""/api/v1/projects/: create, list, get, edit — and what another tenant sees of them."""

from __future__ import annotations

from tests.conftest import assert_error
from tests.factories import ProjectFactory
from threads.models import Project

URL = "/api/v1/projects/"


def test_creating_a_project_applies_the_capacity_defaults(api):
    response = api.post(URL, {"name": "Support"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("prj_") and len(body["id"]) == 16
    assert body["name"] == "Support"
    assert body["max_delegation_depth"] == 4
    assert body["max_delegation_width"] == 8
    assert body["max_intervention_depth"] == 10
    assert body["workspace_backend"] == "none"
    assert Project.objects.get(pk=body["id"]).tenant == api.tenant


def test_creating_a_project_accepts_every_capacity_field(api, settings, tmp_path):
    settings.WORKSPACE_GIT_REPO = str(tmp_path)
    response = api.post(
        URL,
        {
            "name": "Agents",
            "max_delegation_depth": 2,
            "max_delegation_width": 3,
            "max_intervention_depth": 5,
            "workspace_backend": "git-worktree",
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["max_delegation_depth"], body["max_delegation_width"]) == (2, 3)
    assert body["max_intervention_depth"] == 5
    assert body["workspace_backend"] == "git-worktree"


def test_a_project_is_listed_and_fetched_by_its_tenant(api, project):
    listed = api.get(URL)
    fetched = api.get(f"{URL}{project.id}/")

    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()["results"]] == [project.id]
    assert listed.json()["next"] is None
    assert fetched.status_code == 200
    assert fetched.json()["name"] == project.name


def test_projects_are_listed_in_pages(api):
    ids = [ProjectFactory(tenant=api.tenant).id for _ in range(3)]

    first = api.get(URL, {"limit": 2})
    second = api.get(URL, {"limit": 2, "cursor": first.json()["next"]})

    assert [p["id"] for p in first.json()["results"]] == ids[:2]
    assert [p["id"] for p in second.json()["results"]] == ids[2:]
    assert second.json()["next"] is None


def test_editing_a_project_changes_only_the_given_fields(api, project):
    response = api.patch(f"{URL}{project.id}/", {"max_delegation_width": 2})

    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.max_delegation_width == 2
    assert project.max_delegation_depth == 4
    assert response.json()["max_delegation_width"] == 2


def test_a_project_needs_a_name(api):
    details = assert_error(api.post(URL, {}), 400, "validation_error")

    assert "name" in details["fields"]
    assert not Project.objects.exists()


def test_a_project_refuses_unknown_fields_and_bad_values(api, project):
    for body in (
        {"name": "x", "colour": "red"},
        {"name": "x", "workspace_backend": "ftp"},
        {"name": "x", "max_delegation_depth": -1},
        {"name": "x", "max_delegation_width": 10**30},
        {"name": "x", "max_delegation_depth": "four"},
        {"name": "x", "max_delegation_depth": "4"},
        {"name": "x", "max_delegation_depth": 4.0},
        {"name": "x", "max_delegation_depth": True},
        {"name": ""},
        {"name": 0},
        {"name": {"first": "x"}},
    ):
        assert_error(api.post(URL, body), 400, "validation_error")
        assert_error(api.patch(f"{URL}{project.id}/", body), 400, "validation_error")

    assert Project.objects.count() == 1
    project.refresh_from_db()
    assert project.workspace_backend == "none"


def test_editing_a_read_only_field_is_refused(api, project):
    details = assert_error(
        api.patch(f"{URL}{project.id}/", {"id": "prj_000000000000"}), 400, "validation_error"
    )

    assert "id" in details["fields"]


def test_projects_cannot_be_deleted_or_replaced(api, project):
    assert_error(api.delete(f"{URL}{project.id}/"), 405, "method_not_allowed")
    assert_error(api.put(f"{URL}{project.id}/", {"name": "x"}), 405, "method_not_allowed")
    assert Project.objects.filter(pk=project.pk).exists()


def test_an_unknown_project_is_404(api):
    assert_error(api.get(f"{URL}prj_000000000000/"), 404, "not_found")
    assert_error(api.patch(f"{URL}prj_000000000000/", {"name": "x"}), 404, "not_found")


def test_an_outsider_neither_sees_nor_edits_a_project(api, outsider, project):
    # when
    listed = outsider.get(URL)
    fetched = outsider.get(f"{URL}{project.id}/")
    edited = outsider.patch(f"{URL}{project.id}/", {"name": "mine now"})

    # then
    assert listed.status_code == 200 and listed.json()["results"] == []
    assert_error(fetched, 404, "not_found")
    assert_error(edited, 404, "not_found")
    project.refresh_from_db()
    assert project.name != "mine now"


def test_an_outsiders_projects_are_not_listed_to_us(api, outsider, project):
    ProjectFactory(tenant=outsider.tenant)

    assert [p["id"] for p in api.get(URL).json()["results"]] == [project.id]


def test_sub_session_retention_is_set_and_cleared_through_the_api(api, project):
    # when
    response = api.patch(f"/api/v1/projects/{project.id}/", {"idle_subsession_ttl_seconds": 3600})
    # then
    assert response.status_code == 200, response.content
    assert response.json()["idle_subsession_ttl_seconds"] == 3600
    cleared = api.patch(f"/api/v1/projects/{project.id}/", {"idle_subsession_ttl_seconds": None})
    assert cleared.json()["idle_subsession_ttl_seconds"] is None
    assert_error(
        api.patch(f"/api/v1/projects/{project.id}/", {"idle_subsession_ttl_seconds": 0}),
        400,
        "validation_error",
    )


def test_strings_are_strings_and_choice_errors_list_the_choices(api, project):
    """{"name": 0} was stored as "0"; a bad choice did not say which were valid."""
    details = assert_error(api.patch(f"{URL}{project.id}/", {"name": 0}), 400, "validation_error")
    assert details == {"fields": {"name": ["Must be a string."]}}

    details = assert_error(
        api.post(URL, {"name": "x", "workspace_backend": "ftp"}), 400, "validation_error"
    )
    assert details == {
        "fields": {"workspace_backend": ['"ftp" is not one of none, directory, git-worktree.']}
    }
    project.refresh_from_db()
    assert project.name != "0"


def test_a_git_worktree_project_without_a_repository_is_refused_when_configured(
    api, project, settings
):
    """Refused with 400 when the project is configured, not with 503 at its first spawn."""
    settings.WORKSPACE_GIT_REPO = ""

    for response in (
        api.post(URL, {"name": "x", "workspace_backend": "git-worktree"}),
        api.patch(f"{URL}{project.id}/", {"workspace_backend": "git-worktree"}),
    ):
        details = assert_error(response, 400, "validation_error")
        assert "WORKSPACE_GIT_REPO" in details["fields"]["workspace_backend"][0]

    assert Project.objects.count() == 1
    project.refresh_from_db()
    assert project.workspace_backend == "none"
