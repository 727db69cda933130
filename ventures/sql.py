"""Set-wise writes the ORM has no single statement for.

`rows_update` writes a different value into each of many rows in one statement,
`UPDATE table AS t SET ... FROM <the rows> AS v WHERE t.<key> = v.<key>`: the rows are one
array per column (`unnest`; one JSON document for a JSON column) on PostgreSQL, a VALUES list
on SQLite (3.33 and later).
Django's `bulk_update` builds a `CASE WHEN` per row and field instead: its SQL grows with
rows x fields and takes longer to compile than to run, and it can neither add a condition (a
lease fence) nor say which rows it changed. `rows_insert` is the same for inserts that skip
conflicts, without a model instance per row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from django.db import connection, models
from django.utils import timezone

# Fields whose Python values psycopg sends as they are (an aware datetime included): the
# per-value preparation of Django's fields is skipped for them, a third of a batch's writing.
NATIVE = frozenset({
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "DateField",
    "DateTimeField", "ForeignKey", "IntegerField", "PositiveIntegerField",
    "PositiveSmallIntegerField", "SmallIntegerField", "TextField",
})  # fmt: skip
# SQLite's default limit of host parameters in one statement is 32,766 (since 3.32).
MAX_PARAMS = 30_000


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
        source, arrays = _pg_rows(columns, rows)
        statements = [("", f"{source} AS v({', '.join(names)})", arrays)]
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
    model: type[models.Model], rows: Iterable[Sequence], *, fields: Sequence[str]
) -> int:
    """Insert many rows of `model` (tuples of the `fields` values), skipping any that would
    break a unique constraint (`ON CONFLICT DO NOTHING`); returns how many were inserted.
    Every other column takes its field's default (`auto_now` ones: now), as `save()` would
    give it, without building a model instance per row."""
    rows = list(rows)
    if not rows:
        return 0
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
    count = 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            source, arrays = _pg_rows(columns, [(*row, *defaults) for row in rows])
            cursor.execute(
                f"INSERT INTO {table} ({names_sql}) SELECT * FROM {source} "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                arrays,
            )
            return cursor.rowcount
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
                f"{', '.join([row_sql] * len(chunk))} ON CONFLICT DO NOTHING",
                values,
            )
            count += cursor.rowcount
    return count


def _pg_rows(columns: list[models.Field], rows: list[Sequence]) -> tuple[str, list]:
    """The rows as one set of rows, `ROWS FROM (...)`, with one parameter per column whatever
    the number of rows: an array (`unnest`), or for a JSON column that cannot be NULL one JSON
    document holding every row's value (`jsonb_array_elements`). psycopg escapes each element
    of a jsonb[] array in Python, several times the cost of the same values as one document.
    A nullable JSON column keeps its array: there a None is SQL NULL, not JSON null. Arrays
    are typed (the rows have no column types of their own) without a length: a value too
    long for its column is an error, not silently cut."""
    sources, params = [], []
    for i, field in enumerate(columns):
        values = [row[i] for row in rows]
        kind = field.get_internal_type()
        if kind == "JSONField" and not field.null:
            sources.append("jsonb_array_elements(%s::jsonb)")
            params.append(field.get_db_prep_save(values, connection))
        else:
            sources.append(f"unnest(%s::{_pg_type(field)}[])")
            params.append(
                values
                if kind in NATIVE
                else [field.get_db_prep_save(v, connection) for v in values]
            )
    return f"ROWS FROM ({', '.join(sources)})", params


def _pg_type(field: models.Field) -> str:
    return re.sub(r"[(].*[)]", "", field.db_type(connection))
