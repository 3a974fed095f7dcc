"""OpenAPI helpers: the error body, per-endpoint error responses and shared headers.

Every operation lists its error responses with `errors(...)`; 401 (no or a bad key) and
429 (throttled) are added to all of them, and `body=True` adds what any request body can
earn before a view runs: 400 (malformed JSON), 411 (chunked, no Content-Length), 413 (too
large) and 415 (not JSON).
"""

from __future__ import annotations

from collections.abc import Iterable

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers


class StrictSerializerExtension(OpenApiSerializerExtension):
    """StrictSerializer answers an unknown key with 400: say so (additionalProperties: false),
    so a client or a fuzzer reading the schema does not take extra keys for valid input."""

    target_class = "common.api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema = {**schema, "additionalProperties": False}
        properties = schema.get("properties", {})
        for name, field in self.target.fields.items():
            if name in properties and "$ref" not in properties[name]:
                properties[name] = {**properties[name], **_array_bounds(field)}
        # What the serializer refuses that its fields cannot say: `{}` for an edit ("Nothing
        # to change."), per-field extras (schema_extra) and whole-body variants (schema_one_of).
        if getattr(self.target, "schema_min_properties", None):
            schema["minProperties"] = self.target.schema_min_properties
        for name, extra in getattr(self.target, "schema_extra", {}).items():
            properties[name] = {**properties[name], **extra}
        variants = getattr(self.target, "schema_one_of", None)
        if variants:
            # Whole objects, one per variant: generators and validators need no merging.
            return {"oneOf": [_merged(schema, variant) for variant in variants]}
        return schema


def _merged(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        # A $ref takes no siblings (OpenAPI 3.0): the variant's schema replaces it.
        if isinstance(value, dict) and isinstance(base.get(key), dict) and "$ref" not in base[key]:
            merged[key] = _merged(base[key], value)
        else:
            merged[key] = value
    return merged


def _array_bounds(field) -> dict:
    """minItems/maxItems of a list (many=True serializer or ListField) as DRF enforces them."""
    if not isinstance(field, serializers.ListSerializer | serializers.ListField):
        return {}
    bounds = {}
    if field.min_length is not None:
        bounds["minItems"] = field.min_length
    elif not field.allow_empty:
        bounds["minItems"] = 1
    if field.max_length is not None:
        bounds["maxItems"] = field.max_length
    return bounds


class SparseFieldsExtension(OpenApiSerializerExtension):
    """A serializer named `…SparseSerializer` answers `?fields=` subsets: its schema is the
    full one with no field required (a generated client must not expect an omitted key)."""

    target_class = "common.api.serializers.DynamicFieldsMixin"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if type(self.target).__name__.endswith("SparseSerializer"):
            schema = {key: value for key, value in schema.items() if key != "required"}
        return schema


ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(
                    help_text="Stable snake_case code, e.g. thread_archived."
                ),
                "message": serializers.CharField(help_text="Human-readable explanation."),
                "details": serializers.DictField(
                    help_text="Structured details; which keys depends on the code."
                ),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "Validation failed (validation_error, malformed_json).",
    401: "Missing, invalid or revoked API key (unauthenticated).",
    404: "Not found, or another tenant's object (not_found).",
    409: "State conflict.",
    411: "The body was sent chunked, without Content-Length (length_required).",
    412: "If-Match failed (stale_version; details: expected, actual).",
    413: "Payload too large (payload_too_large).",
    415: "The body is not JSON (unsupported_media_type).",
    422: "The LLM provider rejected the request (provider_rejected; details: reason, status).",
    429: "Too many requests (throttled; details: retry_after).",
    503: "A dependency failed after compensation.",
}


def errors(
    *statuses: int, body: bool = False, conflicts: Iterable[str] = (), hydrates: bool = False
) -> dict[int, OpenApiResponse]:
    """Error responses for extend_schema(responses=...), all with the Error body.

    `conflicts` names the 409 codes the endpoint answers (and implies 409). `hydrates`: the
    endpoint restores a cold thread first, so it can also answer 503 (cold storage down or a
    corrupt snapshot) and 409 thread_busy (flushed again while being restored)."""
    conflicts = tuple(conflicts) + (("thread_busy",) if hydrates else ())
    wanted = {401, 429, *statuses}
    if hydrates:
        wanted.add(503)
    if body:
        wanted |= {400, 411, 413, 415}
    if conflicts:
        wanted.add(409)
    responses = {}
    for status in sorted(wanted):
        description = _DESCRIPTIONS[status]
        if status == 409 and conflicts:
            description = f"State conflict ({', '.join(conflicts)})."
        responses[status] = OpenApiResponse(ErrorSerializer, description=description)
    return responses


# Optimistic concurrency: GET answers the version as an ETag, PATCH checks If-Match.
ETAG_HEADER = OpenApiParameter(
    "ETag",
    str,
    OpenApiParameter.HEADER,
    response=[200, 201],
    description='The version of the returned resource, quoted (`"3"`). Send it back in '
    "If-Match to make an edit conditional.",
)
# `*` or a list of entity-tags, weak ones included (they are well formed and never match).
IF_MATCH_PATTERN = r'^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)[ \t]*$'
IF_MATCH_HEADER = OpenApiParameter(
    "If-Match",
    {"type": "string", "pattern": IF_MATCH_PATTERN},
    OpenApiParameter.HEADER,
    description='ETags from previous reads (`"3"`, or a list: `"1", "3"`); the edit applies '
    "only if the current version's ETag is one of them, else 412 stale_version. Comparison "
    'is strong: a weak tag (`W/"3"`) never matches. `*` or absent: unconditional. Anything '
    "else is a 400.",
)


def comma_list_pattern(values: Iterable[str]) -> str:
    """`a,b` of `values` (empty: no filter), as CommaChoiceFilter and `?fields=` parse it."""
    one = "|".join(sorted(values))
    return f"^(({one})(,({one}))*)?$"


def comma_list_parameter(name: str, values: Iterable[str], description: str) -> OpenApiParameter:
    values = sorted(values)
    return OpenApiParameter(
        name,
        {"type": "string", "pattern": comma_list_pattern(values)},
        description=f"{description} Values: {', '.join(values)}.",
    )


def _needs_body(component: dict) -> bool:
    """A body the server refuses when absent: `{}` is refused (minProperties), a field is
    required, or each of its variants requires one."""
    variants = component.get("oneOf")
    if variants:
        return all(_needs_body(variant) for variant in variants)
    return bool(component.get("minProperties") or component.get("required"))


def json_parameters(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: a parameter marked `x-json` is a JSON document in the query string,
    which OpenAPI says with `content: {application/json: {schema}}` (a `schema` would mean
    form-style `k,v,k,v`), so generated clients and fuzzers send JSON. And a body the server
    refuses when absent (_needs_body) is a required body in the schema."""
    components = result.get("components", {}).get("schemas", {})
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            ref = (body or {}).get("schema", {}).get("$ref", "")
            if _needs_body(components.get(ref.rsplit("/", 1)[-1], {})):
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter.pop("x-json", False):
                    schema = parameter.pop("schema")
                    parameter.pop("style", None)
                    parameter.pop("explode", None)
                    parameter["content"] = {"application/json": {"schema": schema}}
    return result
