"""The demo source: realistic, deterministic tables seeded through the real connector.

Values derive from the row number only, so seeding twice gives identical data. Rows are generated
server-side (``TABLE(GENERATOR(...))``), so seeding 200k rows takes seconds, not minutes.
"""

from __future__ import annotations

from typing import Any

DEMO_DATABASE = "DEMO_DB"
DEMO_SCHEMA = "PUBLIC"


def _rows(n: int) -> str:
    return f"(SELECT SEQ4() AS i FROM TABLE(GENERATOR(ROWCOUNT => {n})))"


def _tables(scale: float) -> dict[str, tuple[int, list[str]]]:
    """Table -> (expected rows, statements)."""
    q = f'"{DEMO_DATABASE}"."{DEMO_SCHEMA}"'
    tail, burst, spike = int(20_000 * scale) or 1, int(170_000 * scale) or 1, int(10_000 * scale) or 1
    visits = tail + burst + spike
    providers = int(5_000 * scale) or 3
    all_types = int(2_000 * scale) or 10
    days, regions = int(750 * scale) or 2, 4
    return {
        "FACT_VISITS": (
            visits,
            [
                f"""CREATE OR REPLACE TABLE {q}."FACT_VISITS" (
                    "Visit Id" NUMBER(38,0) NOT NULL, "Visit Updated Timestamp" TIMESTAMP_NTZ,
                    "Patient Name" VARCHAR, "Visit Cost" NUMBER(12,2), "Is Emergency" BOOLEAN,
                    PROVIDER_ID NUMBER(9,0), "notes" VARCHAR)""",
                # a thin tail over two years (1% with no timestamp) ...
                f"""INSERT INTO {q}."FACT_VISITS"
                    SELECT i, CASE WHEN i % 100 = 0 THEN NULL
                                   ELSE DATEADD(minute, i * 52, '2023-01-01 00:00:00'::TIMESTAMP_NTZ) END,
                           CASE i % 5 WHEN 0 THEN 'José Müller' WHEN 1 THEN '王小明' WHEN 2 THEN 'Zoë 🚑'
                                      WHEN 3 THEN NULL ELSE 'Patient ' || i END,
                           (i % 9973) / 4.0, i % 17 = 0, i % 5000, 'tail'
                    FROM {_rows(tail)}""",
                # ... then most rows in the last two weeks ...
                f"""INSERT INTO {q}."FACT_VISITS"
                    SELECT {tail} + i, DATEADD(second, i * 7, '2024-12-15 00:00:00'::TIMESTAMP_NTZ),
                           'Visitor ' || (i % 977), (i % 12345) / 2.0, i % 23 = 0, i % 5000,
                           CASE WHEN i % 3 = 0 THEN NULL ELSE 'follow-up ' || (i % 11) END
                    FROM {_rows(burst)}""",
                # ... and a spike inside one hour.
                f"""INSERT INTO {q}."FACT_VISITS"
                    SELECT {tail + burst} + i, DATEADD(millisecond, i * 300, '2025-01-02 09:00:00'::TIMESTAMP_NTZ),
                           'Spike ' || i, 19.99, TRUE, 42, 'outage'
                    FROM {_rows(spike)}""",
            ],
        ),
        "DIM_PROVIDERS": (
            providers,
            [
                f"""CREATE OR REPLACE TABLE {q}."DIM_PROVIDERS" (
                    PROVIDER_ID NUMBER(18,0) NOT NULL, PROVIDER_NAME VARCHAR, SPECIALTY VARCHAR,
                    CREATED_AT TIMESTAMP_TZ, RATING FLOAT)""",
                # sparse ids: three clusters far apart
                f"""INSERT INTO {q}."DIM_PROVIDERS"
                    SELECT CASE i % 3 WHEN 0 THEN 1 + i WHEN 1 THEN 1000000 + i ELSE 9000000000 + i END,
                           'Provider ' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'Specialty ' || (i % 13) END,
                           DATEADD(hour, i, '2020-01-01 00:00:00'::TIMESTAMP_TZ),
                           CASE WHEN i % 11 = 0 THEN NULL ELSE (i % 50) / 10.0 END
                    FROM {_rows(providers)}""",
            ],
        ),
        "ALL_TYPES": (
            all_types,
            [
                f"""CREATE OR REPLACE TABLE {q}."ALL_TYPES" (
                    ID NUMBER(38,0) NOT NULL, N_INT NUMBER(9,0), N_BIG NUMBER(38,0), N_DEC NUMBER(12,2),
                    N_HIGH NUMBER(38,10), F FLOAT, V VARCHAR, B BOOLEAN, D DATE, T TIME,
                    TS_NTZ TIMESTAMP_NTZ, TS_LTZ TIMESTAMP_LTZ, TS_TZ TIMESTAMP_TZ, BIN BINARY,
                    VAR VARIANT, OBJ OBJECT, ARR ARRAY)""",
                f"""INSERT INTO {q}."ALL_TYPES"
                    SELECT i,
                        CASE WHEN i % 10 = 1 THEN NULL ELSE i * 1000 END,
                        CASE WHEN i % 10 = 2 THEN NULL ELSE i * 1000000000007 END,
                        CASE WHEN i % 10 = 3 THEN NULL ELSE i * 1.25 END,
                        CASE WHEN i % 10 = 4 THEN NULL ELSE i / 7 END,
                        CASE WHEN i % 10 = 5 THEN NULL WHEN i % 2 = 0 THEN 1e-300 * i ELSE 1.5e300 / (i + 1) END,
                        CASE WHEN i % 10 = 6 THEN NULL WHEN i % 10 = 7 THEN '' ELSE 'héllo ✓ 日本語 ' || i END,
                        CASE WHEN i % 10 = 8 THEN NULL ELSE i % 2 = 0 END,
                        CASE WHEN i % 10 = 9 THEN NULL ELSE DATEADD(day, i, '1999-12-31'::DATE) END,
                        CASE WHEN i % 10 = 0 THEN NULL ELSE '23:59:59.999'::TIME END,
                        CASE WHEN i % 10 = 1 THEN NULL
                             ELSE DATEADD(microsecond, i * 1000003, '2024-02-29 12:00:00'::TIMESTAMP_NTZ) END,
                        CASE WHEN i % 10 = 2 THEN NULL ELSE DATEADD(second, i, '2024-01-01 00:00:00'::TIMESTAMP_LTZ) END,
                        CASE WHEN i % 10 = 3 THEN NULL ELSE DATEADD(second, i, '2024-06-01 00:00:00'::TIMESTAMP_TZ) END,
                        CASE WHEN i % 10 = 4 THEN NULL ELSE TO_BINARY('DEADBEEF', 'HEX') END,
                        CASE WHEN i % 10 = 5 THEN NULL ELSE PARSE_JSON('{{"id": ' || i || ', "tags": ["a", "b"]}}') END,
                        CASE WHEN i % 10 = 6 THEN NULL ELSE OBJECT_CONSTRUCT('k', i, 'name', 'n' || i) END,
                        CASE WHEN i % 10 = 7 THEN NULL ELSE ARRAY_CONSTRUCT('a' || i, 'x') END
                    FROM {_rows(all_types)}""",
            ],
        ),
        "DAILY_METRICS": (
            days * regions,
            [
                f"""CREATE OR REPLACE TABLE {q}."DAILY_METRICS" (
                    METRIC_DATE DATE NOT NULL, REGION VARCHAR NOT NULL, VISITS NUMBER(10,0), REVENUE NUMBER(14,2))""",
                f"""INSERT INTO {q}."DAILY_METRICS"
                    SELECT DATEADD(day, FLOOR(i / {regions}), '2023-01-01'::DATE),
                           CASE i % {regions} WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east' ELSE 'west' END,
                           i % 1000, (i % 100000) / 100.0
                    FROM {_rows(days * regions)}""",
            ],
        ),
        "LEGACY_AUDIT": (
            100,
            [
                f'CREATE OR REPLACE TABLE {q}."LEGACY_AUDIT" (ID NUMBER(9,0), EVENT VARCHAR)',
                f"""INSERT INTO {q}."LEGACY_AUDIT" SELECT i, 'event ' || i FROM {_rows(100)}""",
            ],
        ),
    }


def seed_demo(conn: Any, scale: float = 1.0) -> dict[str, int]:
    """(Re)create every demo table with deterministic data; returns rows per table."""
    cur = conn.cursor()
    try:
        cur.execute(f'CREATE DATABASE IF NOT EXISTS "{DEMO_DATABASE}"')
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{DEMO_DATABASE}"."{DEMO_SCHEMA}"')
        counts = {}
        for table, (rows, statements) in _tables(scale).items():
            for statement in statements:
                cur.execute(statement)
            counts[table] = rows
        cur.execute(f'CREATE OR REPLACE TABLE "{DEMO_DATABASE}"."{DEMO_SCHEMA}"."_SF2PG_SEED" (SCALE FLOAT)')
        cur.execute(f'INSERT INTO "{DEMO_DATABASE}"."{DEMO_SCHEMA}"."_SF2PG_SEED" VALUES ({float(scale)})')
        return counts
    finally:
        cur.close()


def demo_is_seeded(conn: Any, scale: float = 1.0) -> bool:
    """True when every demo table exists with its expected row count at this scale."""
    cur = conn.cursor()
    try:
        for table, (rows, _) in _tables(scale).items():
            try:
                found = cur.execute(f'SELECT COUNT(*) FROM "{DEMO_DATABASE}"."{DEMO_SCHEMA}"."{table}"').fetchone()[0]
            except Exception:  # the table does not exist yet
                return False
            if found != rows:
                return False
        return True
    finally:
        cur.close()
