"""Cursor pagination with DESIGN.md's shape: {"results": [...], "next": "<cursor or null>"}.

`limit` sets the page size (1..MAX_PAGE_SIZE, else 400); `cursor` takes the `next` value.

A cursor is `<position>[_<offset>]`: the ordering field's value of the last row returned
(microseconds since the epoch for a datetime, the integer itself for an id) and how many rows
of that same value were already returned. Every string of that shape (CURSOR_PATTERN, which
the schema publishes) is a valid position, so a generated client's cursor is never refused;
anything else is a 400.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

from django.conf import settings
from django.db import models
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

CURSOR_PATTERN = r"^[0-9]{0,16}(_[0-9]{1,6})?$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_limit(raw: str | None, *, default: int) -> int:
    if raw is None:
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

    def _position_is_datetime(self) -> bool:
        name = self.ordering[0].lstrip("-")
        meta = self._model._meta
        field = meta.pk if name == "pk" else meta.get_field(name)
        return isinstance(field, models.DateTimeField)

    def decode_cursor(self, request):
        """`<position>[_<offset>]` → DRF's Cursor, whose position is the string DRF itself
        makes of the ordering field (str() of the value), so its comparisons hold."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        match = _CURSOR.fullmatch(encoded)
        if match is None:
            raise ValidationError({"cursor": ["Invalid cursor."]})
        raw_position, _, raw_offset = encoded.partition("_")
        offset = min(int(raw_offset or 0), self.offset_cutoff)
        position = None
        if raw_position:
            value = int(raw_position)
            if self._position_is_datetime():
                position = str(_EPOCH + timedelta(microseconds=value))
            else:
                position = str(value)
        return pagination.Cursor(offset=offset, reverse=False, position=position)

    def encode_cursor(self, cursor):
        token = ""
        if cursor.position is not None:
            if self._position_is_datetime():
                moment = datetime.fromisoformat(cursor.position).astimezone(UTC)
                token = str((moment - _EPOCH) // timedelta(microseconds=1))
            else:
                token = str(int(cursor.position))
        if cursor.offset:
            token += f"_{cursor.offset}"
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def next_cursor(self) -> str | None:
        link = self.get_next_link()
        if not link:
            return None
        return parse_qs(urlparse(link).query, keep_blank_values=True)[self.cursor_query_param][0]

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
                "schema": {"type": "string", "pattern": CURSOR_PATTERN},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Page size, 1 to {settings.MAX_PAGE_SIZE} (default 100).",
                "schema": limit_schema(),
            },
        ]
