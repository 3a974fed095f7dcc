"""Every filter choice and facet of every admin changelist answers 200 on PostgreSQL (the
SQLite run of the same clicks is tests/embedded/test_sqlite.py)."""

from __future__ import annotations

import pytest

from tests.admin_filters import changelists, click_every_filter, one_of_everything

pytestmark = pytest.mark.django_db


def test_every_filter_and_facet_of_every_changelist_answers(admin_client, settings, tmp_path):
    settings.WORKSPACE_ROOT = str(tmp_path / "workspaces")
    one_of_everything()

    requested, failed = click_every_filter(admin_client)

    assert failed == []
    # every changelist was opened with and without facets, and its filters were clicked
    assert len(changelists()) >= 12
    assert len(requested) > 4 * len(changelists())
    assert any("actor_kind=agent" in url for url in requested)
    assert any("_facets=True" in url and "status__exact" in url for url in requested)
