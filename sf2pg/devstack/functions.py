"""Snowflake functions the fingerprint needs, taught to the fakesnow emulator (which lacks or bends them).

fakesnow 0.12 rewrites Snowflake SQL into DuckDB with sqlglot. For the functions below it either has
no translation or gives DuckDB's own meaning, unlike Snowflake:

- ``FLATTEN(..., RECURSIVE => TRUE)``: fakesnow drops ``RECURSIVE`` and flattens one level only.
  Here it lists every nested element (not the input itself), with ``KEY`` set for object members
  and ``INDEX`` for array elements, as Snowflake does.
- ``TYPEOF(variant)`` answers ``JSON``; Snowflake names the value's type (``OBJECT``, ``ARRAY``,
  ``VARCHAR``, ``INTEGER``, ``DOUBLE``, ``BOOLEAN``, ``NULL_VALUE``).
- ``AS_VARCHAR``, ``AS_BOOLEAN``, ``AS_OBJECT``, ``AS_ARRAY``: missing. Each returns the value when the
  variant holds that type, else NULL.
- ``MD5_NUMBER_UPPER64``: missing (DuckDB's ``md5_number_upper`` reads the digest in another byte
  order). Snowflake's is the first 16 hex digits of ``MD5`` read as an unsigned number.
- ``HASH_AGG(*)``: missing. Here it is a sum of DuckDB's hash of each row, as a signed 64-bit
  number, 0 without rows: like Snowflake's, it ignores row order, counts repeated rows and changes
  with any value (its numbers differ from Snowflake's; nothing compares them across systems).
- ``DATE_PART(EPOCH_NANOSECOND, ts)``: DuckDB's ``epoch_ns`` overflows 64 bits outside 1677-2262;
  Snowflake answers for any timestamp. The emulator keeps microseconds, so microseconds x 1000 is exact.

``install()`` is called once from ``patch_fakesnow()``, before the emulator creates any database.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

_MACROS = """
CREATE OR REPLACE MACRO {catalog}._sf2pg_json_type(v) AS (
    CASE json_type(to_json(v))
        WHEN 'NULL' THEN 'NULL_VALUE' WHEN 'BIGINT' THEN 'INTEGER' WHEN 'UBIGINT' THEN 'INTEGER'
        WHEN 'HUGEINT' THEN 'INTEGER' ELSE json_type(to_json(v))
    END
);
CREATE OR REPLACE MACRO {catalog}._sf2pg_as_varchar(v) AS (
    CASE WHEN json_type(to_json(v)) = 'VARCHAR' THEN to_json(v) ->> '$' END
);
CREATE OR REPLACE MACRO {catalog}._sf2pg_as_boolean(v) AS (
    CASE WHEN json_type(to_json(v)) = 'BOOLEAN' THEN CAST(to_json(v) AS BOOLEAN) END
);
CREATE OR REPLACE MACRO {catalog}._sf2pg_as_object(v) AS (
    CASE WHEN json_type(to_json(v)) = 'OBJECT' THEN to_json(v) END
);
CREATE OR REPLACE MACRO {catalog}._sf2pg_as_array(v) AS (
    CASE WHEN json_type(to_json(v)) = 'ARRAY' THEN to_json(v) END
);
CREATE OR REPLACE MACRO {catalog}._sf2pg_md5_number_upper64(s) AS (
    CAST(CAST('0x' || substr(md5(s), 1, 16) AS UBIGINT) AS DECIMAL(20, 0))
);
CREATE OR REPLACE MACRO {catalog}._sf2pg_flatten_recursive(input) AS TABLE
    SELECT
        CAST(hash(to_json(input)) >> 1 AS BIGINT) AS SEQ,
        CASE WHEN t.fullkey LIKE '%]' THEN NULL ELSE t.key END AS KEY,
        regexp_replace(t.fullkey, '^\\$\\.?', '') AS PATH,
        CASE WHEN t.fullkey LIKE '%]' THEN CAST(t.key AS BIGINT) END AS INDEX,
        CAST(t.value AS JSON) AS VALUE,
        CAST(NULL AS JSON) AS THIS
    FROM json_tree(to_json(input)) AS t
    WHERE t.parent IS NOT NULL;
"""

_HASH_AGG_ROWS = "COALESCE(CAST(SUM(hash(*COLUMNS(*))) % 9223372036854775807 AS BIGINT), 0)"

_AS_FUNCTIONS = {name: f"_sf2pg_{name.lower()}" for name in ("AS_VARCHAR", "AS_BOOLEAN", "AS_OBJECT", "AS_ARRAY")}


def install() -> None:
    """Register the macros with every database fakesnow creates, and rewrite each statement before
    fakesnow's own transforms see it."""
    import fakesnow.cursor
    import fakesnow.macros

    creation_sql = fakesnow.macros.creation_sql
    if getattr(creation_sql, "sf2pg", False):
        return

    def with_sf2pg_macros(catalog: str) -> str:
        return creation_sql(catalog) + _MACROS.format(catalog=catalog)

    with_sf2pg_macros.sf2pg = True  # type: ignore[attr-defined]
    fakesnow.macros.creation_sql = with_sf2pg_macros

    transform = fakesnow.cursor.FakeSnowflakeCursor._transform

    def _transform(self: Any, expression: exp.Expr, params: Any) -> exp.Expr:
        return transform(self, expression.transform(snowflake_functions, copy=False), params)

    fakesnow.cursor.FakeSnowflakeCursor._transform = _transform  # type: ignore[method-assign]


def snowflake_functions(node: exp.Expr) -> exp.Expr:
    """One node of a parsed Snowflake statement, with the functions above given Snowflake's meaning.

    sqlglot's ``transform`` does not descend into a node it replaced, so a replacement's arguments are
    rewritten here first."""
    if isinstance(node, exp.Lateral | exp.TableFromRows) and _is_recursive_flatten(node.this):
        flatten = node.this
        input_ = flatten.this.expression if isinstance(flatten.this, exp.Kwarg) else flatten.this
        return exp.Table(
            this=exp.Anonymous(this="_sf2pg_flatten_recursive", expressions=[_rewritten(input_)]),
            alias=node.args.get("alias"),
        )
    if isinstance(node, exp.HashAgg) and isinstance(node.this, exp.Star) and not node.expressions:
        return exp.Var(this=_HASH_AGG_ROWS)
    if isinstance(node, exp.Typeof):
        return exp.Anonymous(this="_sf2pg_json_type", expressions=[_rewritten(node.this)])
    if isinstance(node, exp.MD5NumberUpper64):
        return exp.Anonymous(this="_sf2pg_md5_number_upper64", expressions=[_rewritten(node.this)])
    if isinstance(node, exp.Anonymous) and node.name.upper() in _AS_FUNCTIONS:
        return exp.Anonymous(
            this=_AS_FUNCTIONS[node.name.upper()], expressions=[_rewritten(e) for e in node.expressions]
        )
    if isinstance(node, exp.Extract) and node.this.name.upper() == "EPOCH_NANOSECOND":
        micros = exp.Anonymous(this="epoch_us", expressions=[_rewritten(node.expression)])
        return exp.Mul(
            this=exp.Cast(this=micros, to=exp.DataType.build("HUGEINT")), expression=exp.Literal.number(1000)
        )
    return node


def _rewritten(node: exp.Expr) -> exp.Expr:
    return node.transform(snowflake_functions, copy=False)


def _is_recursive_flatten(node: Any) -> bool:
    if not isinstance(node, exp.Explode):
        return False
    return any(
        isinstance(arg, exp.Kwarg) and arg.this.name.upper() == "RECURSIVE" and arg.expression.this is True
        for arg in node.expressions
    )
