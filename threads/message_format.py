"""The API's message form: the dict and canonical JSON of a message row, and the token
estimate. The hot cache, cold snapshots, compaction archives and the API share it."""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson


@functools.cache
def message_fields() -> tuple:
    """The Message fields of a row of MESSAGE_COLUMNS, in that order (the row every function
    here takes; fixed SQL that writes or reads such rows converts through them)."""
    from threads.models import MESSAGE_COLUMNS, Message  # this module needs no app registry

    return tuple(Message._meta.get_field(name) for name in MESSAGE_COLUMNS)


# The API's keys of a row of MESSAGE_COLUMNS, in that order.
_KEYS = ("id", "seq", "role", "content", "metadata", "token_estimate", "created_at")


def iso_datetime(value: datetime) -> str:
    """A datetime as the API writes it: isoformat, `Z` for UTC; a naive one is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def message_dict(*row: Any) -> dict[str, Any]:
    """A message as the API shows it, from a row of MESSAGE_COLUMNS."""
    data = dict(zip(_KEYS, row, strict=True))
    data["created_at"] = iso_datetime(data["created_at"])
    return data


# Sorted keys; a UTC created_at as `…Z`, microseconds unless zero, a naive one taken as UTC:
# what message_dict's iso_datetime writes, without formatting it in Python (that was half of
# every message's cost).
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def message_json_bytes(*row: Any) -> bytes:
    """A message as the API's JSON, from a row of MESSAGE_COLUMNS: the form the Redis cache
    holds, cold snapshots store and database pages return. Canonical (sorted keys, compact)
    and always written by this function, so the same message gives the same bytes whichever
    path produced it. `content` and `metadata` may be orjson.Fragment (JSON text embedded
    as it is: a database page's jsonb text).

    orjson writes it (several times faster than the standard library, which was a large
    part of a page read); an integer beyond 64 bits, which orjson refuses, falls back to the
    standard library."""
    try:
        return orjson.dumps(dict(zip(_KEYS, row, strict=True)), option=_JSON_OPTIONS)
    except TypeError:
        data = message_dict(*row)
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
