"""One place that turns every error into DESIGN.md's body:

    {"error": {"code": "<snake_case>", "message": "<human text>", "details": {...}}}

Services raise common.errors.DomainError subclasses; DRF raises its own exceptions; both end
here. Django-level 404/500 pages under /api/ answer with the same body.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import DatabaseUnavailable, DomainError

logger = logging.getLogger(__name__)

_DRF_CODES: list[tuple[type[Exception], str]] = [
    (drf.ParseError, "malformed_json"),
    (drf.ValidationError, "validation_error"),
    (drf.NotAuthenticated, "unauthenticated"),
    (drf.AuthenticationFailed, "unauthenticated"),
    (drf.PermissionDenied, "permission_denied"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
    (drf.UnsupportedMediaType, "unsupported_media_type"),
    (drf.Throttled, "throttled"),
]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away (restart, failover, network): a 503 the client retries,
        # never the connection error's text (it names hosts and ports). Django closes the
        # broken connection after this request, so the next one reconnects.
        logger.warning("database unavailable: %s", exc)
        exc = DatabaseUnavailable()
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)

    # DRF's handler turns Django's Http404 (raised by get_object) into its NotFound only
    # locally; convert first so the code below maps it (and its message names no model).
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500

    default = getattr(exc, "default_code", None) or "error"  # e.g. parsers' payload_too_large
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), default)
    if code == "validation_error":
        message, details = "The request is invalid.", {"fields": response.data}
        if isinstance(response.data, dict) and set(response.data) == {"non_field_errors"}:
            message = str(response.data["non_field_errors"][0])
    elif code == "not_found":
        message, details = "Not found.", {}
    elif code == "throttled":
        message, details = "Too many requests.", {"retry_after": getattr(exc, "wait", None)}
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        message, details = str(detail or exc), {}
    response.data = error_body(code, message, details)
    return response


def api_not_found(request, exception=None):
    """handler404: the error body under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return page_not_found(request, exception)


def api_server_error(request):
    """handler500: never a technical page. An error the database raised (it is down or went
    away mid-request, anywhere: middleware, authentication, the admin) is the documented 503
    `database_unavailable` with the error body; anything else is 500 `internal_error` as
    JSON under /api/ and Django's plain page elsewhere."""
    exc = sys.exc_info()[1]
    if isinstance(exc, OperationalError | InterfaceError):
        error = DatabaseUnavailable()
        return JsonResponse(error_body(error.code, error.message), status=error.status)
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("internal_error", "Internal server error."), status=500)
    return server_error(request)
