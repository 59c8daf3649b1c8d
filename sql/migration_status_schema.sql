-- sf2pg status ledger, created on first use in every target database (idempotent).
-- Chunk rows are written in the same transaction as the chunk's data, so the ledger never
-- claims rows the target does not hold.
CREATE SCHEMA IF NOT EXISTS migration_status;

CREATE TABLE IF NOT EXISTS migration_status.table_state (
    target_schema   text        NOT NULL,
    target_table    text        NOT NULL,
    source_name     text        NOT NULL,
    source_table    text        NOT NULL,
    total_chunks    integer     NOT NULL DEFAULT 0,
    -- true while every row in the table was loaded by a ledger-recorded chunk (table created or
    -- truncated by sf2pg): a chunk with no ledger row is then provably empty in the target
    pristine        boolean     NOT NULL DEFAULT false,
    truncated_at    timestamptz,
    -- the settled watermark H: every source change whose watermark is <= H is in the target; a row whose
    -- source watermark is > H may be newer in Snowflake (the next sync window starts at H - lookback).
    -- A load sets it, before its first read, to the source maximum it is about to read past; a window
    -- raises it to the window's high when it commits.
    watermark       text,
    watermark_at    timestamptz,
    source_rows     bigint,     -- the source's row count when the watermark was last set
    recent_hash     bigint,     -- and its HASH_AGG of the rows within the lookback of its maximum
    -- the source's MAX(watermark) read before the latest plan's distribution query: rows beyond the
    -- plan's range were all written after it, so a load never settles above it
    planned_watermark text,
    -- the Snowflake table's columns as its last load saw them (name, type, precision, scale, length):
    -- the next load compares the source with these to find schema changes
    source_columns  jsonb,
    schema_version  integer     NOT NULL DEFAULT 0,  -- how many loads changed the target's columns
    column_ranges   jsonb,      -- MIN/MAX per column from the last full plan (wide_integers: bigint_when_fits)
    last_run_id     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_schema, target_table)
);

CREATE TABLE IF NOT EXISTS migration_status.chunk_state (
    target_schema    text        NOT NULL,
    target_table     text        NOT NULL,
    chunk_key        text        NOT NULL,
    lower_bound      text,
    upper_bound      text,
    status           text        NOT NULL,  -- planned | running | completed | failed
    mode             text,                  -- copy | merge | replace | copy->merge
    rows_copied      bigint      NOT NULL DEFAULT 0,
    rows_inserted    bigint      NOT NULL DEFAULT 0,
    rows_updated     bigint      NOT NULL DEFAULT 0,
    rows_deleted     bigint      NOT NULL DEFAULT 0,
    bytes_copied     bigint      NOT NULL DEFAULT 0,
    attempts         integer     NOT NULL DEFAULT 1,
    started_at       timestamptz,
    completed_at     timestamptz,
    duration_seconds double precision,
    source_query     text,
    run_id           text,
    error            text,
    fallback         text,                  -- fallback tiers taken (duplicate key -> merge, smaller batches)
    estimated_rows   bigint,                -- the planner's estimate
    planned_at       timestamptz,
    read_watermark   text,                  -- the table's source watermark before the load that last committed it read
    check_passed     boolean,               -- the last chunk_fingerprint verdict since it was loaded (NULL: none yet)
    reload_pending   boolean     NOT NULL DEFAULT false,  -- `sf2pg migrate --reload` asked for it; not reloaded yet
    checked_at       timestamptz,
    schema_version   integer,               -- the table's schema_version when the chunk last loaded (NULL: loaded before it was kept)
    PRIMARY KEY (target_schema, target_table, chunk_key)
);
-- ledgers created by earlier versions
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS fallback text;
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS estimated_rows bigint;
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS planned_at timestamptz;
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS read_watermark text;
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS check_passed boolean;
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS checked_at timestamptz;
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS reload_pending boolean NOT NULL DEFAULT false;
ALTER TABLE migration_status.table_state ADD COLUMN IF NOT EXISTS watermark_at timestamptz;
ALTER TABLE migration_status.table_state ADD COLUMN IF NOT EXISTS source_rows bigint;
ALTER TABLE migration_status.table_state ADD COLUMN IF NOT EXISTS planned_watermark text;
ALTER TABLE migration_status.table_state ADD COLUMN IF NOT EXISTS recent_hash bigint;
ALTER TABLE migration_status.table_state ADD COLUMN IF NOT EXISTS source_columns jsonb;
ALTER TABLE migration_status.table_state ADD COLUMN IF NOT EXISTS schema_version integer NOT NULL DEFAULT 0;
ALTER TABLE migration_status.table_state ADD COLUMN IF NOT EXISTS column_ranges jsonb;
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS schema_version integer;

-- One row per change of a source table's columns that a load applied to the target (added, widened)
-- or ignored (narrowed, retyped, dropped, with unsafe_schema_changes: ignore). A chunk whose
-- schema_version is below an added column's version was loaded before that column existed: its
-- unchanged rows hold NULL there until the chunk is reloaded.
CREATE TABLE IF NOT EXISTS migration_status.schema_changes (
    target_schema   text        NOT NULL,
    target_table    text        NOT NULL,
    version         integer     NOT NULL,   -- the table's schema_version the change belongs to
    source_column   text        NOT NULL,
    target_column   text,
    change          text        NOT NULL,   -- added | widened | narrowed | retyped | dropped
    applied         boolean     NOT NULL,   -- false: ignored, the target was left as it was
    type_before     text,                   -- Snowflake type, e.g. NUMBER(8,2)
    type_after      text,
    detail          text        NOT NULL,   -- what sf2pg did, e.g. "numeric(8,2) -> numeric(12,2)"
    run_id          text,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS schema_changes_table ON migration_status.schema_changes (target_schema, target_table, version);

-- One row per incremental window committed: which watermark range it read and what it did.
CREATE TABLE IF NOT EXISTS migration_status.window_state (
    target_schema   text        NOT NULL,
    target_table    text        NOT NULL,
    low             text        NOT NULL,   -- inclusive, before the lookback
    high            text        NOT NULL,   -- inclusive
    read_from       text        NOT NULL,   -- low minus the lookback: what the query really read from
    rows_copied     bigint      NOT NULL DEFAULT 0,
    rows_inserted   bigint      NOT NULL DEFAULT 0,
    rows_updated    bigint      NOT NULL DEFAULT 0,
    rows_deleted    bigint      NOT NULL DEFAULT 0,
    duration_seconds double precision,
    run_id          text,
    completed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS window_state_table ON migration_status.window_state (target_schema, target_table, completed_at);

-- Secondary index definitions dropped for a bulk load, kept until they are rebuilt
-- (`sf2pg restore-indexes` rebuilds them after a crash).
CREATE TABLE IF NOT EXISTS migration_status.saved_indexes (
    target_schema text        NOT NULL,
    target_table  text        NOT NULL,
    index_name    text        NOT NULL,
    definition    text        NOT NULL,
    run_id        text,
    saved_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_schema, target_table, index_name)
);

-- Progress per table, in the shape of the original tool's status table.
-- total_chunks counts every chunk of the plan (planned ones included); ledgers from before the plan
-- was kept here only knew the number.
DROP VIEW IF EXISTS migration_status.migration_table_status;
CREATE VIEW migration_status.migration_table_status AS
SELECT
    t.target_schema,
    t.target_table,
    t.source_name,
    t.source_table,
    GREATEST(t.total_chunks, COALESCE(c.chunks, 0))::integer AS total_chunks,
    COALESCE(c.completed, 0)        AS completed_chunks,
    COALESCE(c.failed, 0)           AS failed_chunks,
    COALESCE(c.pending, 0)          AS pending_chunks,
    COALESCE(c.rows_copied, 0)::bigint  AS total_rows_copied,
    COALESCE(c.bytes_copied, 0)::bigint AS total_bytes_copied,
    CASE
        WHEN COALESCE(c.failed, 0) > 0 THEN 'failed'
        WHEN GREATEST(t.total_chunks, COALESCE(c.chunks, 0)) > 0
             AND COALESCE(c.completed, 0) >= GREATEST(t.total_chunks, COALESCE(c.chunks, 0)) THEN 'completed'
        WHEN COALESCE(c.completed, 0) > 0 THEN 'in_progress'
        ELSE 'pending'
    END                             AS status,
    c.first_started_at              AS started_at,
    c.last_completed_at             AS completed_at,
    t.truncated_at,
    t.last_run_id,
    t.watermark                     AS settled_watermark
FROM migration_status.table_state t
LEFT JOIN (
    SELECT target_schema, target_table,
           COUNT(*)                                      AS chunks,
           COUNT(*) FILTER (WHERE status IN ('planned', 'running')) AS pending,
           COUNT(*) FILTER (WHERE status = 'completed') AS completed,
           COUNT(*) FILTER (WHERE status = 'failed')    AS failed,
           SUM(rows_copied) FILTER (WHERE status = 'completed')  AS rows_copied,
           SUM(bytes_copied) FILTER (WHERE status = 'completed') AS bytes_copied,
           MIN(started_at)   AS first_started_at,
           MAX(completed_at) AS last_completed_at
    FROM migration_status.chunk_state
    GROUP BY target_schema, target_table
) c USING (target_schema, target_table);
