"""What a chunk fingerprint measures per column: exact numbers that Snowflake and PostgreSQL compute alike.

Every mapped type is reduced to integers (or exact decimals) by the same arithmetic on both engines,
and those are summed per chunk. A sum changes when any one value changes, so one changed, missing or
extra cell shows, and the measure names its column:

- NUMBER(p <= 18): the sum itself. Wider NUMBERs: integer parts modulo 10^20 and modulo 10^20 - 1
  (together they pin the value, and neither sum can overflow NUMBER(38)), plus the sum of fractional
  parts (split at 18 places beyond NUMBER(38, 18)).
- FLOAT: the exact decomposition x = mantissa * 2^(exponent - 52), mantissa an integer below 2^53,
  found with LN and POWER(2, ...) and corrected by one step either way (so engines whose LN differs
  in the last bit still agree); NaN and the infinities get exponents of their own.
- BOOLEAN: how many are true. DATE: days since 1970-01-01. TIME: microseconds since midnight.
  TIMESTAMP_*: epoch nanoseconds truncated to the microsecond the target keeps (TZ/LTZ as instants).
- Text and BINARY: a 63-bit integer from the MD5 of the UTF-8 text (of the lowercase hex for BINARY).
- VARIANT/OBJECT/ARRAY: the document as a set of nodes, each hashed as (its key or array index, its
  type, its scalar value or member count), so key order and number spelling, which differ between
  Snowflake and jsonb, cannot matter. JSON numbers are compared as doubles.

Plus per column the non-NULL count. docs/RELIABILITY.md lists what these sums cannot tell apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from sf2pg.config.identifiers import sf_quote
from sf2pg.config.typemap import SourceColumn, target_type

# Integer parts of NUMBERs wider than 18 digits are compared modulo these (coprime, product > 2 * 10^38).
_MODULI = (10**20, 10**20 - 1)
_TWO_52, _TWO_53 = 2**52, 2**53
# exponents of the values the decomposition has no mantissa for (finite ones lie in -1074..1023)
_POS_INF, _NEG_INF, _NAN = 4096, -4096, 8192


@dataclass(frozen=True)
class Measure:
    """One aggregate, written for each engine.

    ``sf`` aggregates the chunk's source rows (columns by their quoted names); ``pg`` aggregates the
    target rows (table alias ``t``). A JSON column also has ``sf_row`` (values its ``sf`` reads by alias),
    ``sf_nodes``, the hash sum of the document's nodes below its root over ``sf_node_source``, and
    ``pg_from``, a LATERAL join its ``pg`` aggregate reads.
    """

    column: str | None  # the source column; None for the chunk's row count
    name: str  # what is measured, as a user reads it
    sf: str
    pg: sql.Composable
    shows_values: bool = True  # False for hash sums: a mismatch says "differs", not two random numbers
    sf_row: tuple[tuple[str, str], ...] = ()  # (alias, expression) computed per source row for ``sf``
    sf_nodes: str | None = None
    pg_from: sql.Composable | None = None

    @property
    def label(self) -> str:
        return f"column {self.column}: {self.name}" if self.column else self.name


def row_count() -> Measure:
    return Measure(None, "rows", "COUNT(*)", sql.SQL("COUNT(*)"))


def column_measures(col: SourceColumn, target: str, index: int, strip_nul: bool = False) -> list[Measure]:
    """The non-NULL count and the content measures of one column (``index`` names its JSON join)."""
    c_sf, c_pg = sf_quote(col.name), sql.Identifier("t", target)
    measures = [Measure(col.name, "non-NULL values", f"COUNT({c_sf})", sql.SQL("COUNT({})").format(c_pg))]
    kind = target_type(col).pg_type.split("(")[0]
    t = col.data_type.upper()
    if kind in {"smallint", "integer", "bigint", "numeric"}:
        measures += _number(col, c_sf, c_pg)
    elif kind == "double precision":
        measures += _float(col.name, c_sf, c_pg)
    elif kind == "boolean":
        measures.append(
            Measure(col.name, "true values", _sf_sum(f"CASE WHEN {c_sf} THEN 1 ELSE 0 END", 18, 0),
                    sql.SQL("SUM(CASE WHEN {} THEN 1 ELSE 0 END)").format(c_pg))
        )  # fmt: skip
    elif kind == "date":
        measures.append(
            Measure(col.name, "sum of days since 1970-01-01",
                    _sf_sum(f"DATEDIFF(day, CAST('1970-01-01' AS DATE), {c_sf})", 18, 0),
                    sql.SQL("SUM({} - DATE '1970-01-01')").format(c_pg))
        )  # fmt: skip
    elif kind == "time":
        measures.append(
            Measure(col.name, "sum of microseconds since midnight",
                    _sf_sum(f"DATEDIFF(microsecond, CAST('00:00:00' AS TIME), {c_sf})", 18, 0),
                    sql.SQL("SUM(EXTRACT(EPOCH FROM {}) * 1000000)").format(c_pg))
        )  # fmt: skip
    elif kind in {"timestamp", "timestamptz"}:
        instant = c_sf if kind == "timestamp" else f"CAST(CONVERT_TIMEZONE('UTC', {c_sf}) AS TIMESTAMP_NTZ)"
        measures.append(
            Measure(col.name, "sum of epoch nanoseconds (to the microsecond)",
                    # the loader truncates nanoseconds toward zero, as TRUNC(..., -3) does
                    _sf_sum(f"TRUNC(DATE_PART(EPOCH_NANOSECOND, {instant}), -3)", 21, 0),
                    sql.SQL("SUM(EXTRACT(EPOCH FROM {}) * 1000000000)").format(c_pg))
        )  # fmt: skip
    elif kind == "text":
        text = f"REPLACE({c_sf}, CHR(0), '')" if strip_nul else c_sf
        measures.append(
            Measure(col.name, "content hash", _sf_sum(_sf_hash(text), 19, 0),
                    sql.SQL("SUM({})").format(_pg_hash(sql.SQL("convert_to({}, 'UTF8')").format(c_pg))), False)
        )  # fmt: skip
    elif kind == "bytea":
        measures.append(
            Measure(col.name, "content hash", _sf_sum(_sf_hash(f"HEX_ENCODE({c_sf}, 0)"), 19, 0),
                    sql.SQL("SUM({})").format(_pg_hash(sql.SQL("encode({}, 'hex')").format(c_pg))), False)
        )  # fmt: skip
    elif kind == "jsonb" and t in {"VARIANT", "OBJECT", "ARRAY"}:
        measures.append(_json(col.name, c_sf, target, index, strip_nul))
    # GEOGRAPHY / GEOMETRY (GeoJSON in jsonb): the non-NULL count only
    return measures


def _sf_sum(expression: str, precision: int, scale: int) -> str:
    """A sum with its argument's type stated, so no engine widens it to a float on the way."""
    return f"SUM(CAST({expression} AS NUMBER({precision}, {scale})))"


# ---- NUMBER -------------------------------------------------------------------------------------


def _number(col: SourceColumn, c_sf: str, c_pg: sql.Composable) -> list[Measure]:
    p, s = col.precision or 38, col.scale or 0
    if p <= 18:
        return [Measure(col.name, "sum", _sf_sum(c_sf, 18, s), sql.SQL("SUM({})").format(c_pg))]
    measures = []
    digits = p - s
    ip_sf = c_sf if s == 0 else f"CAST(TRUNC({c_sf}) AS NUMBER({digits}, 0))"
    ip_pg = c_pg if s == 0 else sql.SQL("trunc({})").format(c_pg)
    what = "values" if s == 0 else "integer parts"
    if digits <= 18:
        measures.append(Measure(col.name, f"sum of {what}", _sf_sum(ip_sf, 18, 0), sql.SQL("SUM({})").format(ip_pg)))
    else:
        for m in _MODULI:
            # MOD(MOD(x, m) + m, m) is the same in [0, m) whichever sign rule an engine's MOD follows
            measures.append(
                Measure(col.name, f"sum of {what} mod {m}", _sf_sum(f"MOD(MOD({ip_sf}, {m}) + {m}, {m})", 20, 0),
                        sql.SQL("SUM(mod(mod({}, {m}) + {m}, {m}))").format(ip_pg, m=sql.SQL(str(m))))
            )  # fmt: skip
    if s > 0:
        frac_sf, frac_pg = f"({c_sf} - TRUNC({c_sf}))", sql.SQL("({} - trunc({}))").format(c_pg, c_pg)
        if s <= 18:
            measures.append(
                Measure(col.name, "sum of fractional parts", _sf_sum(frac_sf, s, s), sql.SQL("SUM({})").format(frac_pg))
            )
        else:  # a sum of NUMBER(38, s) has 38 - s integer digits: keep the first 18 places apart
            hi_sf, hi_pg = f"TRUNC({frac_sf}, 18)", sql.SQL("trunc({}, 18)").format(frac_pg)
            measures += [
                Measure(col.name, "sum of fractional parts to 18 places", _sf_sum(hi_sf, 18, 18),
                        sql.SQL("SUM({})").format(hi_pg)),
                Measure(col.name, "sum of fractional parts beyond 18 places", _sf_sum(f"{frac_sf} - {hi_sf}", s, s),
                        sql.SQL("SUM({} - {})").format(frac_pg, hi_pg)),
            ]  # fmt: skip
    return measures


# ---- FLOAT --------------------------------------------------------------------------------------


def _float(name: str, c_sf: str, c_pg: sql.Composable) -> list[Measure]:
    mantissa_sf, exponent_sf = sf_float_parts(c_sf)
    mantissa_pg, exponent_pg = pg_float_parts(c_pg)
    return [
        Measure(name, "sum of mantissas", _sf_sum(mantissa_sf, 17, 0), sql.SQL("SUM({})").format(mantissa_pg)),
        Measure(name, "sum of binary exponents", _sf_sum(exponent_sf, 5, 0), sql.SQL("SUM({})").format(exponent_pg)),
    ]


def sf_float_parts(x: str) -> tuple[str, str]:
    """(mantissa, exponent) of the double ``x``: ``x = mantissa * 2^(exponent - 52)`` with
    ``2^52 <= |mantissa| < 2^53`` for every finite nonzero x, subnormals included. Snowflake has no
    access to a double's bits, so the exponent comes from LN, checked against the mantissa."""
    inf, nan = "CAST('inf' AS FLOAT)", "CAST('NaN' AS FLOAT)"
    finite = f"({x} <> 0 AND ABS({x}) < {inf})"  # NaN sorts above infinity on all three engines
    a = f"(CASE WHEN {finite} THEN ABS({x}) ELSE 1 END)"
    e0 = f"FLOOR(LN({a}) / LN(2))"  # may be one off at powers of two
    half = f"FLOOR((52 - {e0}) / 2)"  # two factors, so 2^(52 - e0) never overflows a double
    m0 = f"({a} * POWER(2, {half}) * POWER(2, (52 - {e0}) - {half}))"
    step = f"(CASE WHEN {m0} >= {_TWO_53} THEN 1 WHEN {m0} < {_TWO_52} THEN -1 ELSE 0 END)"
    mantissa = (
        f"(CASE WHEN {x} IS NULL THEN NULL WHEN NOT {finite} THEN 0 ELSE (CASE WHEN {m0} >= {_TWO_53} THEN {m0} / 2 WHEN {m0} < {_TWO_52} "
        f"THEN {m0} * 2 ELSE {m0} END) * (CASE WHEN {x} < 0 THEN -1 ELSE 1 END) END)"
    )
    exponent = (
        f"(CASE WHEN {x} IS NULL THEN NULL WHEN {x} = 0 THEN 0 WHEN {x} = {inf} THEN {_POS_INF} WHEN {x} = -{inf} THEN {_NEG_INF} "
        f"WHEN {x} = {nan} THEN {_NAN} ELSE {e0} + {step} END)"
    )
    return mantissa, exponent


def pg_float_parts(x: sql.Composable) -> tuple[sql.Composable, sql.Composable]:
    """The same (mantissa, exponent) read from the IEEE bits PostgreSQL gives exactly (``float8send``):
    three times cheaper than LN and POWER, whose repeats PostgreSQL would evaluate one by one."""
    v = sql.SQL("({})::float8").format(x)
    bits = sql.SQL("('x' || encode(float8send({}), 'hex'))::bit(64)::bigint").format(v)
    normal = sql.SQL("(abs({v}) >= 2.2250738585072014e-308::float8 AND abs({v}) < 'Infinity'::float8)").format(v=v)
    sign = sql.SQL("(CASE WHEN {} < 0 THEN -1 ELSE 1 END)").format(v)
    fraction = sql.SQL("({} & 4503599627370495)").format(bits)
    # a subnormal's fraction shifted up until it holds 53 bits, as the normal ones do
    shift = sql.SQL("(53 - length(ltrim(({})::bit(52)::text, '0')))").format(fraction)
    subnormal = sql.SQL("(abs({v}) > 0 AND abs({v}) < 2.2250738585072014e-308::float8)").format(v=v)
    mantissa = sql.SQL(
        "(CASE WHEN {v} IS NULL THEN NULL WHEN {normal} THEN ({fraction} | 4503599627370496) * {sign} "
        "WHEN {subnormal} THEN ({fraction} << {shift}) * {sign} ELSE 0 END)"
    ).format(v=v, normal=normal, fraction=fraction, sign=sign, subnormal=subnormal, shift=shift)
    exponent = sql.SQL(
        "(CASE WHEN {v} IS NULL THEN NULL WHEN {normal} THEN (({bits} >> 52) & 2047) - 1023 WHEN {subnormal} THEN -1022 - {shift} "
        "WHEN {v} = 0 THEN 0 WHEN {v} = 'Infinity'::float8 THEN {pos} WHEN {v} = '-Infinity'::float8 THEN {neg} "
        "ELSE {nan} END)"
    ).format(
        normal=normal, bits=bits, subnormal=subnormal, shift=shift, v=v,
        pos=sql.SQL(str(_POS_INF)), neg=sql.SQL(str(_NEG_INF)), nan=sql.SQL(str(_NAN)),
    )  # fmt: skip
    return mantissa, exponent


# ---- text and binary ----------------------------------------------------------------------------


def _sf_hash(text: str) -> str:
    """A 63-bit integer from the MD5 of ``text``: the first 16 hex digits, top bit dropped."""
    return f"MOD(MD5_NUMBER_UPPER64({text}), 9223372036854775808)"


def _pg_hash(data: sql.Composable) -> sql.Composable:
    return sql.SQL("((('x' || left(md5({}), 16))::bit(64)::bigint) & 9223372036854775807)").format(data)


# ---- VARIANT / OBJECT / ARRAY -------------------------------------------------------------------


def _json(name: str, c_sf: str, target: str, index: int, strip_nul: bool = False) -> Measure:
    """``strip_nul``: the table strips NUL characters on load (``nul_bytes: strip``), from JSON strings too."""
    lateral = sql.Identifier(f"sf2pg_json{index}")
    root = f"TO_VARIANT({c_sf})"
    x = f"_sf2pg_x{index}"
    return Measure(
        name,
        "content hash (key order and number spelling aside)",
        _sf_sum(_sf_hash(_sf_node("'r'", root, sf_quote(x), strip_nul)), 19, 0),
        sql.SQL("COALESCE(SUM({}.h), 0)").format(lateral),
        False,
        sf_row=((x, _sf_number(root)),),
        sf_nodes=_sf_sum(_sf_hash(_sf_node("k", "v", "x", strip_nul)), 19, 0),
        # ::jsonb: a column_types override may have made the target json
        pg_from=sql.SQL("LEFT JOIN LATERAL ({}) AS {} ON true").format(
            _pg_nodes(sql.SQL("{}::jsonb").format(sql.Identifier("t", target))), lateral
        ),
    )


SF_NODE_KEY = "CASE WHEN n.KEY IS NOT NULL THEN 'k' || LENGTH(n.KEY) || ':' || n.KEY ELSE 'i' || n.INDEX END"


def _sf_number(v: str) -> str:
    """The JSON value ``v`` as a double when it is a number, else NULL."""
    return f"TO_DOUBLE(IFF(TYPEOF({v}) IN ('INTEGER', 'DECIMAL', 'DOUBLE'), {v}, NULL))"


def sf_node_source(rows: str, row: str, column: str) -> str:
    """The columns ``sf_nodes`` reads (``k``, ``v``, ``x``), for every node below the root of ``row.column``
    in the row source ``rows``."""
    return (
        f'SELECT {row}."_sf2pg_chunk" AS "_sf2pg_chunk", {SF_NODE_KEY} AS k, n.VALUE AS v, '
        f"{_sf_number('n.VALUE')} AS x FROM {rows} {row}, "
        f"LATERAL FLATTEN(INPUT => {row}.{sf_quote(column)}, RECURSIVE => TRUE) n"
    )


def _sf_node(key: str, v: str, x: str, strip_nul: bool = False) -> str:
    """A JSON node as text: key (or index), type and scalar value (or member count); ``x`` is its
    value as a double when it is a number."""
    mantissa, exponent = sf_float_parts(x)
    string = f"REPLACE(AS_VARCHAR({v}), CHR(0), '')" if strip_nul else f"AS_VARCHAR({v})"
    return (
        f"{key} || '|' || CASE "
        f"WHEN TYPEOF({v}) = 'OBJECT' THEN 'o|' || ARRAY_SIZE(OBJECT_KEYS(AS_OBJECT({v}))) "
        f"WHEN TYPEOF({v}) = 'ARRAY' THEN 'a|' || ARRAY_SIZE(AS_ARRAY({v})) "
        f"WHEN TYPEOF({v}) = 'BOOLEAN' THEN 'b|' || IFF(AS_BOOLEAN({v}), 'true', 'false') "
        f"WHEN TYPEOF({v}) = 'NULL_VALUE' THEN 'z|' "
        f"WHEN {x} IS NOT NULL THEN 'n|' || CAST({mantissa} AS NUMBER(17, 0)) || ':' || CAST({exponent} AS NUMBER(5, 0)) "
        f"ELSE 's|' || {string} END"
    )


def _pg_nodes(column: sql.Composable) -> sql.Composable:
    """Per row: the hash sum of every node of the document, walked with a recursive CTE."""
    mantissa, exponent = pg_float_parts(sql.SQL("n.v"))
    node = sql.SQL(
        "CASE WHEN n.k IS NOT NULL THEN 'k' || length(n.k) || ':' || n.k WHEN n.i IS NOT NULL THEN 'i' || n.i "
        "ELSE 'r' END || '|' || CASE jsonb_typeof(n.v) "
        "WHEN 'object' THEN 'o|' || (SELECT count(*) FROM jsonb_object_keys(n.v)) "
        "WHEN 'array' THEN 'a|' || jsonb_array_length(n.v) "
        "WHEN 'boolean' THEN 'b|' || (n.v)::text "
        "WHEN 'null' THEN 'z|' "
        "WHEN 'number' THEN 'n|' || {} || ':' || {} "
        "ELSE 's|' || (n.v #>> '{{}}') END"
    ).format(mantissa, exponent)
    return sql.SQL(
        "WITH RECURSIVE n(k, i, v) AS ("
        "SELECT NULL::text, NULL::bigint, {} "
        "UNION ALL SELECT e.k, e.i, e.v FROM n CROSS JOIN LATERAL ("
        "SELECT o.key, NULL::bigint, o.value FROM jsonb_each(CASE WHEN jsonb_typeof(n.v) = 'object' THEN n.v END) o "
        "UNION ALL SELECT NULL, a.ord - 1, a.value "
        "FROM jsonb_array_elements(CASE WHEN jsonb_typeof(n.v) = 'array' THEN n.v END) WITH ORDINALITY a(value, ord)"
        ") e(k, i, v)) "
        "SELECT SUM({}) AS h FROM n WHERE n.v IS NOT NULL"
    ).format(column, _pg_hash(sql.SQL("convert_to({}, 'UTF8')").format(node)))
