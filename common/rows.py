"""Rows of fixed SQL as the ORM would give them: for paths that skip the ORM's query
building (a database page, a handoff's source) but keep its values."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from django.db import connection, models


@functools.cache
def row_decoder(fields: tuple[models.Field, ...]) -> Callable[[Sequence[Any]], tuple]:
    """A callable turning a raw cursor row of `fields` (in that order) into their Python
    values: each field's database converters as the backend applies them (datetimes,
    decimals…), JSON columns (text from the driver) parsed with orjson. Made once per set
    of fields."""
    columns = [f.get_col(f.model._meta.db_table) for f in fields]
    converters = [
        [_json_loads]
        if isinstance(f, models.JSONField)
        else [*connection.ops.get_db_converters(col), *f.get_db_converters(connection)]
        for f, col in zip(fields, columns, strict=True)
    ]

    def decode(row: Sequence[Any]) -> tuple:
        values = []
        for value, col, steps in zip(row, columns, converters, strict=True):
            for step in steps:
                value = step(value, col, connection)
            values.append(value)
        return tuple(values)

    return decode


def _json_loads(value: Any, expression: Any, connection: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value
