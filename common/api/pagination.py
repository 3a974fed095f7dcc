"""Cursor pagination with DESIGN.md's shape: {"results": [...], "next": "<cursor or null>"}.

`limit` sets the page size (1..MAX_PAGE_SIZE, else 400); `cursor` takes the `next` value.
"""

from __future__ import annotations

from base64 import b64decode
from urllib.parse import parse_qs, urlparse

from django.conf import settings
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response


def parse_limit(raw: str | None, *, default: int) -> int:
    if raw is None or raw == "":
        return default
    maximum = settings.MAX_PAGE_SIZE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ValidationError({"limit": [f"Must be an integer from 1 to {maximum}."]})
    return int(raw)


def limit_schema() -> dict:
    """The OpenAPI schema of `limit`: what parse_limit accepts."""
    return {"type": "integer", "minimum": 1, "maximum": settings.MAX_PAGE_SIZE}


class CursorPagination(pagination.CursorPagination):
    page_size = 100
    page_size_query_param = "limit"
    cursor_query_param = "cursor"
    ordering = ("created_at", "pk")

    def get_page_size(self, request):
        return parse_limit(
            request.query_params.get(self.page_size_query_param), default=self.page_size
        )

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model  # decode_cursor checks the position against its field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """DRF's cursor, refused (400) unless it is one this class could have encoded.

        DRF skips characters that are not base64 and passes the position to the queryset
        unchecked, so a forged cursor would be a silent first page or a 500 from the
        database; here the position must be a valid value of the ordering field."""
        encoded = request.query_params.get(self.cursor_query_param)
        try:
            if encoded is not None:
                b64decode(encoded.encode("ascii"), validate=True)
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                name = self.ordering[0].lstrip("-")
                meta = self._model._meta
                field = meta.pk if name == "pk" else meta.get_field(name)
                field.clean(cursor.position, None)
        except Exception as exc:  # DRF raises NotFound for a bad cursor: it is bad input.
            raise ValidationError({"cursor": ["Invalid cursor."]}) from exc
        return cursor

    def next_cursor(self) -> str | None:
        link = self.get_next_link()
        if not link:
            return None
        return parse_qs(urlparse(link).query)[self.cursor_query_param][0]

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.next_cursor()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "nullable": True, "description": "Pass as ?cursor="},
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The `next` value of the previous page.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Page size, 1 to {settings.MAX_PAGE_SIZE} (default 100).",
                "schema": limit_schema(),
            },
        ]
