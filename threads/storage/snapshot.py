"""The cold snapshot format (encode, decode).

Snapshot — gzip JSON at `<COLD_PREFIX>/messages/<thread id>.json.gz` (application/gzip), a
superset of zeitlich's v1 snapshot:

    {"v": 1,
     "messages": ["<each message as the API's JSON>", …],   zeitlich: raw JSON strings
     "state": <the state slice or null>,
     "dedupIds": ["<message id>", …],                       zeitlich: the dedup keys
     "thread_id", "tenant_id", "project_id", "last_seq", "message_count", "history_version",
     "token_estimate", "thread_created_at", "created_at" (when the snapshot was taken),
     "sha256": SHA-256 of the canonical JSON of "messages"}

"dedupIds" lists the ids of the snapshot's messages, aligned with them. The ids of messages
a compaction summarized away (CompactedMessageId) are not in it: they stay in the database,
which a flush leaves alone (it deletes message rows only), so a hydrated thread still dedups
them.

A plain zeitlich v1 snapshot (only the first four keys) hydrates too: each string is parsed
and mapped by foreign.py (zeitlich's plain, Anthropic-envelope and LangChain shapes, and our
own message JSON that a zeitlich flush carried back); the message id is its own, else the
dedupIds entry at the same index (when the two lists align), else a new `msg_…`. Seqs are
never reused: a message that carries the seq Threadline gave it keeps it, every other one
gets the next seq after the thread's last_seq (foreign.assign_seqs). A message no mapping
reads is kept whole, its raw JSON in metadata "zeitlich_raw".
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from common.errors import ColdSnapshotCorrupt
from common.ids import new_id
from threads.message_format import estimate_tokens, iso_datetime, json_parse, message_json
from threads.models import MESSAGE_COLUMNS, Message, Role, Thread
from threads.storage import cold, foreign

SNAPSHOT_VERSION = 1


def snapshot_key(thread_id: str) -> str:
    return f"{settings.COLD_PREFIX}/messages/{thread_id}.json.gz"


def messages_sha256(messages: list[str]) -> str:
    """SHA-256 of the canonical JSON of `messages` (compact, UTF-8 unescaped). For a list of
    strings orjson writes exactly the standard library's bytes, four times faster; anything
    else (a foreign list, a lone surrogate) goes through the standard library."""
    canonical = None
    if all(type(m) is str for m in messages):
        with contextlib.suppress(TypeError):
            canonical = orjson.dumps(messages)
    if canonical is None:
        canonical = json.dumps(messages, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).hexdigest()


def snapshot_encode(*, thread: Thread) -> dict[str, Any]:
    """The snapshot of `thread` from the database. Its messages are read after the row, so
    they are at least as new as `thread.history_version`; a flush only commits if that
    version is still current, which makes them exactly that version."""
    rows = list(
        Message.objects.filter(thread_id=thread.pk).order_by("seq").values_list(*MESSAGE_COLUMNS)
    )
    messages = [message_json(*row) for row in rows]
    return {
        "v": SNAPSHOT_VERSION,
        "messages": messages,
        "state": thread.state,
        "dedupIds": [row[0] for row in rows],
        "thread_id": thread.pk,
        "tenant_id": thread.tenant_id,
        "project_id": thread.project_id,
        "last_seq": thread.last_seq,
        "message_count": len(messages),
        "history_version": thread.history_version,
        "token_estimate": sum(row[5] for row in rows),
        "thread_created_at": iso_datetime(thread.created_at),
        "created_at": iso_datetime(timezone.now()),
        "sha256": messages_sha256(messages),
    }


class Row(NamedTuple):
    """A restored message, in MESSAGE_COLUMNS order (a model instance per row was most of a
    10,000-message hydrate's CPU)."""

    message_id: str
    seq: int
    role: str
    content: Any
    metadata: dict[str, Any]
    token_estimate: int
    created_at: datetime


@dataclass
class DecodedSnapshot:
    rows: list[Row]
    members: list[tuple[int, str]]  # (seq, the API JSON) — what the Redis cache holds
    state: Any
    last_seq: int
    native: bool  # written by Threadline (else a plain zeitlich v1 snapshot)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128


@contextlib.contextmanager
def _collector_paused():
    """No cyclic garbage collection inside the block. Parsing a snapshot allocates a few
    objects per message and frees none, so the collector's passes over a 10,000-message
    thread find nothing and were a quarter of its decode. The collector is the process's:
    it is switched back on only if it was on, so an overlapping block elsewhere never
    leaves it off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def snapshot_decode(body: bytes, *, thread: Thread, key: str = "") -> DecodedSnapshot:
    """Parse and check a snapshot for `thread` (see _decode)."""
    with _collector_paused():
        return _decode(body, thread=thread, key=key)


def _decode(body: bytes, *, thread: Thread, key: str) -> DecodedSnapshot:
    """Parse and check a snapshot for `thread`; ColdSnapshotCorrupt (503) on anything
    wrong — nothing is written before the whole body has been checked."""

    def corrupt(reason: str, **details: Any) -> ColdSnapshotCorrupt:
        return ColdSnapshotCorrupt(thread=thread.pk, key=key, reason=reason, **details)

    try:
        data = cold.gunzip_json(body)
    except ValueError as exc:
        raise corrupt("not_gzip_json") from exc
    if not isinstance(data, dict) or data.get("v") != SNAPSHOT_VERSION:
        raise corrupt("not_v1")
    messages = data.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
        raise corrupt("bad_messages")

    native = "sha256" in data or "thread_id" in data
    if native:
        if data.get("sha256") != messages_sha256(messages):
            raise corrupt("checksum_mismatch")
        if data.get("thread_id") != thread.pk:
            raise corrupt("other_thread", snapshot_thread=data.get("thread_id"))
        if data.get("message_count") != len(messages):
            raise corrupt("count_mismatch")
        if data.get("history_version") != thread.history_version:
            # Not the version the row says was flushed: restoring it could lose writes.
            raise corrupt(
                "stale",
                snapshot_version=data.get("history_version"),
                thread_version=thread.history_version,
            )

    dedup = data.get("dedupIds")
    aligned = dedup if isinstance(dedup, list) and len(dedup) == len(messages) else None
    parsed = []
    for index, raw in enumerate(messages):
        try:
            parsed.append(json_parse(raw))
        except ValueError as exc:
            raise corrupt("bad_message", index=index) from exc
    if native:
        rows, members = _native_rows(parsed, messages, corrupt)
    else:
        rows, members = _foreign_rows(parsed, messages, aligned, after=thread.last_seq)
    last_seq = rows[-1].seq if rows else 0
    state = data.get("state")
    recorded_last_seq = data.get("last_seq") if native else None
    if isinstance(recorded_last_seq, int):  # a truncation leaves last_seq above the rows
        last_seq = max(last_seq, recorded_last_seq)
    return DecodedSnapshot(
        rows=rows,
        members=members,
        state=state if isinstance(state, dict) else None,
        last_seq=last_seq,
        native=native,
    )


_ROLES = frozenset(Role.values)  # Role.values builds a new list on every access


def _native_message(parsed: Any, after_seq: int) -> Row | None:
    """A message we wrote (the API's JSON), or None if it is not one."""
    if not isinstance(parsed, dict):
        return None
    seq, role, tokens = parsed.get("seq"), parsed.get("role"), parsed.get("token_estimate")
    created_at = _datetime(parsed.get("created_at"))
    if not (
        _valid_id(parsed.get("id"))
        and isinstance(seq, int)
        and seq > after_seq
        and role in _ROLES
        and "content" in parsed
        and isinstance(parsed.get("metadata"), dict)
        and isinstance(tokens, int)
        and created_at is not None
    ):
        return None
    return Row(parsed["id"], seq, role, parsed["content"], parsed["metadata"], tokens, created_at)


def _native_rows(parsed: list[Any], messages: list[str], corrupt) -> tuple[list[Row], list]:
    rows: list[Row] = []
    seen: set[str] = set()
    for index, message in enumerate(parsed):
        row = _native_message(message, rows[-1].seq if rows else 0)
        if row is None or row.message_id in seen:
            raise corrupt("bad_message", index=index)
        seen.add(row.message_id)
        rows.append(row)
    return rows, [(row.seq, raw) for row, raw in zip(rows, messages, strict=True)]


def _foreign_rows(
    parsed: list[Any], messages: list[str], aligned: list | None, *, after: int
) -> tuple[list[Row], list]:
    """A snapshot another tool wrote (zeitlich): each message mapped by foreign.py; one it
    cannot read is kept whole (role user, metadata "zeitlich_raw"). Seqs: foreign.assign_seqs
    (the ones Threadline gave are kept, new messages continue after the thread's last_seq)."""
    now = timezone.now()
    mapped = []
    for index, (message, raw) in enumerate(zip(parsed, messages, strict=True)):
        try:
            mapped.append(foreign.zeitlich_message(message, f"$.messages[{index}]"))
        except foreign.Unmappable:
            own_id = message.get("id") if isinstance(message, dict) else None
            mapped.append(
                foreign.Mapped(
                    id=own_id if _valid_id(own_id) else None,
                    role=Role.USER,
                    content=raw,
                    metadata={"zeitlich_raw": raw},
                )
            )
    seqs = foreign.assign_seqs([m.seq for m in mapped], after=after)
    rows: list[Row] = []
    seen: set[str] = set()
    for index, (message, seq) in enumerate(zip(mapped, seqs, strict=True)):
        message_id = message.id
        if message_id is None and aligned is not None and _valid_id(aligned[index]):
            message_id = aligned[index]
        if message_id is None or message_id in seen:
            message_id = new_id("msg")
        seen.add(message_id)
        tokens = message.token_estimate
        if message.seq is None or tokens is None:
            tokens = estimate_tokens(message.content)
        created_at = _datetime(message.created_at) or now
        content, metadata = message.content, message.metadata
        rows.append(Row(message_id, seq, message.role, content, metadata, tokens, created_at))
    return rows, [(row.seq, message_json(*row)) for row in rows]


def _datetime(value: Any) -> datetime | None:
    """An ISO 8601 timestamp (as the API writes them: ...Z), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = parse_datetime(value)  # the looser forms other writers use
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
