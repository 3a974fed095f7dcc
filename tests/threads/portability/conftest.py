from __future__ import annotations

import pytest

from tests.factories import ProjectFactory


@pytest.fixture
def other_project(api):
    return ProjectFactory(tenant=api.tenant)
