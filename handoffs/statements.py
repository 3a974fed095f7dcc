"""A handoff phase's writes as one statement: a claim and what it writes, on one cursor.

Each of a handoff's two transactions is a conditional UPDATE (the claim) and the rows it
writes with it. Through the ORM they were five to seven queries, each compiled anew, with a
model instance per row: most of a handoff's CPU, for statements whose shape never changes.
On PostgreSQL `claim_with` sends them as one statement, the writes as data-modifying CTEs
beside the claim (one round trip; PostgreSQL runs every CTE once and to completion, all on
one snapshot). The values are adapted by the models' own fields, so the rows are those the
ORM writes (tests/handoffs/test_statements.py runs both). Elsewhere the ORM runs the pieces.

Every write depends on the claim: an INSERT selects its row FROM the claim's RETURNING and
an UPDATE adds `AND EXISTS (SELECT 1 FROM claim)`, so a claim that matches no row writes
nothing. The statement is then whole on its own: it needs no transaction around it (a
handoff's commit phase, when it has no workspace to attach, is that one statement in
autocommit: no BEGIN and no COMMIT round trip), and a caller inside one still raises when
the claim did not match.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

_OPERATORS = {"exact": "=", "gt": ">"}


@dataclass(frozen=True)
class Update:
    """UPDATE `model` SET `values` WHERE `where` (field names; `name__gt` for >)."""

    model: type[Model]
    values: dict[str, Any]
    where: dict[str, Any]

    def sql(
        self, db: BaseDatabaseWrapper, *, after: str | None = None
    ) -> tuple[str, list[tuple[Field, Any]]]:
        """The statement and its parameters on `db`, each with the field it is for; with
        `after` (a CTE's name), only if that CTE returned a row."""
        meta, qn = self.model._meta, db.ops.quote_name
        sets, params = [], []
        for name, value in self.values.items():
            f = meta.get_field(name)
            if f.remote_field and hasattr(value, "prepare_database_save"):
                value = value.prepare_database_save(f)  # an instance: its key (as the ORM)
            sets.append(f"{qn(f.column)} = %s")
            params.append((f, f.get_db_prep_save(value, db)))
        conditions = []
        for key, value in self.where.items():
            name, _, lookup = key.partition("__")
            f = meta.pk if name == "pk" else meta.get_field(name)
            conditions.append(f"{qn(f.column)} {_OPERATORS[lookup or 'exact']} %s")
            params.append((f, f.get_db_prep_value(value, db)))
        if after is not None:
            conditions.append(f"EXISTS (SELECT 1 FROM {after})")
        sql = f"UPDATE {qn(meta.db_table)} SET {', '.join(sets)} WHERE {' AND '.join(conditions)}"
        return sql, params

    def run(self) -> int:
        return self.model._default_manager.filter(**self.where).update(**self.values)


@dataclass(frozen=True)
class Insert:
    """INSERT of `objs` (unsaved instances of one model), every column as save() writes it."""

    objs: list[Model] = field(default_factory=list)

    def sql(self, db: BaseDatabaseWrapper) -> tuple[str, list[tuple[Field, Any]]]:
        """The statement and its parameters on `db`, each with the field it is for."""
        fields, head, row = _insert_parts(type(self.objs[0]), db.vendor)
        return f"{head} VALUES " + ", ".join([row] * len(self.objs)), self._params(fields, db)

    def sql_each_after(
        self, db: BaseDatabaseWrapper, after: str
    ) -> list[tuple[str, list[tuple[Field, Any]]]]:
        """One INSERT … SELECT per object, each only if the CTE `after` returned a row (one
        row per statement: a select list of parameters takes its types from the target
        columns, as VALUES does, where a UNION of them would not)."""
        fields, head, row = _insert_parts(type(self.objs[0]), db.vendor)
        return [
            (f"{head} SELECT {row[1:-1]} FROM {after}", Insert([obj])._params(fields, db))
            for obj in self.objs
        ]

    def _params(self, fields: tuple[Field, ...], db: BaseDatabaseWrapper) -> list:
        return [
            (f, f.get_db_prep_save(f.pre_save(obj, True), db)) for obj in self.objs for f in fields
        ]

    def run(self) -> None:
        model = type(self.objs[0])
        model._default_manager.bulk_create(self.objs)

    def saved(self) -> None:
        for obj in self.objs:  # as bulk_create leaves them: saved, in this database
            obj._state.adding, obj._state.db = False, connection.alias


@functools.cache
def _insert_parts(model: type[Model], vendor: str) -> tuple[tuple[Field, ...], str, str]:
    meta, qn = model._meta, connection.ops.quote_name
    # What Model.save(force_insert=True) and bulk_create insert: the concrete columns,
    # without the auto-incremented pk (the database assigns it).
    fields = tuple(f for f in meta.local_concrete_fields if f is not meta.auto_field)
    columns = ", ".join(qn(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return fields, f"INSERT INTO {qn(meta.db_table)} ({columns})", row


def claim_with(claim: Update, *writes: Update | Insert, one_statement: bool | None = None) -> bool:
    """Run `claim`, then `writes`; True if the claim matched a row (`claim` must match at
    most one: its pk is in its WHERE). Raise when it returns False. As one statement the
    writes happen only with the claim, so it may run in autocommit; through the ORM (other
    databases, or `one_statement` False for the tests) call it inside transaction.atomic().
    `one_statement` None: on PostgreSQL."""
    writes = tuple(w for w in writes if not isinstance(w, Insert) or w.objs)
    if one_statement is None:
        one_statement = connection.vendor == "postgresql"
    if not one_statement:
        if not claim.run():
            return False
        for write in writes:
            write.run()
        return True
    db = transaction.get_connection()  # the connection itself, not its per-context proxy
    sql, params = claim.sql(db)
    ctes = [f"claim AS ({sql} RETURNING 1)"]
    parts = []
    for write in writes:
        if isinstance(write, Insert):
            parts += write.sql_each_after(db, "claim")
        else:
            parts.append(write.sql(db, after="claim"))
    for n, (sql, more) in enumerate(parts):
        ctes.append(f"w{n} AS ({sql})")
        params += more
    sql, named = _shared(f"WITH {', '.join(ctes)} SELECT count(*) FROM claim", params)
    with db.cursor() as cursor:
        cursor.execute(sql, named)
        claimed = cursor.fetchone()[0] == 1
    for write in writes:
        if isinstance(write, Insert):
            write.saved()
    return claimed


def _shared(sql: str, params: list[tuple[Field, Any]]) -> tuple[str, dict[str, Any]]:
    """`sql` with one named placeholder per distinct parameter of a column type. psycopg
    keeps a query's parsing only up to 50 parameters; a commit's statement has some 60,
    half of them repeats (the tenant, the time, empty strings). Keyed by the column's type
    too: PostgreSQL gives an untyped parameter (a string, a NULL) one type, from its first
    use; and by the value's type: 0 == False, but they bind differently."""
    names: dict[Any, str] = {}
    named: dict[str, Any] = {}
    parts = sql.split("%s")
    out = [parts[0]]
    for part, (f, value) in zip(parts[1:], params, strict=True):
        try:
            key: Any = (_db_type(f), type(value), value)
            hash(key)
        except TypeError:  # an unhashable value (a JSON list or dict) stands alone
            key = object()
        name = names.setdefault(key, f"p{len(names)}")
        named[name] = value
        out += [f"%({name})s", part]
    return "".join(out), named


@functools.cache
def _db_type(f: Field) -> str | None:
    return f.db_type(connection)
