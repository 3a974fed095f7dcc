"""The indexes of the tables every create writes (migration threads/0009): each one a
lookup needs, none twice (PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def indexes(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        return {name for (name,) in cursor.fetchall()}


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's index set")


def test_a_thread_row_is_written_to_eight_indexes():
    assert indexes("threads_thread") == {
        "threads_thread_pkey",
        "thread_tenant_created",
        "thread_tenant_title_prefix",
        "thread_project_created",
        "thread_hot_idle",
        "thread_warm_due",
        "thread_metadata_gin",
        "threads_thread_fork_of_id_c0a4a588",
    }


def test_an_event_row_is_written_to_six_indexes():
    assert indexes("threads_event") == {
        "threads_event_pkey",
        "threads_event_public_id_key",
        "event_tenant_id",
        "event_tenant_thread",
        "event_tenant_session",
        "event_tenant_kind",
    }
