"""thread_import: a document (sources.py) becomes a new hot thread, all or nothing.

Order: read the document (from the body, or from cold storage by key) and check all of it
(sources.plan_document) with no transaction open; write the archives of imported compaction
originals (cold storage I/O, before any transaction); then one transaction inserts the
thread, its messages (COPY), its compacted ids, compactions and the thread.imported event.
Anything failing in that transaction leaves nothing behind (the archives written for it are
deleted).

Identity: the new thread's id is derived from the tenant, the project and the SHA-256 of the
document, so importing the same document into the same project again finds the thread the
first import made (200, nothing written twice — also when two imports race: the second
INSERT waits for the first and then conflicts on the primary key). A cold-key import of
`<COLD_PREFIX>/messages/<thd_…>.json.gz` keeps that thread id when it is free, so the object
stays shared with the tool that wrote it (and its tag is recorded: Threadline's next flush
writes on top of exactly that object, see storage/shared.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from common.errors import InvalidInput, NotFound, PayloadTooLarge
from common.ids import ALPHABET, new_id
from threads import events
from threads.conversation import rewrite
from threads.events import event_record
from threads.message_format import estimate_tokens
from threads.models import (
    CompactedMessageId,
    Compaction,
    CompactionStatus,
    CompactionTrigger,
    Project,
    Tenant,
    Thread,
)
from threads.portability import document
from threads.portability.sources import InvalidDocument, Plan, plan_document
from threads.storage import cold, shared, snapshot, tiers
from threads.storage.foreign import assign_seqs
from threads.storage.snapshot import Row

_THREAD_KEY = re.compile(r"^(thd_[0-9a-z]{1,16})\.json(\.gz)?$")


@dataclass
class Imported:
    thread: Thread
    created: bool
    format: str


def _derived_id(tenant_id: str, project_id: str, digest: str) -> str:
    number = int(hashlib.sha256(f"{tenant_id}:{project_id}:{digest}".encode()).hexdigest(), 16)
    chars = []
    for _ in range(16):
        number, rest = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[rest])
    return "thd_" + "".join(chars)


def cold_key_read(*, tenant: Tenant, key: str) -> tuple[bytes, str, str | None]:
    """The object at `key` (which must lie under COLD_PREFIX), its tag, and the thread id its
    name carries. A Threadline snapshot of another tenant's thread is a 404, as a missing
    object is."""
    prefix = f"{settings.COLD_PREFIX}/"
    if not key.startswith(prefix) or ".." in key.split("/") or len(key) > 300:
        raise InvalidInput(
            f"cold_key must name an object under {prefix}", field="cold_key", key=key
        )
    try:
        body, tag = cold.get_tagged(key)
    except cold.ColdObjectMissing:
        raise NotFound("No such cold object.", field="cold_key", key=key) from None
    match = _THREAD_KEY.match(key.rpartition("/")[2])
    stem = match.group(1) if match else None
    owner = Thread.objects.filter(pk=stem).values_list("tenant_id", flat=True).first()
    if owner is not None and owner != tenant.pk:
        raise NotFound("No such cold object.", field="cold_key", key=key)
    return body, tag, stem


def thread_import(
    *,
    tenant: Tenant,
    project_id: str,
    body: bytes | None = None,
    cold_key: str | None = None,
    fmt: str = "auto",
    order: str = "asc",
    title: str | None = None,
) -> Imported:
    if not Project.objects.filter(tenant=tenant, pk=project_id).exists():
        raise NotFound("Project not found.", field="project", id=project_id)
    tag = stem = None
    if cold_key is not None:
        body, tag, stem = cold_key_read(tenant=tenant, key=cold_key)
    plan = plan_document(body or b"", fmt=fmt, order=order)
    del body
    thread_id = _derived_id(tenant.pk, project_id, plan.digest)
    shares_key = stem is not None and cold_key == snapshot.snapshot_key(stem)
    if shares_key:
        thread_id = stem
    existing = Thread.objects.filter(pk=thread_id, tenant=tenant).first()
    if existing is not None:
        return Imported(thread=existing, created=False, format=plan.format)

    rows = _rows(plan)
    thread = _thread(plan, tenant, project_id, thread_id, rows, title)
    compactions, archives = _compactions(plan, thread)
    try:
        winner = _insert(
            thread, rows, compactions, plan, tag=tag, cold_key=cold_key, shares_key=shares_key
        )
    except IntegrityError as exc:  # e.g. an id the document repeats in compacted_ids
        _discard(archives)
        raise InvalidDocument("$.compacted_ids", f"conflicts with the messages: {exc}") from None
    except Exception:
        _discard(archives)
        raise
    if winner is not None:  # a racing import of the same document made the thread first
        _discard(archives)  # after the transaction: a cold-storage delete
        return Imported(thread=winner, created=False, format=plan.format)
    return Imported(thread=thread, created=True, format=plan.format)


def _insert(
    thread: Thread,
    rows: list[Row],
    compactions: list[Compaction],
    plan: Plan,
    *,
    tag: str | None,
    cold_key: str | None,
    shares_key: bool,
) -> Thread | None:
    """The import's one transaction: the thread, its rows, compactions, compacted ids, the
    shared object's tag and the event — or, when a racing import of the same document made
    the thread first, that thread (nothing written)."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                thread.save(force_insert=True)
        except IntegrityError:
            existing = Thread.objects.filter(pk=thread.pk, tenant_id=thread.tenant_id).first()
            if existing is None:
                raise
            return existing
        tiers.insert_messages(thread.pk, rows)
        Compaction.objects.bulk_create(compactions)
        renamed = {old: c.pk for old, c in zip(_old_ids(plan), compactions, strict=True)}
        CompactedMessageId.objects.bulk_create(
            [
                CompactedMessageId(
                    thread_id=thread.pk,
                    message_id=message_id,
                    seq=seq,
                    compaction_id=renamed.get(compaction_id),
                )
                for message_id, seq, compaction_id in plan.compacted_ids
            ],
            batch_size=1000,
        )
        if shares_key and tag is not None:
            shared.tag_record(thread_id=thread.pk, key=cold_key, etag=tag)
        event_record(
            tenant_id=thread.tenant_id,
            kind=events.THREAD_IMPORTED,
            thread_id=thread.pk,
            payload={
                "format": plan.format,
                "messages": len(rows),
                "sha256": plan.digest,
                **({"cold_key": cold_key} if cold_key else {}),
            },
        )
    return None


def _rows(plan: Plan) -> list[Row]:
    """Rows in document order: carried seqs kept, the rest numbered after them; ids kept (a
    message without one gets a new msg_… id); MAX_MESSAGE_BYTES per message as for appends."""
    seqs = assign_seqs([m.seq for m in plan.messages], after=0)
    limit = settings.MAX_MESSAGE_BYTES
    now = timezone.now()
    rows, seen = [], set()
    path = "$.values.messages" if plan.format == "langgraph" else "$.messages"
    for index, (message, seq) in enumerate(zip(plan.messages, seqs, strict=True)):
        message_id = message.id or new_id("msg")
        if message_id in seen:
            raise InvalidDocument(f"{path}[{index}].id", f"repeats the id {message_id!r}")
        seen.add(message_id)
        size = len(document.canonical([message.content, message.metadata]))
        if size > limit:
            raise PayloadTooLarge(
                f"Message {index} is {size} bytes; the limit is {limit}.",
                path=f"{path}[{index}]",
                bytes=size,
                limit=limit,
            )
        tokens = message.token_estimate
        if tokens is None:
            tokens = estimate_tokens(message.content)
        created = _datetime(message.created_at) or now
        rows.append(
            Row(message_id, seq, message.role, message.content, message.metadata, tokens, created)
        )
    return rows


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _thread(
    plan: Plan, tenant: Tenant, project_id: str, thread_id: str, rows: list[Row], title
) -> Thread:
    metadata = {**plan.metadata}
    metadata["import"] = {"format": plan.format, "sha256": plan.digest, **plan.source}
    return Thread(
        id=thread_id,
        tenant=tenant,
        project_id=project_id,
        title=plan.title if title is None else title,
        metadata=metadata,
        state=plan.state,
        last_seq=max([plan.last_seq, *(r.seq for r in rows[-1:])]),
        message_count=len(rows),
        token_estimate=sum(r.token_estimate for r in rows),
        history_version=1,
        **plan.settings,
    )


def _old_ids(plan: Plan) -> list[str]:
    return [record["id"] for record in plan.compactions]


_PENDING = {CompactionStatus.QUEUED, CompactionStatus.RUNNING}


def _compactions(plan: Plan, thread: Thread) -> tuple[list[Compaction], list[str]]:
    """Compaction rows under new ids (ids are global; the source's still exist), and the
    archives written for those that came with their originals. One that was still pending
    when exported is imported as failed: no task would ever run it here."""
    compactions, archives = [], []
    for record in plan.compactions:
        status = record.get("status")
        pending = status in _PENDING or status not in CompactionStatus.values
        compaction = Compaction(
            thread_id=thread.pk,
            trigger=record.get("trigger")
            if record.get("trigger") in CompactionTrigger.values
            else CompactionTrigger.MANUAL,
            status=CompactionStatus.FAILED if pending else status,
            error=f"imported while {status}" if pending else "",
            keep_last=_int(record.get("keep_last"), 1),
            messages_summarized=_int(record.get("messages_summarized")),
            messages_kept=_int(record.get("messages_kept")),
            tokens_before=_int(record.get("tokens_before")),
            tokens_after=_int(record.get("tokens_after")),
            summary=record.get("summary") if isinstance(record.get("summary"), str) else "",
            summary_message_id=str(record.get("summary_message_id") or "")[:128],
            cut_seq=_int(record.get("cut_seq")),
            provider=str(record.get("provider") or "")[:100],
            usage=record.get("usage") if isinstance(record.get("usage"), dict) else {},
            created_at=_datetime(record.get("created_at")) or timezone.now(),
            finished_at=_datetime(record.get("finished_at")),
        )
        originals = record.get("originals")
        if originals and compaction.status == CompactionStatus.SUCCEEDED:
            key = rewrite.archive_key(thread_id=thread.pk, compaction_id=compaction.pk)
            older = [
                {
                    "message_id": m["id"],
                    **{k: m.get(k) for k in ("seq", "role", "content", "metadata")},
                    "token_estimate": _int(m.get("token_estimate"), 0),
                    "created_at": _datetime(m.get("created_at")) or timezone.now(),
                }
                for m in originals
            ]
            rewrite.archive_write(key, rewrite.archive_body(thread, compaction, older))
            compaction.archive_key = key
            archives.append(key)
        compactions.append(compaction)
    return compactions, archives


def _int(value: Any, default: int | None = None) -> int | None:
    """A count of the record, or `default` for anything that is not one a column holds."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return default


def _discard(keys: list[str]) -> None:
    for key in keys:
        rewrite.archive_discard(key)
