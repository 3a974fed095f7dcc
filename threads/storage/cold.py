"""The cold store: one module for every object Threadline keeps outside the database.

Backed by django-storages (`STORAGES["cold"]`: S3 or any S3-compatible store in production,
the filesystem under var/cold/ by default). Callers hand it bytes and keys; it never runs
inside a database transaction (see DESIGN.md invariant 4) — call it before or after one.

Every failure of the store surfaces as ColdStorageUnavailable (503
cold_storage_unavailable), except a missing object, which is ColdObjectMissing so callers
can decide what absence means.

Fail fast: the S3 client's timeouts and attempts come from AWS_S3_CONNECT_TIMEOUT,
AWS_S3_READ_TIMEOUT and AWS_S3_MAX_ATTEMPTS (total attempts, botocore's standard retry
mode), so one call against a hung store gives up within about
attempts × read timeout + 1 s of backoff (5 s with the defaults).

Bulkhead: at most COLD_STORAGE_CONCURRENCY calls to the store run at once on a host, across
all its processes (one flock'd slot file each under COLD_SLOTS_DIR). A call that finds every
slot taken waits at most COLD_STORAGE_SLOT_WAIT_SECONDS (2 s) for one, then fails with
ColdStorageBusy (503 cold_storage_busy) instead of queueing: slow cold-storage work can never
occupy every web thread, so hot threads keep being served.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from common.errors import DependencyUnavailable
from threads.message_format import json_parse

logger = logging.getLogger(__name__)

GZIP_CONTENT_TYPE = "application/gzip"
GZIP_LEVEL = 3  # see gzip_json


class ColdStorageUnavailable(DependencyUnavailable):
    code = "cold_storage_unavailable"
    message = "Cold storage is unavailable; nothing was lost, retry later."


class ColdStorageBusy(ColdStorageUnavailable):
    code = "cold_storage_busy"
    message = "Cold storage is busy (every slot is taken by slow calls); retry shortly."


class ColdObjectMissing(Exception):
    """No object at that key."""


class ColdPreconditionFailed(Exception):
    """A conditional write found the object not as expected (S3 412 PreconditionFailed)."""


class ColdS3Storage(S3Storage):
    """S3Storage that labels gzip objects `application/gzip` (not json + Content-Encoding,
    which some HTTP clients would transparently decompress)."""

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        params = dict(super().get_object_parameters(name))
        if name.endswith(".gz"):
            params["ContentType"] = GZIP_CONTENT_TYPE
        return params


def storage():
    return storages["cold"]


@contextlib.contextmanager
def slot(key: str) -> Iterator[None]:
    """Hold one of the host's COLD_STORAGE_CONCURRENCY slots for a call to the store. When
    every slot is taken, wait up to COLD_STORAGE_SLOT_WAIT_SECONDS for one (a burst of
    healthy calls takes milliseconds each), then raise ColdStorageBusy. A slot is an
    exclusive flock on a file: the kernel frees it when its holder's descriptor closes, so
    a killed process never leaks one."""
    limit = settings.COLD_STORAGE_CONCURRENCY
    if not limit:
        yield
        return
    directory = Path(settings.COLD_SLOTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    start = os.getpid() % limit  # processes start their search at different slots
    fds = [
        os.open(directory / f"slot-{(start + n) % limit}", os.O_RDWR | os.O_CREAT, 0o600)
        for n in range(limit)
    ]
    held = None
    try:
        deadline = time.monotonic() + settings.COLD_STORAGE_SLOT_WAIT_SECONDS
        while held is None:
            for fd in fds:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                held = fd
                break
            else:
                if time.monotonic() >= deadline:
                    logger.warning("cold storage busy: all %d slots taken; refusing %s", limit, key)
                    raise ColdStorageBusy(key=key, slots=limit)
                time.sleep(0.01)
        for fd in fds:
            if fd != held:
                os.close(fd)
        fds = [held]
        yield
    finally:
        for fd in fds:
            os.close(fd)  # also releases the slot


def _is_missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}
    return False


def _s3_target(store: S3Storage, key: str) -> tuple[Any, dict[str, str]]:
    """The boto3 client and Bucket/Key for `key`, as django-storages would name it."""
    name = store._normalize_name(clean_name(key))  # honours the storage's `location`
    return store.connection.meta.client, {"Bucket": store.bucket_name, "Key": name}


def put(key: str, body: bytes) -> None:
    """Write (overwrite) the object at `key`.

    On S3 this is one PutObject: django-storages' save() goes through upload_fileobj, which
    builds a transfer manager and thread pool per call — made for large multipart uploads,
    and several times slower for the snapshot-sized bodies written here."""
    store = storage()
    try:
        with slot(key):
            if isinstance(store, S3Storage):
                client, target = _s3_target(store, key)
                client.put_object(Body=body, **target, **_write_parameters(store, key))
            else:
                store.save(key, ContentFile(body))
    except ColdStorageBusy:
        raise
    except Exception as exc:
        logger.warning("cold storage write of %s failed: %s", key, exc)
        raise ColdStorageUnavailable(key=key, reason=type(exc).__name__) from exc


def put_verified(key: str, body: bytes) -> None:
    """put, then read the object back: it must be exactly what was written (a snapshot or
    an archive is trusted before the rows it holds are deleted)."""
    put(key, body)
    try:
        stored = get(key)
    except ColdObjectMissing as exc:
        raise ColdStorageUnavailable(key=key, reason="verify_missing") from exc
    if stored != body:
        raise ColdStorageUnavailable(key=key, reason="verify_mismatch")


def _write_parameters(store: S3Storage, key: str) -> dict[str, Any]:
    params = dict(store.get_object_parameters(key))
    params.setdefault(
        "ContentType", GZIP_CONTENT_TYPE if key.endswith(".gz") else "application/json"
    )
    if store.default_acl and "ACL" not in params:
        params["ACL"] = store.default_acl
    return params


def get(key: str) -> bytes:
    """The bytes at `key`; ColdObjectMissing if there is none.

    On S3 this is one GetObject (django-storages' open() adds two HEAD requests first)."""
    return _read(key)[0]


def body_tag(body: bytes) -> str:
    """The tag of an object on a store without ETags (the filesystem): its SHA-256."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def get_tagged(key: str) -> tuple[bytes, str]:
    """get, with the object's ETag (S3) or body_tag (elsewhere): what a later conditional
    write names as the version it expects."""
    body, etag = _read(key)
    return body, etag if etag is not None else body_tag(body)


def _read(key: str) -> tuple[bytes, str | None]:
    """The bytes at `key` and, on S3, the object's ETag (None elsewhere)."""
    store = storage()
    try:
        with slot(key):
            if isinstance(store, S3Storage):
                client, target = _s3_target(store, key)
                response = client.get_object(**target)
                return response["Body"].read(), response["ETag"]
            with store.open(key, "rb") as handle:
                return handle.read(), None
    except ColdStorageBusy:
        raise
    except Exception as exc:
        if _is_missing(exc):
            raise ColdObjectMissing(key) from exc
        logger.warning("cold storage read of %s failed: %s", key, exc)
        raise ColdStorageUnavailable(key=key, reason=type(exc).__name__) from exc


def put_conditional(key: str, body: bytes, *, if_match: str | None) -> str:
    """Write `key` only if it is still the object tagged `if_match` (None: only if there is
    no object), and return the new tag; ColdPreconditionFailed otherwise.

    On S3 with COLD_CONDITIONAL_WRITES this is PutObject with If-Match / If-None-Match: *,
    which the store settles atomically. Elsewhere (the filesystem, or an S3-compatible store
    without conditional writes) it is a checked read-before-write: the window between the
    read and the write is not covered."""
    store = storage()
    if isinstance(store, S3Storage) and settings.COLD_CONDITIONAL_WRITES:
        client, target = _s3_target(store, key)
        condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        try:
            with slot(key):
                response = client.put_object(
                    Body=body, **target, **condition, **_write_parameters(store, key)
                )
        except ColdStorageBusy:
            raise
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
                raise ColdPreconditionFailed(key) from exc
            if if_match and _is_missing(exc):  # If-Match on a deleted object
                raise ColdPreconditionFailed(key) from exc
            logger.warning("cold storage write of %s failed: %s", key, exc)
            raise ColdStorageUnavailable(key=key, reason=type(exc).__name__) from exc
        except Exception as exc:
            logger.warning("cold storage write of %s failed: %s", key, exc)
            raise ColdStorageUnavailable(key=key, reason=type(exc).__name__) from exc
        return response["ETag"]
    try:
        _, current = get_tagged(key)
    except ColdObjectMissing:
        current = None
    if not _same_tag(current, if_match):
        raise ColdPreconditionFailed(key)
    put(key, body)
    if not isinstance(store, S3Storage):
        return body_tag(body)
    _, written = get_tagged(key)
    return written


def _same_tag(current: str | None, expected: str | None) -> bool:
    if current is None or expected is None:
        return current is expected
    return current.strip('"') == expected.strip('"')


def delete(key: str) -> None:
    """Delete the object at `key` (no error if it is already gone)."""
    try:
        with slot(key):
            storage().delete(key)
    except ColdStorageBusy:
        raise
    except Exception as exc:
        if _is_missing(exc):
            return
        logger.warning("cold storage delete of %s failed: %s", key, exc)
        raise ColdStorageUnavailable(key=key, reason=type(exc).__name__) from exc


def gzip_json(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, compact), gzipped with a fixed mtime: equal objects
    give equal bytes, so a read-back can be compared byte for byte.

    Level 3, not 6: on message JSON it compresses about 3× faster for 6–9 % more bytes
    (bench/tiers.py's 100-message snapshots: 0.25 against 0.65 ms of gzip, on top of
    ~0.25 ms of json.dumps); decompression costs the same. Any level reads back; only our
    own fresh bytes are ever compared."""
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)


def gunzip_json(body: bytes) -> Any:
    """Inverse of gzip_json; raises ValueError on anything that is not gzip JSON."""
    try:
        return json_parse(gzip.decompress(body))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"not a gzip JSON object: {exc}") from exc


def probe() -> tuple[str, str]:
    """Readiness: can we reach the store? "ok", or "degraded" when it does not answer — hot
    threads are still served; flushes and hydrates answer 503 until it is back. The detail
    names the bucket and the error's class, never the endpoint's host or the error text."""
    store = storage()
    try:
        if isinstance(store, S3Storage):
            where = f"s3://{store.bucket_name}"
            store.bucket.meta.client.head_bucket(Bucket=store.bucket_name)
        else:
            where = "filesystem"
            store.listdir("")
    except FileNotFoundError:
        return "ok", "filesystem (nothing stored yet)"  # created by the first write
    except Exception as exc:
        logger.warning("cold storage probe failed: %s", exc)
        return "degraded", f"{where}: {type(exc).__name__}"
    return "ok", where
