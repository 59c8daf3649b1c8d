"""The fingerprint queries: one Snowflake statement per batch of chunks, and the PostgreSQL side's
aggregate over the same chunks (grouped, bucketed, or one index range each), with the moving keys a
comparison leaves out shipped into temporary tables."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from sf2pg.config.identifiers import sf_qualified, sf_quote
from sf2pg.config.typemap import SourceColumn, load_type_for_existing, target_type
from sf2pg.load.chunk import chunk_rows, is_timestamptz, pg_bound
from sf2pg.load.conform import conform
from sf2pg.load.copy import copy_batches
from sf2pg.load.target import ColumnPlan, TargetTable
from sf2pg.plan.chunks import Chunk
from sf2pg.reconcile.measures import sf_node_source
from sf2pg.source.statements import chunk_predicate, where_clause

if TYPE_CHECKING:
    from sf2pg.reconcile.fingerprints import ComparisonPlan, Settled

MOVING_KEYS = sql.Identifier("sf2pg_moving_keys")
PRESENT_KEYS = sql.Identifier("sf2pg_present_keys")


# ---- the Snowflake side --------------------------------------------------------------------------

_ROWS = '"_sf2pg_rows"'
_CHUNK = '"_sf2pg_chunk"'


def _sf_case(column: SourceColumn | None, chunks: Sequence[Chunk]) -> str:
    if column is None:
        return f"'{chunks[0].key}'"
    whens = " ".join(f"WHEN {chunk_predicate(column, c)} THEN '{c.key}'" for c in chunks)
    return f"CASE {whens} END"


def source_query(plan: ComparisonPlan, chunks: Sequence[Chunk], settled: Settled, present: bool = False) -> str:
    """One statement (one snapshot): a row per chunk with every measure, and with H set on a keyed
    table also a row per key past H (``_sf2pg_kind`` 'k'); with ``present``, a row per key of the
    chunks' compared rows too ('p')."""
    spec = plan.spec
    table = sf_qualified(spec.sf_database, spec.sf_schema, spec.sf_table)
    where = where_clause(spec.source_filter, settled.sf() if settled.active else None)
    extra = "".join(f", {expression} AS {sf_quote(alias)}" for m in plan.measures for alias, expression in m.sf_row)
    rows = f"SELECT *, {_sf_case(plan.chunk_col, chunks)} AS {_CHUNK}{extra} FROM {table} WHERE {where}"
    aggregates = ", ".join(f'{m.sf} AS "m{i}"' for i, m in enumerate(plan.measures))
    parts = [f"(SELECT {_CHUNK}, {aggregates} FROM {_ROWS} WHERE {_CHUNK} IS NOT NULL GROUP BY 1) f"]
    selected = [f'f."m{i}"' for i in range(len(plan.measures))]
    for i, m in plan.json_measures:
        nodes = sf_node_source(_ROWS, "r", m.column)  # type: ignore[arg-type]
        parts.append(
            f"LEFT JOIN (SELECT {_CHUNK}, {m.sf_nodes} AS h FROM ({nodes}) WHERE {_CHUNK} IS NOT NULL GROUP BY 1) j{i} "
            f"ON j{i}.{_CHUNK} = f.{_CHUNK}"
        )
        selected[i] = f'COALESCE(f."m{i}", 0) + COALESCE(j{i}.h, 0)'
    keys = [sf_quote(k.name) for k, _ in plan.keys] if (settled.ships_keys or present) else []
    select = ", ".join([f"'c' AS \"_sf2pg_kind\", f.{_CHUNK}", *selected, *(f"NULL AS k{i}" for i in range(len(keys)))])
    query = f"WITH {_ROWS} AS ({rows}) SELECT {select} FROM {' '.join(parts)}"
    nulls = ", ".join(["NULL"] * (1 + len(plan.measures)))
    if keys and settled.ships_keys:
        moving = where_clause(spec.source_filter, settled.sf(moving=True))
        query += f" UNION ALL SELECT 'k', {nulls}, {', '.join(keys)} FROM {table} WHERE {moving}"
    if keys and present:
        query += f" UNION ALL SELECT 'p', {nulls}, {', '.join(keys)} FROM {_ROWS} WHERE {_CHUNK} IS NOT NULL"
    return query


def source_rows(
    sf_conn: Any,
    query: str,
    plan: ComparisonPlan,
    on_keys: Callable[[Iterator[pa.RecordBatch]], int] | None,
    present: bool = False,
) -> tuple[dict[str, list], int, list[pa.RecordBatch]]:
    """Run the source statement: chunk rows by key, and the moving keys streamed to ``on_keys``
    (Arrow batches, so the key set is never held in memory whole); returns (rows, keys shipped, the
    chunks' own keys when ``present``: only chunks that differed are rechecked that way)."""
    width = 2 + len(plan.measures)
    found: dict[str, list] = {}
    held: list[pa.RecordBatch] = []
    cur = sf_conn.cursor()
    try:
        cur.execute(query)

        def keys() -> Iterator[pa.RecordBatch]:
            for table in cur.fetch_arrow_batches():
                kinds = table.column(0)
                chunk_rows = table.filter(pc.equal(kinds, "c"))
                for row in zip(*(c.to_pylist() for c in chunk_rows.columns[1:width]), strict=True):
                    if row[0] is not None:
                        found[row[0]] = list(row[1:])
                key_columns = list(range(width, table.num_columns))
                if present:
                    held.extend(table.filter(pc.equal(kinds, "p")).select(key_columns).to_batches())
                key_rows = table.filter(pc.equal(kinds, "k"))
                if key_rows.num_rows:
                    yield from key_rows.select(key_columns).to_batches()

        shipped = on_keys(keys()) if on_keys else sum(1 for _ in keys())
    finally:
        cur.close()
    return found, shipped, held


# ---- the PostgreSQL side -------------------------------------------------------------------------


def ship_keys(
    pg_conn: psycopg.Connection, plan: ComparisonPlan, batches: Iterable[pa.RecordBatch], into: sql.Identifier
) -> int:
    """COPY source keys into a temporary table (dropped at commit): the moving keys, for the target side
    to leave out, or the keys Snowflake still holds, for it to keep."""
    spec = plan.spec
    keys = TargetTable(
        spec.pg_schema,
        spec.pg_table,
        [
            ColumnPlan(col, tc.name, load_type_for_existing(target_type(col), tc.data_type, tc.precision, tc.scale))
            for col, tc in plan.keys
        ],
        [tc.name for _, tc in plan.keys],
        None,
    )
    names = sql.SQL(", ").join(sql.Identifier(tc.name) for _, tc in plan.keys)
    where = f"table {spec.name} ({spec.config_path}), moving keys"
    with pg_conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(into))
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                into, names, sql.Identifier(spec.pg_schema, spec.pg_table)
            )
        )
        rows, _ = copy_batches(cur, into, keys, conform(batches, keys, spec.batch_size, spec.nul_bytes, where))
        cur.execute(sql.SQL("ANALYZE {}").format(into))
    return rows


def _pg_filter(plan: ComparisonPlan, settled: Settled, present: bool = False) -> tuple[sql.Composable | None, list]:
    def same(alias: str) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("{a}.{c} = t.{c}").format(a=sql.Identifier(alias), c=sql.Identifier(tc.name)) for _, tc in plan.keys
        )

    parts: list[sql.Composable] = []
    params: list = []
    if settled.ships_keys:
        parts.append(sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS mk WHERE {})").format(MOVING_KEYS, same("mk")))
    elif settled.active:
        condition, params = settled.pg(is_timestamptz(target_type(settled.column).pg_type))  # type: ignore[arg-type]
        parts.append(condition)
    if present:
        parts.append(sql.SQL("EXISTS (SELECT 1 FROM {} AS pk WHERE {})").format(PRESENT_KEYS, same("pk")))
    if not parts:
        return None, []
    return sql.SQL(" AND ").join(parts), params


def _pg_case(col: sql.Composable | None, kind_tz: bool, chunks: Sequence[Chunk]) -> tuple[sql.Composable, list]:
    if col is None:
        return sql.Literal(chunks[0].key), []
    parts, params = [], []
    for c in chunks:
        rows, bounds = chunk_rows(col, c, kind_tz)
        parts.append(sql.SQL("WHEN {} THEN {}").format(rows, sql.Literal(c.key)))
        params += bounds
    return sql.SQL("CASE {} END").format(sql.SQL(" ").join(parts)), params


def _pg_buckets(
    col: sql.Composable, kind_tz: bool, chunks: Sequence[Chunk]
) -> tuple[sql.Composable, list, dict[int | None, str]] | None:
    """A ``width_bucket`` over the chunks' sorted bounds: a binary search per row instead of a CASE that
    tries every chunk in turn. Only for disjoint ranges (each row then belongs to one chunk whichever way
    it is found); ``None`` otherwise. Returns the expression, its parameters and bucket -> chunk key."""
    ranges = sorted((c for c in chunks if c.is_range), key=lambda c: c.lower)  # type: ignore[arg-type,return-value]
    if not ranges or any(not (c.lower < c.upper) for c in ranges):  # type: ignore[operator]
        return None
    if any(b.lower < a.upper for a, b in itertools.pairwise(ranges)):  # type: ignore[operator]
        return None
    bounds: list = []
    for c in ranges:
        if not bounds or bounds[-1] != c.lower:
            bounds.append(c.lower)
        bounds.append(c.upper)
    # bucket i (1-based) holds bounds[i-1] <= value < bounds[i]; 0 and len(bounds) are outside every chunk
    keys: dict[int | None, str] = {bounds.index(c.lower) + 1: c.key for c in ranges}
    for c in chunks:
        if c.is_null:
            keys[None] = c.key  # width_bucket(NULL) is NULL
    params = [pg_bound(b, kind_tz) for b in bounds]
    expr = sql.SQL("width_bucket({}, ARRAY[{}])").format(col, sql.SQL(", ").join(sql.SQL("%s") for _ in bounds))
    return expr, params, keys


def target_fingerprints(
    pg_conn: psycopg.Connection, plan: ComparisonPlan, chunks: Sequence[Chunk], settled: Settled, present: bool = False
) -> dict[str, list]:
    spec = plan.spec
    aggregates = sql.SQL(", ").join(m.pg for m in plan.measures)
    source = sql.SQL(" ").join(
        [sql.SQL("{} AS t").format(sql.Identifier(spec.pg_schema, spec.pg_table))]
        + [m.pg_from for m in plan.measures if m.pg_from is not None]
    )
    condition, condition_params = _pg_filter(plan, settled, present)
    chunk_col = sql.Identifier("t", plan.chunk_target) if plan.chunk_target else None
    if chunk_col is not None and plan.by_range:
        return _target_fingerprints_by_range(
            pg_conn, chunk_col, plan.tz, chunks, aggregates, source, condition, condition_params
        )
    buckets = _pg_buckets(chunk_col, plan.tz, chunks) if chunk_col is not None else None
    if buckets is None:
        case, params = _pg_case(chunk_col, plan.tz, chunks)
        keys = None
    else:
        case, params, keys = buckets
    where = sql.SQL(" WHERE {}").format(condition) if condition is not None else sql.SQL("")
    query = sql.SQL("SELECT {} AS chunk_key, {} FROM {}{} GROUP BY 1").format(case, aggregates, source, where)
    rows = pg_conn.execute(query, params + condition_params).fetchall()
    if keys is not None:  # bucket numbers -> chunk keys; rows outside every chunk drop out, as with the CASE
        rows = [(keys.get(r[0]), *r[1:]) for r in rows]
    return {r[0]: list(r[1:]) for r in rows if r[0] is not None}


def leads_an_index(pg_conn: psycopg.Connection, schema: str, table: str, column: str) -> bool:
    """True when some index of the table starts with ``column`` (so a chunk's rows are one index range)."""
    return pg_conn.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND a.attname = %s
              AND i.indisvalid AND i.indpred IS NULL
        )
        """,
        (schema, table, column),
    ).fetchone()[0]


def _target_fingerprints_by_range(
    pg_conn: psycopg.Connection,
    col: sql.Composable,
    tz: bool,
    chunks: Sequence[Chunk],
    aggregates: sql.Composable,
    source: sql.Composable,
    condition: sql.Composable | None,
    condition_params: list,
) -> dict[str, list]:
    """One plain aggregate per chunk over its index range, as a ``UNION ALL``: each reads only its own
    rows, and PostgreSQL runs them on parallel workers (a ``GROUP BY`` over a computed chunk number
    cannot be: its group count is misestimated as the table's row count). Measured on 1M rows, 8
    chunks: 0.20 s against 0.41 s for the grouped scan."""
    parts, params = [], []
    for c in chunks:
        where, bounds = chunk_rows(col, c, tz)
        params += bounds
        if condition is not None:
            where = sql.SQL("{} AND {}").format(where, condition)
            params += condition_params
        parts.append(sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(sql.Literal(c.key), aggregates, source, where))
    rows = pg_conn.execute(sql.SQL(" UNION ALL ").join(parts), params).fetchall()
    return {r[0]: list(r[1:]) for r in rows if r[1]}  # a chunk without rows is absent, as with GROUP BY
