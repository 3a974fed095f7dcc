"""Reads: handoffs."""

from __future__ import annotations

import functools

from django.db import connection

from common.rows import row_decoder
from handoffs.models import Handoff
from sessions_app.models import Session
from threads import locks
from threads.models import Project, Thread


def handoff_group(*, handoff: Handoff) -> list[Handoff]:
    """Every row of the handoff `handoff` belongs to (one for single, N for broadcast), in
    recipient order, with what the serializer needs."""
    return list(
        Handoff.objects.filter(group_id=handoff.group_id)
        .select_related("recipient_session", "recipient_session__workspace")
        .order_by("position")
    )


# What the checks and the writes read of the source, its thread and its project. The rest
# of the source's columns are left deferred: nothing here reads them.
SOURCE_FIELDS = (
    "id",
    "tenant",
    "thread",
    "project",
    "status",
    "current_actor",
    "previous_actors",
    "owner_version",
    "depth",
)
PROJECT_FIELDS = ("id", "workspace_backend", "max_delegation_depth", "max_delegation_width")


@functools.cache
def _source_sql(vendor: str, lock_thread: bool) -> tuple[tuple, tuple, str]:
    qn = connection.ops.quote_name
    session, project, thread = Session._meta, Project._meta, Thread._meta
    # In the models' own order, which Model.from_db expects.
    session_fields = tuple(f for f in session.concrete_fields if f.name in SOURCE_FIELDS)
    project_fields = tuple(f for f in project.concrete_fields if f.name in PROJECT_FIELDS)
    columns = [f"s.{qn(f.column)}" for f in session_fields]
    columns += [f"p.{qn(f.column)}" for f in project_fields]
    columns.append(f"t.{qn(thread.get_field('status').column)}")
    sql = (
        f"SELECT {', '.join(columns)} FROM {qn(session.db_table)} s "
        f"JOIN {qn(thread.db_table)} t "
        f"ON t.{qn(thread.pk.column)} = s.{qn(session.get_field('thread').column)} "
        f"JOIN {qn(project.db_table)} p "
        f"ON p.{qn(project.pk.column)} = s.{qn(session.get_field('project').column)} "
        f"WHERE s.{qn(session.get_field('tenant').column)} = %s "
        f"AND s.{qn(session.pk.column)} = %s"
    )
    if lock_thread:
        sql += locks.thread_lock_clause("t")
    return session_fields, project_fields, sql


def handoff_source(
    *, tenant_id: str, session_id: str, lock_thread: bool = False
) -> tuple[Session, str] | None:
    """What a handoff checks before it writes: the tenant's session `session_id`
    (SOURCE_FIELDS, its project's PROJECT_FIELDS loaded) and its thread's status, or None;
    with `lock_thread`, under the thread's row lock (threads.locks, rank 1). Fixed SQL:
    this read was a quarter of the ORM's work in a handoff (a select_related compiled per
    call, both rows in full), and with the lock it saves the lock's own round trip."""
    session_fields, project_fields, sql = _source_sql(connection.vendor, lock_thread)
    if lock_thread:
        row = locks.lock_thread_joined(sql, [tenant_id, session_id])
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, [tenant_id, session_id])
            row = cursor.fetchone()
    if row is None:
        return None
    values = row_decoder((*session_fields, *project_fields))(row[:-1])
    split = len(session_fields)
    source = Session.from_db(connection.alias, [f.attname for f in session_fields], values[:split])
    source.project = Project.from_db(
        connection.alias, [f.attname for f in project_fields], values[split:]
    )
    return source, row[-1]
