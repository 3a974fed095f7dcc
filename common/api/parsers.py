"""A JSON parser that enforces MAX_REQUEST_BYTES and refuses what PostgreSQL cannot store.

DRF's JSONParser reads the whole stream with no limit (Django's DATA_UPLOAD_MAX_MEMORY_SIZE
only guards `request.body`), accepts NaN and 1e400 (read as infinity; both rejected by
jsonb), NUL characters (rejected by PostgreSQL text and jsonb), lone surrogates (not
encodable as UTF-8) and any nesting depth (RecursionError). Each of those would surface as a
500 deep in a service; here they become a 400 or 413 up front.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class RequestTooLarge(APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class LengthRequired(APIException):
    status_code = 411
    default_detail = "Send the request body with a Content-Length; a chunked body is not read."
    default_code = "length_required"


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def refuse_unframed_body(request) -> None:
    """411 for a body sent chunked (Transfer-Encoding, no Content-Length).

    Under WSGI, Django reads such a body as empty and DRF then answers `{}` without calling a
    parser, so optional fields vanish silently: `POST /threads/{id}/fork/ {"title": …}`
    forked without the title, `…/compact/ {"keep_last": 3}` compacted with the default."""
    meta = request.META
    if (
        request.method in BODY_METHODS
        and meta.get("HTTP_TRANSFER_ENCODING")
        and not meta.get("CONTENT_LENGTH")
    ):
        raise LengthRequired()


# Deeper documents are refused: json.loads, json.dumps and psycopg all recurse, and a
# RecursionError deep in a service would be a 500. No real message or state nests this deep.
MAX_DEPTH = 100


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    """1e400 parses as inf, which jsonb cannot store: refuse it like NaN and Infinity."""
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"{literal} is out of range")
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether objects and arrays nest more than `limit` levels (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def unstorable_string(value: Any) -> str | None:
    """The first string (key or value) PostgreSQL could not store, else None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return item
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context.get("request")
        limit = settings.MAX_REQUEST_BYTES
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"The request body exceeds {limit} bytes.")
        if stream is None:
            raise ParseError("The request body is empty.")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body exceeds {limit} bytes.")
        try:
            # LookupError: a charset such as "base64" names a codec that is not a text encoding.
            text = raw.decode(parser_context.get("encoding", "utf-8"))
            data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, LookupError) as exc:  # UnicodeDecodeError is a ValueError
            raise ParseError(f"Malformed JSON: {exc}") from None
        except RecursionError:
            raise ParseError(f"Malformed JSON: nested deeper than {MAX_DEPTH} levels.") from None
        if text.count("[") + text.count("{") > MAX_DEPTH and too_deep(data):
            raise ParseError(f"Malformed JSON: nested deeper than {MAX_DEPTH} levels.")
        # Only an escape sequence can smuggle NUL or a lone surrogate into valid UTF-8 JSON.
        if "\\u" in text and unstorable_string(data) is not None:
            raise ParseError("Strings must not contain NUL characters or lone surrogates.")
        return data
