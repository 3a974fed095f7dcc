"""Import documents → a Plan (what imports.py writes). Every check runs here, before anything
is written; the first bad element is named by its JSON path (`$.messages[3].role`).

Formats (README, "Import sources"), detected from the document or named by ?format=:
- `threadline`: an export (document.py), checksum verified;
- `zeitlich`: a zeitlich v1 snapshot `{v: 1, messages: [JSON string…], state, dedupIds}`
  (and Threadline's own cold snapshots, which are a superset);
- `openai`: an OpenAI Conversations items page `{object: "list", data: [item…]}`, or
  `{items: [...]}`, or a bare list of items;
- `langgraph`: a LangGraph thread state `{values: {messages: [LangChain message…], …}, …}`.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from common.api.parsers import MAX_DEPTH, too_deep, unstorable_string
from common.errors import DomainError, PayloadTooLarge
from threads.models import ReasoningEffort
from threads.portability import document
from threads.storage import foreign

FORMATS = ("threadline", "zeitlich", "openai", "langgraph")


class InvalidDocument(DomainError):
    status = 400
    code = "invalid_document"
    message = "The document cannot be imported."

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}", path=path, reason=reason)


@dataclass
class Plan:
    format: str
    digest: str  # SHA-256 of the document's JSON bytes: the import's identity
    messages: list[foreign.Mapped]
    state: dict[str, Any] | None = None
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # kept in metadata["import"]
    settings: dict[str, Any] = field(default_factory=dict)  # Thread columns (threadline only)
    last_seq: int = 0
    compacted_ids: list[tuple[str, int, str | None]] = field(default_factory=list)
    compactions: list[dict[str, Any]] = field(default_factory=list)


# --- Bytes → JSON ------------------------------------------------------------------------


def document_bytes(body: bytes) -> bytes:
    """The JSON bytes of a plain or gzip body, at most IMPORT_MAX_BYTES (413 beyond)."""
    limit = settings.IMPORT_MAX_BYTES
    if len(body) > limit:
        raise PayloadTooLarge(f"The document exceeds {limit} bytes.", limit=limit)
    if body[:2] != b"\x1f\x8b":
        return body
    inflate = zlib.decompressobj(wbits=31)
    try:
        raw = inflate.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidDocument("$", f"not valid gzip: {exc}") from None
    if len(raw) > limit or inflate.unconsumed_tail:
        raise PayloadTooLarge(f"The document exceeds {limit} bytes once unzipped.", limit=limit)
    if not inflate.eof:
        raise InvalidDocument("$", "the gzip stream is truncated")
    return raw


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes, path: str = "$") -> Any:
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidDocument(path, f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidDocument(path, f"not valid JSON: {exc}") from None
    if too_deep(data, MAX_DEPTH + 8):
        raise InvalidDocument(path, f"nested deeper than {MAX_DEPTH} levels")
    if unstorable_string(data) is not None:
        raise InvalidDocument(path, "strings must not contain NUL characters or lone surrogates")
    return data


def detect(data: Any) -> str:
    if isinstance(data, dict):
        if data.get("format") == document.FORMAT:
            return "threadline"
        if "v" in data and isinstance(data.get("messages"), list):
            return "zeitlich"
        if isinstance(data.get("values"), dict):
            return "langgraph"
        if isinstance(data.get("data"), list) or isinstance(data.get("items"), list):
            return "openai"
    if isinstance(data, list):
        return "openai"
    raise InvalidDocument("$", f"not a format Threadline imports ({', '.join(FORMATS)})")


def plan_document(body: bytes, *, fmt: str = "auto", order: str = "asc") -> Plan:
    raw = document_bytes(body)
    data = parse_json(raw)
    digest = hashlib.sha256(raw).hexdigest()
    del raw
    fmt = detect(data) if fmt == "auto" else fmt
    if fmt == "openai":
        return _openai(data, digest, order=order)
    if not isinstance(data, dict):
        raise InvalidDocument("$", f"a {fmt} document is a JSON object")
    return {"threadline": _threadline, "zeitlich": _zeitlich, "langgraph": _langgraph}[fmt](
        data, digest
    )


def _mapped(path: str, build, *args) -> foreign.Mapped:
    try:
        return build(*args, path)
    except foreign.Unmappable as exc:
        raise InvalidDocument(exc.path, exc.reason) from None


def _require(condition: bool, path: str, reason: str) -> None:
    if not condition:
        raise InvalidDocument(path, reason)


# --- Threadline export -------------------------------------------------------------------


def _threadline(data: dict[str, Any], digest: str) -> Plan:
    _require(data.get("version") == document.VERSION, "$.version", "must be 1")
    thread = data.get("thread")
    _require(isinstance(thread, dict), "$.thread", "must be an object")
    messages = data.get("messages")
    _require(isinstance(messages, list), "$.messages", "must be a list")
    _require(data.get("message_count") == len(messages), "$.message_count", "≠ len(messages)")
    check = document.MessagesDigest()
    mapped, previous = [], 0
    for index, message in enumerate(messages):
        path = f"$.messages[{index}]"
        _require(isinstance(message, dict), path, "must be an object")
        check.add(document.canonical(message))
        item = _mapped(path, foreign.native_message, message)
        _require(item.seq > previous, f"{path}.seq", "seqs must increase")
        _require(item.id is not None, f"{path}.id", "is required")
        _require(item.token_estimate is not None, f"{path}.token_estimate", "is required")
        previous = item.seq
        mapped.append(item)
    _require(data.get("sha256") == check.hexdigest(), "$.sha256", "does not match the messages")
    state = data.get("state")
    _require(state is None or isinstance(state, dict), "$.state", "must be an object or null")
    last_seq = thread.get("last_seq", previous)
    _require(
        isinstance(last_seq, int) and 0 <= last_seq <= foreign.MAX_SEQ,
        "$.thread.last_seq",
        f"an integer from 0 to {foreign.MAX_SEQ}",
    )
    metadata = thread.get("metadata") or {}
    _require(isinstance(metadata, dict), "$.thread.metadata", "must be an object")
    title = thread.get("title") or ""
    _require(isinstance(title, str) and len(title) <= 500, "$.thread.title", "a string ≤ 500")
    return Plan(
        format="threadline",
        digest=digest,
        messages=mapped,
        state=state,
        title=title,
        metadata=metadata,
        source={"thread": thread.get("id"), "exported_at": data.get("exported_at")},
        settings=_settings(thread),
        last_seq=max(last_seq, previous),
        compacted_ids=_compacted_ids(data.get("compacted_ids", [])),
        compactions=_compaction_records(data.get("compactions", [])),
    )


# name → (column, minimum, maximum, nullable), the bounds of PATCH /threads/{id}/.
_COMPACTION_FIELDS = {
    "threshold_tokens": ("compaction_threshold_tokens", 0, 100_000_000, True),
    "threshold_percent": ("compaction_threshold_percent", 0, 100, False),
    "context_window": ("compaction_context_window", 1000, 100_000_000, False),
    "keep_last": ("compaction_keep_last", 1, 100_000, False),
}


def _settings(thread: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    effort = thread.get("reasoning_effort")
    if effort is not None:
        _require(effort in ReasoningEffort.values, "$.thread.reasoning_effort", "unknown level")
        columns["reasoning_effort"] = effort
    compaction = thread.get("compaction") or {}
    _require(isinstance(compaction, dict), "$.thread.compaction", "must be an object")
    for name, (column, minimum, maximum, nullable) in _COMPACTION_FIELDS.items():
        if name not in compaction:
            continue
        value = compaction[name]
        ok = (value is None and nullable) or (
            isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum
        )
        _require(ok, f"$.thread.compaction.{name}", f"an integer from {minimum} to {maximum}")
        columns[column] = value
    return columns


def _compacted_ids(items: Any) -> list[tuple[str, int, str | None]]:
    _require(isinstance(items, list), "$.compacted_ids", "must be a list")
    out = []
    for index, item in enumerate(items):
        path = f"$.compacted_ids[{index}]"
        ok = (
            isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and 0 < len(item["id"]) <= 128
            and isinstance(item.get("seq"), int)
            and 0 <= item["seq"] <= foreign.MAX_SEQ
        )
        _require(ok, path, "must be {id, seq, compaction}")
        out.append((item["id"], item["seq"], item.get("compaction")))
    return out


def _compaction_records(items: Any) -> list[dict[str, Any]]:
    _require(isinstance(items, list), "$.compactions", "must be a list")
    for index, item in enumerate(items):
        path = f"$.compactions[{index}]"
        _require(isinstance(item, dict) and isinstance(item.get("id"), str), path, "needs an id")
        originals = item.get("originals")
        if originals is not None:
            _require(isinstance(originals, list), f"{path}.originals", "must be a list")
            for n, message in enumerate(originals):
                _mapped(f"{path}.originals[{n}]", foreign.native_message, message)
    return items


# --- zeitlich v1 -------------------------------------------------------------------------


def _zeitlich(data: dict[str, Any], digest: str) -> Plan:
    _require(data.get("v") == 1, "$.v", "must be 1")
    messages = data.get("messages")
    _require(isinstance(messages, list), "$.messages", "must be a list of JSON strings")
    dedup = data.get("dedupIds", [])
    _require(
        isinstance(dedup, list) and all(isinstance(d, str) for d in dedup),
        "$.dedupIds",
        "must be a list of strings",
    )
    aligned = len(dedup) == len(messages)
    mapped = []
    for index, raw in enumerate(messages):
        path = f"$.messages[{index}]"
        _require(isinstance(raw, str), path, "must be a JSON string (zeitlich stores raw JSON)")
        item = _mapped(path, foreign.zeitlich_message, parse_json(raw.encode(), path))
        if item.id is None and aligned and 0 < len(dedup[index]) <= 128:
            item.id = dedup[index]
        mapped.append(item)
    state = data.get("state")
    _require(state is None or isinstance(state, dict), "$.state", "must be an object or null")
    ids = {m.id for m in mapped}
    source: dict[str, Any] = {}
    extra_dedup = [d for d in dedup if d not in ids]
    if extra_dedup:  # zeitlich's batch keys ("a:b"): kept, they name no single message
        source["dedupIds"] = extra_dedup
    if data.get("thread_id"):
        source["thread"] = data["thread_id"]
    return Plan(format="zeitlich", digest=digest, messages=mapped, state=state, source=source)


# --- OpenAI Conversations items ----------------------------------------------------------


def _openai(data: Any, digest: str, *, order: str = "asc") -> Plan:
    if isinstance(data, list):
        items, where, page = data, "$", {}
    elif not isinstance(data, dict):
        raise InvalidDocument("$", "an items page is a JSON object or a list of items")
    else:
        where = "$.data" if isinstance(data.get("data"), list) else "$.items"
        items = data.get("data") if where == "$.data" else data.get("items")
        _require(isinstance(items, list), where, "must be a list of items")
        page = {k: v for k, v in data.items() if k not in ("data", "items", "object")}
    indexed = list(enumerate(items))
    if order == "desc":  # the API's default order: newest first
        indexed.reverse()
    mapped = [_mapped(f"{where}[{i}]", foreign.openai_item, item) for i, item in indexed]
    return Plan(format="openai", digest=digest, messages=mapped, source=page)


# --- LangGraph thread state ----------------------------------------------------------------


def _langgraph(data: dict[str, Any], digest: str) -> Plan:
    values = data.get("values")
    _require(isinstance(values, dict), "$.values", "must be an object")
    messages = values.get("messages", [])
    _require(isinstance(messages, list), "$.values.messages", "must be a list")
    mapped = []
    for index, message in enumerate(messages):
        path = f"$.values.messages[{index}]"
        _require(isinstance(message, dict), path, "must be a LangChain message object")
        if isinstance(message.get("data"), dict) and "content" not in message:
            flat = {**message["data"], "type": message.get("type")}
            mapped.append(_mapped(path, _nested_langchain, flat))
        else:
            mapped.append(_mapped(path, foreign.langchain_message, message))
    rest = {k: v for k, v in values.items() if k != "messages"}
    source = {k: data[k] for k in ("checkpoint", "metadata", "created_at") if data.get(k)}
    return Plan(
        format="langgraph", digest=digest, messages=mapped, state=rest or None, source=source
    )


def _nested_langchain(flat: dict[str, Any], path: str) -> foreign.Mapped:
    return foreign.langchain_message(flat, path, nested=True)
