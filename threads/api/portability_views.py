"""Portable threads over REST: `GET /threads/{id}/export`, `POST /threads/import`.

A viewset of its own on the `threads` prefix (as conversation_views.py): tenant-scoped by
TenantScopedViewSet, so another tenant's thread is a 404 here too.

The import reads its body itself (not through DRF's parsers: it may be gzip, and its limit
is IMPORT_MAX_BYTES, not MAX_REQUEST_BYTES): a declared Content-Length over the limit is
refused before a byte is read, and no more than the limit + 1 bytes are ever read.
"""

from __future__ import annotations

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from common.api.schema import errors
from common.api.viewsets import TenantScopedViewSet
from common.errors import PayloadTooLarge
from threads.api.serializers import ThreadSerializer
from threads.models import Thread
from threads.portability import export, imports
from threads.portability.sources import FORMATS


class ImportResultSerializer(serializers.Serializer):
    thread = ThreadSerializer()
    created = serializers.BooleanField(
        help_text="false: this document was imported into this project before (same thread)."
    )
    format = serializers.ChoiceField(choices=FORMATS)


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in choices:
        raise ValidationError({name: [f"Must be one of: {', '.join(choices)}."]})
    return value


def _read_body(request: Request) -> bytes:
    limit = settings.IMPORT_MAX_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The document exceeds {limit} bytes.", limit=limit)
    stream = request.stream
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise PayloadTooLarge(f"The document exceeds {limit} bytes.", limit=limit)
    return body


IMPORT_PARAMS = [
    OpenApiParameter(
        "project",
        {"type": "string", "minLength": 1},
        required=True,
        description="The project to import into.",
    ),
    OpenApiParameter(
        "source",
        {"type": "string", "enum": ["auto", *FORMATS]},
        description="The document's format (default: detected). Not `format`: DRF reserves "
        "it for the response format.",
    ),
    OpenApiParameter(
        "cold_key",
        str,
        description="Import the object at this key of the cold store (under COLD_PREFIX) "
        "instead of a body.",
    ),
    OpenApiParameter(
        "order",
        {"type": "string", "enum": ["asc", "desc"]},
        description="OpenAI items pages: `desc` when the page lists the newest item first "
        "(the API's default order).",
    ),
    OpenApiParameter("title", str, description="The new thread's title (default: the export's)."),
]


class ThreadPortabilityViewSet(TenantScopedViewSet):
    queryset = Thread.objects.all()
    serializer_class = ThreadSerializer
    pagination_class = None
    http_method_names = ["get", "post", "head", "options"]

    @extend_schema(
        summary="Export a thread (gzip JSON document, version 1; streamed)",
        parameters=[
            OpenApiParameter(
                "originals",
                bool,
                description="Include each compaction's archived original messages.",
            )
        ],
        responses={
            (200, "application/gzip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The export document (README, Export format)."
            ),
            **errors(400, 404, 503),
        },
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str) -> StreamingHttpResponse:
        originals = _choice(request, "originals", ("true", "false"), "false") == "true"
        result = export.thread_export(thread=self.get_object(), originals=originals)
        response = StreamingHttpResponse(result.stream, content_type="application/gzip")
        response["Content-Disposition"] = f'attachment; filename="{result.filename}"'
        return response

    @extend_schema(
        summary="Import a thread (Threadline export, zeitlich v1, OpenAI items, LangGraph state)",
        description="The body is the document, plain JSON or gzip (at most IMPORT_MAX_BYTES, "
        "also once unzipped; 413 beyond), or empty with `cold_key`. A bad document is 400 "
        "invalid_document with the JSON path of the first bad element; nothing is written. "
        "The same document into the same project again answers 200 with the same thread.",
        parameters=IMPORT_PARAMS,
        request={
            "application/json": OpenApiTypes.OBJECT,
            "application/gzip": OpenApiTypes.BINARY,
        },
        responses={
            201: ImportResultSerializer,
            200: OpenApiResponse(ImportResultSerializer, description="Imported before."),
            **errors(400, 404, 411, 413, 503),
        },
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_(self, request: Request) -> Response:
        project = request.query_params.get("project")
        if not project:
            raise ValidationError({"project": ["This parameter is required."]})
        fmt = _choice(request, "source", ("auto", *FORMATS), "auto")
        order = _choice(request, "order", ("asc", "desc"), "asc")
        title = request.query_params.get("title")
        if title is not None and len(title) > 500:
            raise ValidationError({"title": ["At most 500 characters."]})
        cold_key = request.query_params.get("cold_key")
        body = _read_body(request)
        if cold_key is not None and body:
            raise ValidationError({"cold_key": ["Send either a body or cold_key, not both."]})
        if cold_key is None and not body:
            raise ValidationError({"body": ["Send the document as the body, or a cold_key."]})
        result = imports.thread_import(
            tenant=self.tenant,
            project_id=project,
            body=body or None,
            cold_key=cold_key,
            fmt=fmt,
            order=order,
            title=title,
        )
        payload = {
            "thread": ThreadSerializer(result.thread).data,
            "created": result.created,
            "format": result.format,
        }
        return Response(payload, status=status.HTTP_201_CREATED if result.created else 200)
