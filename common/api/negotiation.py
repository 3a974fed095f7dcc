"""Content negotiation with a fast path for what API clients send.

DRF's DefaultContentNegotiation parses the Accept header and walks every renderer's media
type on each request. The API renders JSON only; when a client accepts anything or JSON
(no Accept header, `*/*`, `application/json`) and no `?format=` is given, the answer is the
first renderer — exactly what the default would choose — without that work. Everything
else (browsers, explicit other types, `?format=`, a 406) goes through the default.
"""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation

_PLAIN_ACCEPT = frozenset({"", "*/*", "application/json"})


class JSONFirstNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if (
            format_suffix is None
            and renderers
            and renderers[0].media_type == "application/json"
            and request.META.get("HTTP_ACCEPT", "").strip() in _PLAIN_ACCEPT
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
