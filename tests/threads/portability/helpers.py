"""Calls of the export and import API, and what tests compare."""

from __future__ import annotations

import gzip
import json

from tests.conftest import Caller


def import_url(project, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"project": project.id, **params}.items())
    return f"/api/v1/threads/import?{query}"


def post_document(caller: Caller, project, document, *, gzipped=False, **params):
    body = json.dumps(document).encode()
    if gzipped:
        body = gzip.compress(body)
    content_type = "application/gzip" if gzipped else "application/json"
    return caller.client.post(import_url(project, **params), data=body, content_type=content_type)


def messages_of(caller: Caller, thread_id: str, **params) -> list[dict]:
    response = caller.get(f"/api/v1/threads/{thread_id}/messages", {"limit": 1000, **params})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def shape(messages: list[dict]) -> list[tuple]:
    return [(m["id"], m["seq"], m["role"], m["content"], m["metadata"]) for m in messages]


def export_document(caller: Caller, thread_id: str, **params) -> tuple[bytes, dict]:
    response = caller.get(f"/api/v1/threads/{thread_id}/export", params)
    assert response.status_code == 200, getattr(response, "content", b"")
    assert response["Content-Type"] == "application/gzip"
    body = b"".join(response.streaming_content)
    return body, json.loads(gzip.decompress(body))
