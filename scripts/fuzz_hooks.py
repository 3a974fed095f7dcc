"""schemathesis hooks of `make fuzz` (loaded through SCHEMATHESIS_HOOKS=scripts.fuzz_hooks).

The API refuses strings holding NUL or a lone surrogate with a 400 (PostgreSQL stores no NUL
in text or jsonb; UTF-8 cannot encode a lone surrogate): OpenAPI has no way to say so, so a
generator that follows the schema produces them and reads the refusal as a rejected valid
request. `generation.allow-x00` and `codec` in schemathesis.toml keep most of them out; these
filters drop the rest, in every part of a request.
"""

from __future__ import annotations

import schemathesis

from common.api.parsers import unstorable_string


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
