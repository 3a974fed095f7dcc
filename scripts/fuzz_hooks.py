"""schemathesis hooks of `make fuzz` (loaded through SCHEMATHESIS_HOOKS=scripts.fuzz_hooks).

The API refuses strings holding NUL or a lone surrogate with a 400 (PostgreSQL stores no NUL
in text or jsonb; UTF-8 cannot encode a lone surrogate): OpenAPI has no way to say so, so a
generator that follows the schema produces them and reads the refusal as a rejected valid
request. `generation.allow-x00` and `codec` in schemathesis.toml keep most of them out; the
filters drop the rest of the generated ones, and before_call mends what a phase builds
without them (the coverage phase's fixed values): each such character becomes U+FFFD.
"""

from __future__ import annotations

import schemathesis

from common.api.parsers import unstorable_string

REPLACEMENT = "\ufffd"


def _storable(value) -> bool:
    return unstorable_string(value) is None


@schemathesis.hook
def filter_body(context, body):
    return _storable(body)


@schemathesis.hook
def filter_query(context, query):
    return _storable(query)


@schemathesis.hook
def filter_path_parameters(context, path_parameters):
    return _storable(path_parameters)


@schemathesis.hook
def filter_headers(context, headers):
    return _storable(headers)


def _mended(value):
    if isinstance(value, str):
        if unstorable_string(value) is None:
            return value
        return "".join(
            REPLACEMENT if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in value
        )
    if isinstance(value, dict):
        return {_mended(k): _mended(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mended(item) for item in value]
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    for part in ("body", "query", "path_parameters", "headers"):
        value = getattr(case, part, None)
        if value is not None and unstorable_string(value) is not None:
            setattr(case, part, _mended(value))
