"""OpenAPI helpers: the error body and per-endpoint error responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "Validation failed (codes: validation_error, malformed_json, …).",
    401: "Missing or invalid API key (unauthenticated).",
    404: "Not found, or another tenant's object (not_found).",
    409: "State conflict (e.g. thread_archived, thread_not_empty).",
    412: "If-Match did not match the current version (stale_version).",
    413: "Payload too large (payload_too_large).",
    429: "Throttled.",
    503: "A dependency failed after compensation.",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for extend_schema(responses=...); 401 and 429 are always possible."""
    wanted = sorted({401, 429, *statuses})
    return {s: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[s]) for s in wanted}
