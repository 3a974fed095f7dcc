"""The export document, version 1 (README, "Export format").

gzip JSON, one object, keys in this order so that a reader sees the thread before its
messages and the checksum last:

    {"format": "threadline.thread", "version": 1, "exported_at": "…Z",
     "thread": {id, project, title, metadata, status, lifecycle, reasoning_effort, fork_of,
                last_seq, history_version, message_count, token_estimate, created_at,
                compaction: {threshold_tokens, threshold_percent, context_window, keep_last}},
     "state": {…} | null,
     "compacted_ids": [{"id", "seq", "compaction"}, …],
     "compactions": [{id, trigger, status, keep_last, messages_summarized, messages_kept,
                      tokens_before, tokens_after, summary, summary_message_id, cut_seq,
                      provider, usage, created_at, finished_at,
                      "originals": [message, …] only with ?originals=true}, …],
     "messages": [{id, seq, role, content, metadata, token_estimate, created_at}, …],
     "message_count": n,
     "sha256": "<hex>"}

`sha256` is the SHA-256 of every message's canonical JSON (sorted keys, no whitespace,
UTF-8), each followed by a newline, in document order — messages_digest computes it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

FORMAT = "threadline.thread"
VERSION = 1
CHUNK_BYTES = 64 * 1024


def canonical(obj: Any) -> bytes:
    """Sorted keys, compact, UTF-8 — orjson, with the standard library for integers beyond
    64 bits (as message_format.message_json_bytes does)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class MessagesDigest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def add(self, message_json: bytes) -> None:
        self._hash.update(message_json)
        self._hash.update(b"\n")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class GzipWriter:
    """Compresses as it goes and hands back chunks of about CHUNK_BYTES: the document is never
    whole in memory, compressed or not."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        self._out: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> bytes | None:
        out = self._z.compress(data)
        if out:
            self._out.append(out)
            self._size += len(out)
        if self._size >= CHUNK_BYTES:
            return self._take()
        return None

    def close(self) -> bytes:
        self._out.append(self._z.flush())
        return self._take()

    def _take(self) -> bytes:
        chunk = b"".join(self._out)
        self._out, self._size = [], 0
        return chunk


def document_stream(head: dict[str, Any], messages: Iterable[bytes]) -> Iterator[bytes]:
    """The gzip document: `head`'s keys, then the messages (each already canonical JSON),
    the count and the checksum. A failure while iterating `messages` ends the stream
    without the gzip trailer — a reader sees a truncated document, never a short one."""
    gz = GzipWriter()
    digest = MessagesDigest()
    try:  # in the order given (not sorted): format and version first
        opening = orjson.dumps(head)[:-1]  # without the closing brace
    except TypeError:
        opening = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()[:-1]
    parts = [opening + (b',"messages":[' if head else b'{"messages":[')]
    count = 0
    for message in messages:
        digest.add(message)
        parts.append(message if count == 0 else b"," + message)
        count += 1
        for part in parts:
            chunk = gz.write(part)
            if chunk:
                yield chunk
        parts = []
    tail = b'],"message_count":%d,"sha256":"%s"}' % (count, digest.hexdigest().encode())
    for part in [*parts, tail]:
        chunk = gz.write(part)
        if chunk:
            yield chunk
    yield gz.close()
