"""Query parameters of GET /threads/ as the schema publishes them (and the views parse them)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter

from common.api.schema import comma_list_parameter, comma_list_pattern
from threads.api.serializers import ThreadSerializer
from threads.models import Lifecycle

FIELDS_PARAM = OpenApiParameter(
    "fields",
    {"type": "string", "pattern": comma_list_pattern(ThreadSerializer.Meta.fields)},
    description="Comma-separated fields to return, e.g. `id,title,status` (no spaces). With "
    "it, each item holds only those fields: the items' schema (ThreadSparse) requires none.",
)
LIFECYCLE_PARAM = comma_list_parameter(
    "lifecycle", Lifecycle.values, "One lifecycle or a comma list, e.g. `active,idle`."
)
Q_PARAM = OpenApiParameter(
    "q", {"type": "string", "maxLength": 500}, description="Title prefix (case-sensitive)."
)
METADATA_PARAM = OpenApiParameter(
    "metadata",
    {"type": "object", "additionalProperties": {}},
    extensions={"x-json": True},  # published as content: application/json (json_parameters)
    description='Threads whose metadata contains this JSON object (`?metadata={"customer": '
    '"acme"}`: containment, like PostgreSQL\'s `@>`; nested objects match a subset, arrays '
    "an equal-or-larger array). Must be a JSON object; invalid JSON is a 400.",
)
# Not an OpenApiParameter: OpenAPI has no parameter whose name is a pattern, and one named
# literally `metadata.<key>` is a parameter every client (and fuzzer) would send as is → 400.
METADATA_FILTER_DOC = (
    "Filter on metadata with `metadata.<key>=<value>` (any number of them): the key equals "
    "the value as a string or as a JSON scalar, e.g. `?metadata.customer=acme&metadata.tier=2`. "
    "Keys are 1–64 letters, digits, `_`, `-` or `.`. A generated client can use `metadata` "
    "instead: a JSON object the thread's metadata must contain."
)
