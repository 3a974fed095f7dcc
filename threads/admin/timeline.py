"""The conversation view of a thread: its messages as a readable timeline, a page at a time.

A hot thread's page is read from the database (one indexed range on (thread, seq)). A cold
thread's page is read from its snapshot in cold storage without hydrating it: the object is
fetched, checked as a hydrate would check it (snapshot_decode), and only the page is shown;
nothing is written, the thread stays cold. Snapshots above COLD_VIEW_MAX_BYTES (compressed)
are not read here: hydrating such a thread is the operator's call.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.admin.utils import quote
from django.urls import reverse

from common.errors import DomainError
from threads.models import MESSAGE_COLUMNS, Message, Thread, Tier
from threads.storage import cold
from threads.storage.snapshot import Row, snapshot_decode, snapshot_key

PAGE_SIZE = 50
COLD_VIEW_MAX_BYTES = 32 * 1024 * 1024


@dataclass
class Window:
    """Which page: after a seq (forward), before a seq (backward), or the first page."""

    after: int | None = None
    before: int | None = None

    @classmethod
    def from_query(cls, params) -> Window:
        def seq(name: str) -> int | None:
            raw = params.get(name, "")
            return int(raw) if raw.isdigit() else None

        before = seq("before")
        return cls(after=None if before is not None else seq("after"), before=before)


@dataclass
class TimelinePage:
    messages: list[dict[str, Any]]
    source: str  # "database" | "snapshot"
    has_newer: bool = False
    has_older: bool = False
    error: str = ""
    snapshot_key: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def first_seq(self) -> int | None:
        return self.messages[0]["seq"] if self.messages else None

    @property
    def last_seq(self) -> int | None:
        return self.messages[-1]["seq"] if self.messages else None


def timeline_page(*, thread: Thread, window: Window, size: int = PAGE_SIZE) -> TimelinePage:
    """One page of `thread`'s history, from wherever it lives now. A flush or hydrate that
    lands between reading the row and reading the page is seen by re-reading the row (the
    same seqlock as threads.storage.pages) and answered from the other tier."""
    for _ in range(3):
        if thread.tier == Tier.COLD:
            page = _snapshot_page(thread, window, size)
        else:
            page = _database_page(thread, window, size)
        moved = _tier_moved(thread)
        if not moved:
            return page
    return page


def _tier_moved(thread: Thread) -> bool:
    before = (thread.tier, thread.last_flushed_at)
    thread.refresh_from_db(fields=[*_TIER_FIELDS, "history_version"])
    return (thread.tier, thread.last_flushed_at) != before


_TIER_FIELDS = ("tier", "last_flushed_at", "cold_key", "cold_bytes")


def _database_page(thread: Thread, window: Window, size: int) -> TimelinePage:
    rows = Message.objects.filter(thread_id=thread.pk)
    if window.before is not None:
        found = list(
            rows.filter(seq__lt=window.before)
            .order_by("-seq")
            .values_list(*MESSAGE_COLUMNS)[: size + 1]
        )
        older = len(found) > size
        page = [Row(*row) for row in reversed(found[:size])]
        newer = rows.filter(seq__gte=window.before).exists()
    else:
        after = window.after or 0
        found = list(
            rows.filter(seq__gt=after).order_by("seq").values_list(*MESSAGE_COLUMNS)[: size + 1]
        )
        newer = len(found) > size
        page = [Row(*row) for row in found[:size]]
        older = after > 0 and rows.filter(seq__lte=after).exists()
    return TimelinePage(
        messages=render_messages(page), source="database", has_newer=newer, has_older=older
    )


def _snapshot_page(thread: Thread, window: Window, size: int) -> TimelinePage:
    key = thread.cold_key or snapshot_key(thread.pk)
    if (thread.cold_bytes or 0) > COLD_VIEW_MAX_BYTES:
        return TimelinePage(
            messages=[],
            source="snapshot",
            snapshot_key=key,
            error=(
                f"The snapshot is {thread.cold_bytes} bytes (over {COLD_VIEW_MAX_BYTES}); "
                "hydrate the thread to read it here."
            ),
        )
    try:
        rows = snapshot_decode(cold.get(key), thread=thread, key=key).rows
    except cold.ColdObjectMissing:
        return TimelinePage(
            messages=[], source="snapshot", snapshot_key=key, error="No object at that key."
        )
    except DomainError as exc:  # unavailable store or a corrupt (or superseded) snapshot
        return TimelinePage(
            messages=[], source="snapshot", snapshot_key=key, error=f"{exc.message} ({exc.code})"
        )
    seqs = [row.seq for row in rows]
    if window.before is not None:
        end = bisect.bisect_left(seqs, window.before)
        start = max(0, end - size)
    else:
        start = bisect.bisect_right(seqs, window.after or 0)
        end = start + size
    return TimelinePage(
        messages=render_messages(rows[start:end]),
        source="snapshot",
        snapshot_key=key,
        has_newer=end < len(rows),
        has_older=start > 0,
    )


# --- Rendering ---------------------------------------------------------------------------


def render_messages(rows: list[Row]) -> list[dict[str, Any]]:
    """The rows as the template shows them: content as typed blocks, each tool call with
    the seq of its result when the result is on the same page."""
    messages = [_message(row) for row in rows]
    results = {
        block["tool_use_id"]: message["seq"]
        for message in messages
        for block in message["blocks"]
        if block["kind"] == "tool_result"
    }
    for message in messages:
        for block in message["blocks"]:
            if block["kind"] == "tool_use":
                block["result_seq"] = results.get(block["id"])
    return messages


def _message(row: Row) -> dict[str, Any]:
    metadata = row.metadata if isinstance(row.metadata, dict) else {}
    compaction_id = metadata.get("compaction")
    compaction = None
    if isinstance(compaction_id, str) and compaction_id:
        compaction = {
            "id": compaction_id,
            "summarized": metadata.get("messages_summarized"),
            "url": reverse("admin:threads_compaction_change", args=[quote(compaction_id)]),
            "originals_url": reverse(
                "admin:threads_compaction_originals", args=[quote(compaction_id)]
            ),
        }
    return {
        "id": row.message_id,
        "seq": row.seq,
        "role": row.role,
        "created_at": row.created_at,
        "token_estimate": row.token_estimate,
        "metadata": _pretty(metadata) if metadata else "",
        "blocks": content_blocks(row.content),
        "compaction": compaction,
    }


def content_blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as blocks of known kinds: text, tool_use, tool_result, thinking
    (shown collapsed) and other (any block this view does not know, as JSON)."""
    if isinstance(content, str):
        return [{"kind": "text", "text": content}]
    if not isinstance(content, list):
        return [{"kind": "other", "json": _pretty(content)}]
    return [_block(block) for block in content]


def _block(block: Any) -> dict[str, Any]:
    if not isinstance(block, dict):
        return {"kind": "other", "json": _pretty(block)}
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return {"kind": "text", "text": block["text"]}
    if kind == "tool_use":
        return {
            "kind": "tool_use",
            "id": str(block.get("id", "")),
            "name": str(block.get("name", "")),
            "input": _pretty(block.get("input", {})),
            "result_seq": None,
        }
    if kind == "tool_result":
        return {
            "kind": "tool_result",
            "tool_use_id": str(block.get("tool_use_id", "")),
            "is_error": bool(block.get("is_error")),
            "text": _result_text(block.get("content", "")),
        }
    if kind == "thinking":
        return {"kind": "thinking", "text": str(block.get("thinking", ""))}
    if kind == "redacted_thinking":
        return {"kind": "thinking", "text": "(redacted)"}
    return {"kind": "other", "type": str(kind or ""), "json": _pretty(block)}


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(b, dict) and b.get("type") == "text" for b in content
    ):
        return "\n".join(str(b.get("text", "")) for b in content)
    return _pretty(content)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
