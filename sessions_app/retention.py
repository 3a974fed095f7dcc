"""Retention of sub-sessions (namzu's retention policy): archive finished ones to cold storage.

A project opts in with `idle_subsession_ttl_seconds` (null = off). The sweep archives the
sub-sessions of such projects that are idle, merged, merge_rejected or failed and have not
changed for longer than that (their child session not running anything); an API call
archives one at once (`POST /subsessions/{id}/archive`) and brings one back
(`POST /subsessions/{id}/restore` → idle).

Archiving, in this order (no cold-storage or workspace I/O inside a transaction):
  1. the bundle — gzip JSON at `<COLD_PREFIX>/subsessions/<sub id>.json.gz` with the edge's
     and its child session's metadata, the messages appended to the thread while the
     child worked, its summary and a reference to its workspace — is written and read back;
  2. one conditional UPDATE marks the sub-session archived only if it is still in the
     status (and at the updated_at) the bundle was made from — of two sweepers one wins;
  3. after the commit the child's workspace is disposed. A disposal that fails is retried
     by the next sweep (archived edges whose workspace is still there).
The bundle is deterministic for a given state, so two workers archiving the same
sub-session write the same bytes. The rows stay in the database (they are small); what
retention frees is the workspace and the sub-session's width slot.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from common.errors import ColdSnapshotCorrupt, DependencyUnavailable, NotFound
from sessions_app.errors import NotArchivable, NotArchived
from sessions_app.models import (
    ARCHIVABLE_STATUSES,
    BLOCKING_STATUSES,
    Session,
    SubSession,
    SubSessionStatus,
    Summary,
    Workspace,
    WorkspaceStatus,
)
from sessions_app.workspaces import WorkspaceError, workspace_dispose
from threads import events
from threads.events import event_record
from threads.message_format import message_json
from threads.models import MESSAGE_COLUMNS, Message, Project, Thread, Tier
from threads.storage import cold
from threads.storage.snapshot import messages_sha256, snapshot_decode, snapshot_key

logger = logging.getLogger(__name__)

ARCHIVABLE = ARCHIVABLE_STATUSES
BUNDLE_VERSION = 1
SWEEP_BATCH = 100

_SUBSESSION_FIELDS = (
    "id",
    "tenant_id",
    "kind",
    "status",
    "parent_id",
    "child_id",
    "broadcast_id",
    "failure_mode",
    "completion_mode",
    "prev_summary_id",
    "created_at",
    "updated_at",
)
_SESSION_FIELDS = (
    "id",
    "thread_id",
    "project_id",
    "status",
    "current_actor",
    "previous_actors",
    "owner_version",
    "depth",
    "workspace_id",
    "last_input_tokens",
    "last_cache_read_tokens",
    "last_cache_creation_tokens",
    "last_output_tokens",
    "last_settled_at",
    "created_at",
    "updated_at",
)
_SUMMARY_FIELDS = (
    "id",
    "outcome_status",
    "outcome_verdict",
    "agent_summary",
    "key_decisions",
    "deliverables",
    "prev_summary_id",
    "created_at",
)
_WORKSPACE_FIELDS = ("id", "backend", "status", "path", "branch", "created_at")


def bundle_key(subsession_id: str) -> str:
    return f"{settings.COLD_PREFIX}/subsessions/{subsession_id}.json.gz"


def _plain(obj: Model, fields: tuple[str, ...]) -> dict[str, Any]:
    values = {}
    for name in fields:
        value = getattr(obj, name)
        values[name] = value.isoformat() if isinstance(value, datetime) else value
    return values


def _load(subsession: SubSession) -> SubSession:
    edge = (
        SubSession.objects.select_related("child", "child__workspace")
        .filter(pk=subsession.pk)
        .first()
    )
    if edge is None:
        raise NotFound("Sub-session not found.")
    return edge


# --- The bundle ------------------------------------------------------------------------


def _thread_messages(thread_id: str, since: datetime, until: datetime) -> list[str]:
    """The thread's messages created in [since, until], as the API's JSON. From the rows
    when the thread is hot, else from its cold snapshot (a sub-session is archived long
    after its thread may have gone cold; hydrating it for this would be waste)."""
    thread = Thread.objects.get(pk=thread_id)
    if thread.tier == Tier.HOT:
        rows = (
            Message.objects.filter(
                thread_id=thread_id, created_at__gte=since, created_at__lte=until
            )
            .order_by("seq")
            .values_list(*MESSAGE_COLUMNS)
        )
        messages = [message_json(*row) for row in rows]
        # Flushed while we read (the rows may be partial): fall through to the snapshot.
        now = Thread.objects.values_list("tier", "last_flushed_at").get(pk=thread_id)
        if now == (Tier.HOT, thread.last_flushed_at):
            return messages
        thread = Thread.objects.get(pk=thread_id)
    key = thread.cold_key or snapshot_key(thread_id)
    try:
        body = cold.get(key)
    except cold.ColdObjectMissing as exc:
        raise ColdSnapshotCorrupt(thread=thread_id, key=key, reason="missing") from exc
    snapshot = snapshot_decode(body, thread=thread, key=key)
    return [
        member
        for message, (_, member) in zip(snapshot.rows, snapshot.members, strict=True)
        if since <= message.created_at <= until
    ]


def subsession_bundle(*, subsession: SubSession) -> dict[str, Any]:
    """What goes to cold storage. Deterministic for a given state (no "now" in it)."""
    child: Session = subsession.child
    summary = Summary.objects.filter(session_id=child.pk).first()
    workspace: Workspace | None = child.workspace
    messages = _thread_messages(child.thread_id, child.created_at, subsession.updated_at)
    return {
        "v": BUNDLE_VERSION,
        "subsession": _plain(subsession, _SUBSESSION_FIELDS),
        "session": _plain(child, _SESSION_FIELDS),
        "summary": _plain(summary, _SUMMARY_FIELDS) if summary else None,
        "workspace": _plain(workspace, _WORKSPACE_FIELDS) if workspace else None,
        "messages": messages,
        "sha256": messages_sha256(messages),
    }


def _bundle_read(subsession: SubSession) -> dict[str, Any]:
    key = subsession.archive_key or bundle_key(subsession.pk)

    def corrupt(reason: str) -> ColdSnapshotCorrupt:
        return ColdSnapshotCorrupt(
            "The sub-session's cold bundle is missing or corrupt; it stays archived.",
            subsession=subsession.pk,
            key=key,
            reason=reason,
        )

    try:
        body = cold.get(key)
    except cold.ColdObjectMissing as exc:
        raise corrupt("missing") from exc
    try:
        bundle = cold.gunzip_json(body)
    except ValueError as exc:
        raise corrupt("not_gzip_json") from exc
    if not isinstance(bundle, dict) or bundle.get("v") != BUNDLE_VERSION:
        raise corrupt("bad_version")
    if (bundle.get("subsession") or {}).get("id") != subsession.pk:
        raise corrupt("other_subsession")
    messages = bundle.get("messages")
    if not isinstance(messages, list) or bundle.get("sha256") != messages_sha256(messages):
        raise corrupt("checksum_mismatch")
    return bundle


# --- Archive and restore ---------------------------------------------------------------


def _refuse(edge: SubSession) -> None:
    if edge.status == SubSessionStatus.ARCHIVED:
        raise NotArchivable(subsession=edge.pk, reason="already_archived", status=edge.status)
    if edge.status not in ARCHIVABLE or edge.child.status in BLOCKING_STATUSES:
        raise NotArchivable(
            subsession=edge.pk,
            reason="not_idle",
            status=edge.status,
            session_status=edge.child.status,
        )


def subsession_archive(*, subsession: SubSession) -> SubSession:
    """Archive now: bundle written and verified → marked archived → workspace disposed.

    409 not_archivable (reason already_archived, or not_idle for any status but idle,
    merged, merge_rejected and failed, or a child still running); 503 when cold storage
    fails (nothing changed)."""
    edge = _load(subsession)
    _refuse(edge)
    key = bundle_key(edge.pk)
    bundle = subsession_bundle(subsession=edge)
    body = cold.gzip_json(bundle)
    cold.put_verified(key, body)

    now = timezone.now()
    with transaction.atomic():
        # Only from the state the bundle describes: a change since (or another archiver
        # that won) matches no row.
        archived = (
            SubSession.objects.filter(pk=edge.pk, status=edge.status, updated_at=edge.updated_at)
            .exclude(child__status__in=BLOCKING_STATUSES)
            .update(
                status=SubSessionStatus.ARCHIVED, archive_key=key, archived_at=now, updated_at=now
            )
        )
        if archived:
            event_record(
                tenant_id=edge.tenant_id,
                kind=events.SUBSESSION_ARCHIVED,
                thread_id=edge.child.thread_id,
                session_id=edge.child_id,
                payload={
                    "subsession": edge.pk,
                    "from": edge.status,
                    "key": key,
                    "bytes": len(body),
                    "messages": len(bundle["messages"]),
                    "workspace": edge.child.workspace_id,
                },
            )
    if not archived:
        _refuse(_load(edge))
        raise NotArchivable(subsession=edge.pk, reason="not_idle", status=edge.status)
    _dispose_workspace(edge.child.workspace)
    return _load(edge)


def _dispose_workspace(workspace: Workspace | None) -> bool:
    """After the archive committed; a failure is logged and retried by the next sweep."""
    if workspace is None or workspace.status == WorkspaceStatus.DISPOSED:
        return False
    try:
        workspace_dispose(workspace=workspace)
    except WorkspaceError as exc:
        logger.warning("retention: disposing workspace %s failed: %s", workspace.pk, exc)
        return False
    return True


def subsession_restore(*, subsession: SubSession) -> SubSession:
    """An archived sub-session back to idle, once its bundle has been read and checked.

    409 not_archived when it is not archived; 503 cold_snapshot_corrupt when the bundle is
    missing or corrupt, cold_storage_unavailable when the store fails (it stays archived).
    The workspace is not re-provisioned: the bundle's reference is in the event."""
    edge = _load(subsession)
    if edge.status != SubSessionStatus.ARCHIVED:
        raise NotArchived(subsession=edge.pk, status=edge.status)
    if not edge.archive_key:
        # Archived because its child session was (the edge follows it), never written to
        # cold storage: there is no bundle, and reading one was a 503 cold_snapshot_corrupt.
        raise NotArchived(
            "The sub-session was archived with its session, not to cold storage; there is "
            "nothing to restore.",
            subsession=edge.pk,
            status=edge.status,
            reason="archived_with_session",
        )
    bundle = _bundle_read(edge)
    with transaction.atomic():
        restored = SubSession.objects.filter(
            pk=edge.pk, status=SubSessionStatus.ARCHIVED, archived_at=edge.archived_at
        ).update(status=SubSessionStatus.IDLE, archived_at=None, updated_at=timezone.now())
        if restored:
            event_record(
                tenant_id=edge.tenant_id,
                kind=events.SUBSESSION_RESTORED,
                thread_id=edge.child.thread_id,
                session_id=edge.child_id,
                payload={
                    "subsession": edge.pk,
                    "key": edge.archive_key,
                    "archived_from": bundle["subsession"]["status"],
                    "workspace": bundle["workspace"],
                },
            )
    if not restored:
        current = _load(edge)
        raise NotArchived(subsession=edge.pk, status=current.status)
    return _load(edge)


# --- The sweep -------------------------------------------------------------------------


def subsessions_retention_sweep(*, batch_size: int = SWEEP_BATCH) -> dict[str, int]:
    """Archive what each opted-in project's TTL says is due (up to `batch_size` per
    project and run; the next run continues), then retry workspace disposals that failed."""
    counts = {"archived": 0, "skipped": 0, "failed": 0, "disposed": 0}
    now = timezone.now()
    projects = Project.objects.filter(idle_subsession_ttl_seconds__isnull=False).values_list(
        "pk", "idle_subsession_ttl_seconds"
    )
    for project_id, ttl in projects.iterator():
        due = (
            SubSession.objects.filter(
                parent__project_id=project_id,
                status__in=ARCHIVABLE,
                updated_at__lt=now - timedelta(seconds=ttl),
            )
            .exclude(child__status__in=BLOCKING_STATUSES)
            .order_by("updated_at", "pk")[:batch_size]
        )
        for edge in due:
            try:
                subsession_archive(subsession=edge)
                counts["archived"] += 1
            except (NotArchivable, NotFound):
                counts["skipped"] += 1  # changed meanwhile, or another worker got it
            except DependencyUnavailable as exc:
                logger.warning("retention: archiving %s failed: %s", edge.pk, exc.details)
                counts["failed"] += 1

    leftovers = Workspace.objects.filter(
        session__parent_edge__status=SubSessionStatus.ARCHIVED,
        status=WorkspaceStatus.READY,
    )[:batch_size]
    for workspace in leftovers:
        counts["disposed"] += _dispose_workspace(workspace)
    return counts
