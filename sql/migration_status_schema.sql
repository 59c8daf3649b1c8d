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
    watermark       text,
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
    status           text        NOT NULL,  -- completed | failed
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
    PRIMARY KEY (target_schema, target_table, chunk_key)
);
-- ledgers created before the fallback column
ALTER TABLE migration_status.chunk_state ADD COLUMN IF NOT EXISTS fallback text;

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
CREATE OR REPLACE VIEW migration_status.migration_table_status AS
SELECT
    t.target_schema,
    t.target_table,
    t.source_name,
    t.source_table,
    t.total_chunks,
    COALESCE(c.completed, 0)        AS completed_chunks,
    COALESCE(c.failed, 0)           AS failed_chunks,
    COALESCE(c.rows_copied, 0)::bigint  AS total_rows_copied,
    COALESCE(c.bytes_copied, 0)::bigint AS total_bytes_copied,
    CASE
        WHEN COALESCE(c.failed, 0) > 0 THEN 'failed'
        WHEN t.total_chunks > 0 AND COALESCE(c.completed, 0) >= t.total_chunks THEN 'completed'
        WHEN COALESCE(c.completed, 0) > 0 THEN 'in_progress'
        ELSE 'pending'
    END                             AS status,
    c.first_started_at              AS started_at,
    c.last_completed_at             AS completed_at,
    t.truncated_at,
    t.last_run_id
FROM migration_status.table_state t
LEFT JOIN (
    SELECT target_schema, target_table,
           COUNT(*) FILTER (WHERE status = 'completed') AS completed,
           COUNT(*) FILTER (WHERE status = 'failed')    AS failed,
           SUM(rows_copied) FILTER (WHERE status = 'completed')  AS rows_copied,
           SUM(bytes_copied) FILTER (WHERE status = 'completed') AS bytes_copied,
           MIN(started_at)   AS first_started_at,
           MAX(completed_at) AS last_completed_at
    FROM migration_status.chunk_state
    GROUP BY target_schema, target_table
) c USING (target_schema, target_table);
