"""Set-wise writes the ORM has no single statement for.

`rows_update` writes a different value into each of many rows in one statement,
`UPDATE table AS t SET ... FROM <the rows> AS v WHERE t.<key> = v.<key>`: the rows are one
JSON document read as a typed record set (`jsonb_to_recordset`) on PostgreSQL, a VALUES list
on SQLite (3.33 and later).
Django's `bulk_update` builds a `CASE WHEN` per row and field instead: its SQL grows with
rows x fields and takes longer to compile than to run, and it can neither add a condition (a
lease fence) nor say which rows it changed. `rows_insert` is the same for inserts that skip
conflicts, without a model instance per row. `AnyOf` (`<field>__any=`) is `__in` with the
list as one parameter.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal

from django.core.exceptions import EmptyResultSet
from django.db import connection, models
from django.db.models.lookups import In
from django.utils import timezone
from django.utils.datastructures import OrderedSet

# Fields whose Python values psycopg sends as they are (an aware datetime included): the
# per-value preparation of Django's fields is skipped for them, a third of a batch's writing.
NATIVE = frozenset({
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "DateField",
    "DateTimeField", "ForeignKey", "IntegerField", "PositiveIntegerField",
    "PositiveSmallIntegerField", "SmallIntegerField", "TextField",
})  # fmt: skip
# SQLite's default limit of host parameters in one statement is 32,766 (since 3.32).
MAX_PARAMS = 30_000


# Fields whose values an array parameter carries as they are (`AnyOf`).
ARRAY_NATIVE = frozenset({
    "AutoField", "BigAutoField", "BigIntegerField", "CharField", "ForeignKey", "IntegerField",
    "TextField",
})  # fmt: skip


@models.Field.register_lookup
class AnyOf(In):
    """`<field>__any=values`: the rows of `<field>__in=values`, the list sent as one array
    parameter on PostgreSQL (`<column> = ANY(%s)`). A batch's hundreds of ids are then one
    value, where `IN (%s, %s, ...)` has Django prepare each one and the client split a query
    of as many placeholders, each time: about half a millisecond a query of 200 ids. As with
    `__in`, NULLs are dropped and an empty list matches nothing without a query. SQLite,
    other fields and subqueries get `__in`'s SQL."""

    lookup_name = "any"

    def as_postgresql(self, compiler, connection):
        field = getattr(self.lhs, "output_field", None)
        if not self.rhs_is_direct_value() or field is None:
            return self.as_sql(compiler, connection)
        if field.get_internal_type() not in ARRAY_NATIVE:
            return self.as_sql(compiler, connection)
        try:
            values = [value for value in OrderedSet(self.rhs) if value is not None]
        except TypeError:  # unhashable values
            return self.as_sql(compiler, connection)
        if any(hasattr(value, "resolve_expression") for value in values):
            return self.as_sql(compiler, connection)
        if not values:
            raise EmptyResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", (*lhs_params, values)


def rows_update(
    model: type[models.Model],
    rows: Iterable[Sequence],
    *,
    fields: Sequence[str],
    keys: Sequence[str] = ("pk",),
    assign: dict[str, str] | None = None,
    where: str = "",
    params: Sequence = (),
    returning: bool = False,
) -> list[int] | int:
    """Update many rows of `model`, each with its own values, in as few statements as fit.

    Each row is a tuple of the `keys` values, then the `fields` values (Python values, made
    ready for the database by the model's fields). Each field is set from its value, unless
    `assign` gives its SQL (over `t`, the row, and `v`, its values, named as in `keys` and
    `fields`; for instance `{"count": "t.count - v.count"}`); `assign` may also name columns
    that take no value.
    `where` adds a condition over `t` (with `params`). Returns how many rows changed, or with
    `returning=True` the primary keys of the rows that changed."""
    rows = list(rows)
    if not rows:
        return [] if returning else 0
    meta = model._meta
    key_fields = [meta.pk if k == "pk" else meta.get_field(k) for k in keys]
    value_fields = [meta.get_field(f) for f in fields]
    columns = [*key_fields, *value_fields]
    quote = connection.ops.quote_name
    names = [quote(name) for name in (*keys, *fields)]
    postgres = connection.vendor == "postgresql"
    assign = dict(assign or {})
    sets = [
        f"{quote(field.column)} = {assign.pop(given, 'v.' + name)}"
        for given, field, name in zip(fields, value_fields, names[len(keys) :], strict=True)
    ]
    sets += [f"{quote(meta.get_field(name).column)} = {sql}" for name, sql in assign.items()]
    match = " AND ".join(
        f"t.{quote(field.column)} = v.{name}"
        for field, name in zip(key_fields, names[: len(key_fields)], strict=True)
    )
    condition = f" AND ({where})" if where else ""
    table = quote(meta.db_table)
    # SQLite's RETURNING names the updated table's columns bare (never through the alias).
    # Python's sqlite3 reports no row count for a statement that starts with WITH: there the
    # changed rows are always returned, and counted.
    fetch = returning or not postgres
    tail = f" RETURNING {'t.' if postgres else ''}{quote(meta.pk.column)}" if fetch else ""
    if postgres:
        source, data = _pg_recordset(columns, [(*keys, *fields)], rows)
        statements = [("", source, [data])]
    else:
        per_statement = max(1, (MAX_PARAMS - len(params)) // len(columns))
        statements = []
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = [
                field.get_db_prep_save(value, connection)
                for row in chunk
                for field, value in zip(columns, row, strict=True)
            ]
            row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
            # SQLite names a VALUES list's columns only in a common table expression.
            cte = f"WITH v({', '.join(names)}) AS (VALUES {', '.join([row_sql] * len(chunk))}) "
            statements.append((cte, "v", values))
    changed: list[int] = []
    count = 0
    with connection.cursor() as cursor:
        for cte, source, values in statements:
            # Identifiers come from the model's meta, `where` and `assign` from our own code;
            # every value is a parameter.
            sql = f"{cte}UPDATE {table} AS t SET {', '.join(sets)} FROM {source} WHERE {match}"  # noqa: S608
            cursor.execute(sql + condition + tail, [*values, *params])
            if fetch:
                changed += [row[0] for row in cursor.fetchall()]
            else:
                count += cursor.rowcount
    return changed if returning else (len(changed) if fetch else count)


def rows_insert(
    model: type[models.Model],
    rows: Iterable[Sequence],
    *,
    fields: Sequence[str],
    returning: Sequence[str] = (),
) -> int | list[tuple]:
    """Insert many rows of `model` (tuples of the `fields` values), skipping any that would
    break a unique constraint (`ON CONFLICT DO NOTHING`); returns how many were inserted, or
    with `returning` (column names) those columns of each row inserted, in no set order.
    Every other column takes its field's default (`auto_now` ones: now), as `save()` would
    give it, without building a model instance per row."""
    rows = list(rows)
    if not rows:
        return [] if returning else 0
    meta = model._meta
    given = [meta.get_field(f) for f in fields]
    names = {f.name for f in given} | {f.attname for f in given}
    now = timezone.now()
    rest = [f for f in meta.concrete_fields if f.name not in names and f is not meta.auto_field]
    defaults = [now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
                else f.get_default() for f in rest]  # fmt: skip
    columns = [*given, *rest]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names_sql = ", ".join(quote(f.column) for f in columns)
    tail = " ON CONFLICT DO NOTHING"
    if returning:
        tail += " RETURNING " + ", ".join(quote(meta.get_field(n).column) for n in returning)
    count, returned = 0, []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            labels = [f.column for f in columns]
            source, data = _pg_recordset(columns, [labels], [(*row, *defaults) for row in rows])
            cursor.execute(
                f"INSERT INTO {table} ({names_sql}) SELECT {names_sql} FROM {source}"  # noqa: S608
                + tail,
                [data],
            )
            return [tuple(r) for r in cursor.fetchall()] if returning else cursor.rowcount
        per_statement = max(1, MAX_PARAMS // len(columns))
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        prepared_defaults = [
            f.get_db_prep_save(v, connection) for f, v in zip(rest, defaults, strict=True)
        ]
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = []
            for row in chunk:
                values += [
                    f.get_db_prep_save(v, connection) for f, v in zip(given, row, strict=True)
                ]
                values += prepared_defaults
            cursor.execute(
                f"INSERT INTO {table} ({names_sql}) VALUES "  # noqa: S608
                f"{', '.join([row_sql] * len(chunk))}" + tail,
                values,
            )
            if returning:
                returned += [tuple(r) for r in cursor.fetchall()]
            else:
                count += cursor.rowcount
    return returned if returning else count


def _pg_recordset(
    columns: list[models.Field], labels: list[Sequence[str]], rows: list[Sequence]
) -> tuple[str, str]:
    """The rows as one JSON parameter and the typed record set that reads it:
    `jsonb_to_recordset(%s::jsonb) AS v(<label> <type>, ...)`. One text parameter, quoted
    once, where an array per column would have every value quoted on its own by the client
    (three times the CPU for a batch, as measured by bench/feedback.py's batches). Each
    column is typed from its field, without a length: a value too long for its column is an
    error, not silently cut."""
    import json

    (names,) = labels
    converters = [(i, c) for i, c in enumerate(_json_value(f) for f in columns) if c is not None]
    documents = []
    for row in rows:
        document = dict(zip(names, row, strict=True))
        for i, convert in converters:
            document[names[i]] = convert(row[i])
        documents.append(document)
    data = json.dumps(documents, separators=(",", ":"))
    quote = connection.ops.quote_name
    spec = ", ".join(f"{quote(n)} {_pg_type(f)}" for n, f in zip(names, columns, strict=True))
    return f"jsonb_to_recordset(%s::jsonb) AS v({spec})", data


def _json_value(field: models.Field):
    """How a Python value of `field` goes into the JSON of `_pg_recordset`: None when it goes
    as it is (text, numbers, booleans, ids, a JSON field's document)."""
    kind = field.get_internal_type()
    if kind == "JSONField" or (kind in NATIVE and kind not in TEMPORAL):
        return None

    def convert(value):
        if kind not in NATIVE:
            value = field.get_db_prep_save(value, connection)
        if isinstance(value, dt.datetime | dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, Decimal | uuid.UUID):
            return str(value)
        return value

    return convert


TEMPORAL = frozenset({"DateTimeField", "DateField", "TimeField"})


def _pg_type(field: models.Field) -> str:
    return re.sub(r"[(].*[)]", "", field.db_type(connection))
