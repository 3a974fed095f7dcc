"""The API's message form: the dict and canonical JSON of a message row, and the token
estimate. The hot cache, cold snapshots, compaction archives and the API share it."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import orjson


def message_dict(
    message_id: str,
    seq: int,
    role: str,
    content: Any,
    metadata: dict[str, Any],
    token_estimate: int,
    created_at: datetime,
) -> dict[str, Any]:
    """A message as the API shows it, from a row of MESSAGE_COLUMNS."""
    return {
        "id": message_id,
        "seq": seq,
        "role": role,
        "content": content,
        "metadata": metadata,
        "token_estimate": token_estimate,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
    }


def message_json_bytes(*row: Any) -> bytes:
    """A message as the API's JSON, from a row of MESSAGE_COLUMNS: the form the Redis cache
    holds and cold snapshots store. Canonical (sorted keys, compact) and always written by
    this function, so the same message gives the same bytes whichever path produced it.

    orjson writes it (several times faster than the standard library, which was a large
    part of a page read); an integer beyond 64 bits, which orjson refuses, falls back to the
    standard library."""
    data = message_dict(*row)
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def message_json(*row: Any) -> str:
    """message_json_bytes as text (for the snapshot's list of strings)."""
    return message_json_bytes(*row).decode()


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of a value (size checks, jsonb parameters, COPY rows): orjson,
    with the standard library for what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_text(value: Any) -> str:
    """json_bytes as text."""
    return json_bytes(value).decode()


def json_parse(raw: str | bytes) -> Any:
    """json.loads, through orjson (several times faster, a fifth of a 10,000-message
    hydrate); what orjson refuses (NaN, integers beyond 64 bits, UTF-16) is read by the
    standard library as before, which raises ValueError on anything that is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


# What a token estimate stands for in bytes of a message's JSON (about: ~4 characters a
# token; more for non-ASCII text). Page and cache size bounds are in these estimated bytes.
BYTES_PER_TOKEN = 4


def estimate_tokens(content: Any) -> int:
    """A provider-independent estimate: ~4 characters a token plus a small per-message cost."""
    if isinstance(content, str):
        chars = len(content)
    else:
        chars = 0
        for block in content:
            text = block.get("text") if isinstance(block, dict) else None
            chars += len(text) if isinstance(text, str) else len(json.dumps(block))
    return 4 + math.ceil(chars / 4)
