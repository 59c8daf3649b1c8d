-- sf2pg monitoring queries: run against the target database (psql -d <target_pg_database> -f ...).

-- 1. Quick status: progress per table (the original tool's query, unchanged).
SELECT
    target_schema,
    source_table,
    ROUND(completed_chunks::NUMERIC / total_chunks * 100, 1) || '%' as progress,
    total_rows_copied,
    status
FROM migration_status.migration_table_status
WHERE status IN ('in_progress', 'completed')
ORDER BY target_schema, source_table;

-- 2. Failed chunks with their errors (re-run exactly these partitions in Dagster).
SELECT target_schema, target_table, chunk_key, attempts, error, completed_at
FROM migration_status.chunk_state
WHERE status = 'failed'
ORDER BY completed_at DESC;

-- 2b. Chunks of the plan not loaded yet, or found different by their last check (what a resumed
--     `sf2pg migrate` loads).
SELECT target_schema, target_table, chunk_key, status, check_passed, reload_pending, planned_at
FROM migration_status.chunk_state
WHERE status <> 'completed' OR check_passed = false OR reload_pending
ORDER BY target_schema, target_table, chunk_key;

-- 2c. The last sync windows per table, and where each table's settled watermark stands.
SELECT w.target_schema, w.target_table, w.read_from, w.high, w.rows_copied, w.rows_inserted, w.rows_updated,
       w.completed_at, t.watermark AS settled_watermark
FROM migration_status.window_state w
JOIN migration_status.table_state t USING (target_schema, target_table)
WHERE w.completed_at > now() - interval '1 day'
ORDER BY w.completed_at DESC
LIMIT 50;

-- 3. Throughput of the last hour, per table.
SELECT target_schema, target_table,
       COUNT(*) AS chunks,
       SUM(rows_copied) AS rows,
       ROUND(SUM(rows_copied) / NULLIF(SUM(duration_seconds), 0)) AS rows_per_second_per_stream
FROM migration_status.chunk_state
WHERE status = 'completed' AND completed_at > now() - interval '1 hour'
GROUP BY 1, 2
ORDER BY rows DESC;

-- 4. Which load mode each chunk took (copy = empty range, merge = upsert by key, replace = delete + copy).
SELECT target_schema, target_table, mode, COUNT(*) AS chunks, SUM(rows_copied) AS rows
FROM migration_status.chunk_state
WHERE status = 'completed'
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- 5. Index definitions waiting to be rebuilt (non-empty after a crashed full load:
--    run `sf2pg restore-indexes`).
SELECT target_schema, target_table, index_name, saved_at, run_id
FROM migration_status.saved_indexes
ORDER BY saved_at;

-- 6. Sessions of sf2pg loading right now.
SELECT pid, state, now() - xact_start AS in_transaction_for, left(query, 120) AS query
FROM pg_stat_activity
WHERE application_name LIKE 'sf2pg%'
ORDER BY xact_start;

-- 7. Schema changes of the Snowflake tables: what each load followed (added, widened) or ignored
--    (narrowed, retyped, dropped, with unsafe_schema_changes: ignore), newest first.
SELECT target_schema, target_table, source_column, change, applied, type_before, type_after, detail, changed_at
FROM migration_status.schema_changes
ORDER BY changed_at DESC
LIMIT 50;

-- 8. Chunks loaded before a column was added to their table: their rows that have not changed since
--    hold NULL in it until the chunk is reloaded (the next `sf2pg migrate` does).
SELECT c.target_schema, c.target_table, c.chunk_key, string_agg(DISTINCT s.target_column, ', ') AS columns_to_fill
FROM migration_status.chunk_state c
JOIN migration_status.schema_changes s USING (target_schema, target_table)
WHERE c.status = 'completed' AND s.change = 'added' AND s.applied AND s.version > COALESCE(c.schema_version, 0)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;
