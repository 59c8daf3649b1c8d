"""``python -m sf2pg.bench``: sf2pg's load path against PostgreSQL's own COPY limit, side by side.

Every contender loads the same generated Arrow data into a fresh table of the same shape on the same
embedded server, in one run; the table printed (and written as JSON) gives rows/s and the ratio to
the limit, server-side ``COPY ... FROM 'file' (FORMAT binary)``. The same run then measures, against
the emulator: end to end, orchestration overhead per chunk, planning a skewed table and an
incremental sync (see ``scenarios.py``), peak memory, and finally whole ``sf2pg`` commands as a user
runs them, beside read-only baselines and the peers (see ``commands.py``).

Why one module: the benchmark's entry point, one function per scenario, run by hand (``python -m sf2pg.bench``), never by sf2pg itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from sf2pg.bench.settling import settle
from sf2pg.config.typemap import SourceColumn
from sf2pg.plan.chunks import Chunk, chunk_key

console = Console(width=120)
STATE = Path(".sf2pg/bench")
DDL = (
    "CREATE TABLE {t} (id bigint, ts timestamp, amount numeric(12,2), note text, score double precision, "
    "flag boolean, day date, payload jsonb)"
)
SOURCE_COLUMNS = [
    SourceColumn("ID", "NUMBER", 18, 0),
    SourceColumn("TS", "TIMESTAMP_NTZ"),
    SourceColumn("AMOUNT", "NUMBER", 12, 2),
    SourceColumn("NOTE", "TEXT"),
    SourceColumn("SCORE", "FLOAT"),
    SourceColumn("FLAG", "BOOLEAN"),
    SourceColumn("DAY", "DATE"),
    SourceColumn("PAYLOAD", "VARIANT"),
]
_WORDS = [("lorem ipsum dolor sit amet " * 8)[: n % 200] for n in range(997)]


def make_batch(start: int, n: int) -> pa.RecordBatch:
    """Rows ``start .. start+n`` of the benchmark data, deterministic, as Snowflake would send them."""
    ids = np.arange(start, start + n, dtype=np.int64)
    ts = (np.datetime64("2024-01-01T00:00:00", "us") + ids * np.timedelta64(1_000_003, "us")).astype("datetime64[ns]")
    cents = (ids * 37) % 10_000_000
    amount = pc.cast(pa.array(np.round(cents / 100.0, 2)), pa.decimal128(12, 2), safe=False)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ids),
            pa.array(ts),
            amount,
            pa.array([_WORDS[i % 997] for i in range(start, start + n)], pa.string()),
            pa.array(ids * 0.5 + 0.25),
            pa.array(ids % 3 == 0),
            pa.array((np.datetime64("2020-01-01") + ids // 1000).astype("datetime64[D]")),
            pa.array([f'{{"id": {i}, "tags": ["a", "b"]}}' for i in range(start, start + n)], pa.string()),
        ],
        names=[c.name for c in SOURCE_COLUMNS],
    )


class GeneratedSource:
    """A ChunkSource that synthesises each chunk batch by batch: the source itself is O(batch) in memory."""

    def __init__(self, batch_rows: int = 50_000) -> None:
        self.batch_rows = batch_rows

    def query_text(self, chunk: Chunk, columns: list[SourceColumn]) -> str:
        return f"generated rows [{chunk.lower}, {chunk.upper})"

    def open(self, chunk: Chunk, columns: list[SourceColumn]):
        for start in range(chunk.lower, chunk.upper, self.batch_rows):  # type: ignore[arg-type]
            yield make_batch(start, min(self.batch_rows, chunk.upper - start))  # type: ignore[operator]

    def close(self) -> None:
        pass


class InMemorySource:
    """A ChunkSource over one pre-generated Arrow table: chunks are zero-copy slices (no Snowflake in the loop)."""

    def __init__(self, data: pa.Table) -> None:
        self.data = data

    def query_text(self, chunk: Chunk, columns: list[SourceColumn]) -> str:
        return f"in-memory rows [{chunk.lower}, {chunk.upper})"

    def open(self, chunk: Chunk, columns: list[SourceColumn]):
        return self.data.slice(chunk.lower, chunk.upper - chunk.lower).to_batches()  # type: ignore[operator]

    def close(self) -> None:
        pass


def generate(rows: int) -> pa.Table:
    return pa.Table.from_batches([make_batch(s, min(50_000, rows - s)) for s in range(0, rows, 50_000)])


def id_chunks(rows: int, per_chunk: int) -> list[Chunk]:
    return [
        Chunk(chunk_key("id", lo, min(lo + per_chunk, rows)), lo, min(lo + per_chunk, rows))
        for lo in range(0, rows, per_chunk)
    ]


def spec_for(database: str, threads: int, batch_size: int, rows_per_chunk: int):
    """The load path's table: no uniqueness columns, like the server-side COPY it is compared with."""
    from sf2pg.bench.scenarios import bench_config

    config = bench_config(
        database, "bench", "EVENTS", rows_per_chunk, threads, batch_size=batch_size, uniqueness_columns=[]
    )
    return config.tables()[0]


def reset(conn, table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS bench.{table}")
    conn.execute("DROP SCHEMA IF EXISTS migration_status CASCADE")
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench")


def time_load_path(
    database: str, rows: int, threads: int, batch_size: int, rows_per_chunk: int, data: pa.Table | None = None
) -> float:
    import psycopg

    from sf2pg.dagster.resources import PostgresResource
    from sf2pg.load.table import TableLoad, load_table

    with psycopg.connect(dbname=database, autocommit=True) as conn:
        reset(conn, "events")
        conn.execute("CHECKPOINT")
    spec = spec_for(database, threads, batch_size, rows_per_chunk)
    source = InMemorySource(data) if data is not None else GeneratedSource()
    job = TableLoad(spec, id_chunks(rows, rows_per_chunk), SOURCE_COLUMNS, source, full_load=True)
    cpu0 = process_cpu()
    t0 = time.perf_counter()
    load_table(job, PostgresResource())
    seconds = time.perf_counter() - t0
    LAST_CPU["load_path"] = process_cpu() - cpu0
    return seconds


LAST_CPU: dict[str, float] = {}  # client CPU seconds (all threads) of the last load path run


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_copy_file(database: str, data: pa.Table, folder: Path) -> Path:
    """The limit's input: a binary COPY file of the rows, encoded as sf2pg encodes them (untimed)."""
    import psycopg
    from pgpq import ArrowToPostgresBinaryEncoder

    from sf2pg.load.conform import conform
    from sf2pg.load.target import prepare_target

    with psycopg.connect(dbname=database, autocommit=True) as conn:
        reset(conn, "limit_events")
        target = prepare_target(conn, "bench", "limit_events", SOURCE_COLUMNS, (), None, "bench")
        path = folder / "events.bin"
        with path.open("wb") as out:
            encoder: ArrowToPostgresBinaryEncoder = target.encoder()
            out.write(encoder.write_header())
            for batch in conform(data.to_batches(), target, 50_000, "fail", "bench"):
                out.write(encoder.write_batch(batch))
            out.write(encoder.finish())
        path.chmod(0o644)
    return path


def time_server_copy(database: str, path: Path) -> float:
    """The limit: the server reads a binary COPY file of the same rows from its own disk, into an empty
    table of the same shape as sf2pg's (created by sf2pg's own target preparation)."""
    import psycopg

    with psycopg.connect(dbname=database, autocommit=True) as conn:
        conn.execute("TRUNCATE bench.limit_events")
        conn.execute("CHECKPOINT")  # every contender starts without the previous one's dirty pages
        t0 = time.perf_counter()
        conn.execute(f"COPY bench.limit_events FROM '{path}' (FORMAT binary)")
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("ANALYZE bench.limit_events")  # what sf2pg's full load does after its COPYs
        LAST_CPU["analyze_s"] = time.perf_counter() - t0
        return seconds


def time_pandas_csv(database: str, data: pa.Table) -> float:
    """The legacy way: DataFrame.to_csv into a buffer, then COPY ... CSV (DataFrame built untimed)."""
    import psycopg

    with psycopg.connect(dbname=database, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench.csv_events")
        conn.execute(DDL.format(t="bench.csv_events"))
        conn.execute("CHECKPOINT")
        total = 0.0
        for start in range(0, data.num_rows, 200_000):
            frame = data.slice(start, 200_000).to_pandas()
            t0 = time.perf_counter()
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False)
            buffer.seek(0)
            with conn.cursor().copy("COPY bench.csv_events FROM STDIN (FORMAT csv)") as copy:
                copy.write(buffer.getvalue())
            total += time.perf_counter() - t0
        return total


def peak_rss_mb(rows: int) -> float:
    """Peak RSS (MiB) of a fresh process running the sf2pg load path over ``rows`` generated rows."""
    code = (
        "import resource, sys; from sf2pg.bench.__main__ import time_load_path; "
        f"time_load_path(sys.argv[1], {rows}, 2, 50000, 500000); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, os.environ["BENCH_DB"]], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def end_to_end(rows: int, database: str, rounds: int) -> dict:
    """`sf2pg migrate` from the emulator vs reading the same rows from the emulator alone (best of rounds,
    interleaved; each round migrates into a fresh target schema). Each round also migrates once with
    the loaders' read-ahead off (``READ_AHEAD = 0``: each chunk's query starts only when a loader takes
    it), side by side, to show what overlapping the next chunk's query with the current COPY buys."""
    from dagster import DagsterInstance

    import sf2pg.load.table as load_table
    from sf2pg.bench.scenarios import bench_config, fresh_schema, seed
    from sf2pg.dagster.resources import snowflake_resource
    from sf2pg.dagster.runner import migrate, plan_tables

    with snowflake_resource(resolve=True).get_connection() as sf:
        seconds = seed(sf, "EVENTS", rows)
    read_ahead = load_table.READ_AHEAD
    reads: list[float] = []
    runs: dict[str, list[dict]] = {"migrate": [], "migrate_no_read_ahead": []}
    for n in range(rounds):
        settle(database, [f"e2e{n - 1}", f"e2e{n - 1}_nra"] if n else [])
        with snowflake_resource(resolve=True).get_connection() as sf:
            cur = sf.cursor()
            t0 = time.perf_counter()
            cur.execute('SELECT ID, TS, AMOUNT, NOTE, SCORE, FLAG, UPDATED_AT FROM "BENCH_DB"."PUBLIC"."EVENTS"')
            read_rows = sum(t.num_rows for t in cur.fetch_arrow_batches())
            reads.append(time.perf_counter() - t0)
        for label, ahead in (("migrate", read_ahead), ("migrate_no_read_ahead", 0)):
            schema = f"e2e{n}" if label == "migrate" else f"e2e{n}_nra"
            fresh_schema(database, schema)
            settle(database, [])
            config = bench_config(database, schema, "EVENTS", max(rows // 8, 1000))
            load_table.READ_AHEAD = ahead
            try:  # disposed here: a garbage-collected instance closes its SQLite storage from whatever thread
                with DagsterInstance.ephemeral() as instance:
                    runs[label].append(_timed_migrate(config, instance, migrate))
            finally:
                load_table.READ_AHEAD = read_ahead
    config = bench_config(database, "e2e_plan", "EVENTS", max(rows // 8, 1000))
    t0 = time.perf_counter()
    plan = plan_tables(config.tables(), None)[config.tables()[0].name]
    planning = time.perf_counter() - t0
    best = {label: min(r, key=lambda b: b["total_s"]) for label, r in runs.items()}
    return {
        "rows": read_rows,
        "seed_s": seconds,
        "read_only_s": min(reads),
        "migrate_s": best["migrate"]["total_s"],
        "ratio": best["migrate"]["total_s"] / min(reads),
        "no_read_ahead_s": best["migrate_no_read_ahead"]["total_s"],
        "no_read_ahead_ratio": best["migrate_no_read_ahead"]["total_s"] / min(reads),
        # medians too: on a shared machine the best round of each side may come from different moments
        "median_ratio": statistics.median(r["total_s"] for r in runs["migrate"]) / statistics.median(reads),
        "median_no_read_ahead_ratio": statistics.median(r["total_s"] for r in runs["migrate_no_read_ahead"])
        / statistics.median(reads),
        "breakdown": best["migrate"],  # the best round's parts
        "breakdown_no_read_ahead": best["migrate_no_read_ahead"],
        "rounds": {"read_only_s": reads, **{k: [r["total_s"] for r in v] for k, v in runs.items()}},
        "round_breakdowns": runs,
        "planning_queries": plan.source_queries,
        "planning_s": planning,
        "chunks": len(plan.chunks),
    }


def _timed_migrate(config, instance, migrate) -> dict:
    """One ``sf2pg.run.commands.migrate`` (the CLI's path), split into planning, the Dagster steps and the rest,
    with the client's CPU seconds."""
    marks: dict[str, float] = {}
    cpu0 = process_cpu()
    t0 = time.perf_counter()
    [outcome] = migrate(
        config,
        config.tables(),
        instance,
        on_plan=lambda *_: marks.setdefault("planned", time.perf_counter()),
        log_level="WARNING",
    )
    total = time.perf_counter() - t0
    cpu = process_cpu() - cpu0
    assert outcome.success, outcome.error
    run = instance.get_runs(limit=1)[0]
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id)}
    asset = sum(v for k, v in steps.items() if not k.endswith(("row_count", "chunk_fingerprint")))
    row_count = sum(v for k, v in steps.items() if k.endswith("row_count"))
    fingerprint = sum(v for k, v in steps.items() if k.endswith("chunk_fingerprint"))
    load = float(outcome.metadata.get("duration_s") or 0.0)
    planning = marks["planned"] - t0
    return {
        "total_s": total,
        "planning_s": planning,
        "asset_step_s": asset,
        "load_table_s": load,  # inside the asset step: target, chunks (source + COPY), indexes, ANALYZE
        "row_count_check_s": row_count,
        "chunk_fingerprint_check_s": fingerprint,
        "rest_s": total - planning - asset - row_count - fingerprint,  # run start, step machinery, events
        "client_cpu_s": cpu,
    }


PARTS = ["load", "e2e", "scenarios", "memory", "commands"]


def commands_options(parser: argparse.ArgumentParser) -> None:
    """Options of the whole-command part (``commands.py``)."""
    group = parser.add_argument_group("whole commands (--only commands)")
    group.add_argument("--changed", type=int, help="rows changed before each timed sync (default 10,000; quick 1,000)")
    group.add_argument(
        "--peers",
        default=os.environ.get("SF2PG_BENCH_PEERS"),
        metavar="VENV",
        help="virtualenv holding the peers, Sling and dlt (default $SF2PG_BENCH_PEERS); without it they are skipped",
    )
    group.add_argument("--setup-peers", metavar="VENV", help="create that virtualenv with pip, then exit")
    group.add_argument(
        "--importtime", action="store_true", help="also run the short commands under python -X importtime (untimed)"
    )
    group.add_argument(
        "--postgres",
        choices=["embedded", "env"],
        default="embedded",
        help="the embedded server under .sf2pg/bench, or the one the PG* variables name (its database sf2pg_bench_commands)",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="small sizes everywhere; skip the 5M memory run")
    parser.add_argument("--json", default=str(STATE / "results.json"))
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the fast contenders (default 3, quick 1)")
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="run only these parts (repeatable): load path vs the limit, end to end, orchestration/planning/sync, "
        "peak memory, whole commands as a user runs them; default all",
    )
    commands_options(parser)
    args = parser.parse_args(argv)
    if args.setup_peers:
        from sf2pg.bench.peers import setup_peers

        sys.exit(setup_peers(Path(args.setup_peers)))
    parts = set(args.only or PARTS)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    rows = 100_000 if quick else args.rows
    sizes = {
        "to_sql_rows": min(rows, 20_000 if quick else 100_000),
        "small_chunks": 100 if quick else 1_000,
        "skewed_rows": 500_000 if quick else 5_000_000,
        "sync_rows": 100_000 if quick else 1_000_000,
        "sync_changed": 1_000 if quick else 10_000,
    }

    import dagster

    # the asset's backfill policy and partitioned checks are Dagster beta/preview features: not news here
    warnings.filterwarnings("ignore", category=dagster.BetaWarning)
    warnings.filterwarnings("ignore", category=dagster.PreviewWarning)

    from sf2pg.bench import scenarios
    from sf2pg.devstack.emulator import start_emulator
    from sf2pg.devstack.postgres import start_postgres

    STATE.mkdir(parents=True, exist_ok=True)
    callers_pg = {k: v for k, v in os.environ.items() if k.startswith("PG")}  # for --postgres env
    server = None
    if parts != {"commands"} or args.postgres == "embedded":  # the commands part can use the caller's PG*
        server = start_postgres(STATE / "pg", durable=True)
        os.environ.update(server.env())
    if parts != {"commands"}:
        server.create_database("bench")
        os.environ["BENCH_DB"] = "bench"
    folder = Path(tempfile.mkdtemp(prefix="sf2pg-bench-"))
    folder.chmod(0o755)
    results: dict = {"machine": machine(), "rows": rows, "sizes": sizes, "contenders": {}}
    emulator = None
    try:
        if "load" in parts:
            data = generate(rows)
            copy_file = write_copy_file("bench", data, folder)
            # The machine is shared, so each fast contender runs in every round, interleaved, and keeps its
            # best time: a slow round (someone else's tests) then costs every contender alike or none.
            limit_label = "limit: server-side COPY FROM file (binary)"
            settings = ((4, 50_000), (1, 50_000), (2, 50_000), (2, 16_384), (8, 50_000))
            labels = [
                f"sf2pg load path, {threads} thread(s), batch {batch}"
                + (" (defaults)" if threads == 4 and batch == 50_000 else "")
                for threads, batch in settings
            ]
            analyze_label = "reference: limit + ANALYZE"
            rounds: dict[str, list[float]] = {limit_label: [], analyze_label: [], **{label: [] for label in labels}}
            cpu: dict[str, list[float]] = {label: [] for label in labels}
            for _ in range(args.rounds):
                rounds[limit_label].append(time_server_copy("bench", copy_file))
                rounds[analyze_label].append(rounds[limit_label][-1] + LAST_CPU["analyze_s"])
                for label, (threads, batch) in zip(labels, settings, strict=True):
                    rounds[label].append(time_load_path("bench", rows, threads, batch, max(rows // 8, 1000), data))
                    cpu[label].append(LAST_CPU["load_path"])
            results["rounds"] = rounds
            results["client_cpu_s"] = cpu
            measured = {label: (rows, min(times)) for label, times in rounds.items()}
            limit = measured[limit_label][1]
            measured["legacy: pandas to_csv + COPY csv"] = (rows, time_pandas_csv("bench", data))
            subset = sizes["to_sql_rows"]
            measured[f"legacy: pandas DataFrame.to_sql ({subset:,}-row subset)"] = (
                subset,
                scenarios.time_to_sql(server.url("bench"), data.slice(0, subset), DDL),
            )
            del data
            table = Table(title=f"sf2pg bench: {rows:,} rows, best of {args.rounds} interleaved round(s)")
            for column in ("contender", "rows", "seconds", "rows/s", "ratio to limit", "client CPU s"):
                table.add_column(column, justify="left" if column == "contender" else "right")
            limit_rate = rows / limit
            for label, (n, seconds) in measured.items():
                ratio = (n / seconds) / limit_rate
                results["contenders"][label] = {
                    "rows": n,
                    "seconds": seconds,
                    "rows_per_s": n / seconds,
                    "ratio_to_limit": ratio,
                }
                # median client CPU (all threads) over the rounds: steadier than wall time on a shared machine
                client = sorted(cpu[label])[len(cpu[label]) // 2] if label in cpu else None
                if client is not None:
                    results["contenders"][label]["client_cpu_s"] = client
                table.add_row(
                    label,
                    f"{n:,}",
                    f"{seconds:.2f}",
                    f"{n / seconds:,.0f}",
                    f"{ratio:.2f}x",
                    "" if client is None else f"{client:.2f}",
                )
            console.print(table)
            best = min(labels, key=lambda label: measured[label][1])
            with_analyze = measured[analyze_label][1] / measured[best][1]
            results["best_load_path"] = {"label": best, "ratio_to_limit_plus_analyze": with_analyze}
            console.print(
                f"best load path ({best}) vs the limit plus the ANALYZE sf2pg's full load also runs: {with_analyze:.2f}x"
            )

        if parts & {"e2e", "scenarios"}:
            emulator = start_emulator(None, log_path=folder / "emulator.log")
            os.environ.update(emulator.env())
        if "e2e" in parts:
            e2e = end_to_end(rows, "bench", args.rounds)
            results["end_to_end"] = e2e
            console.print(
                f"end to end from the emulator (best of {args.rounds}): migrate {e2e['migrate_s']:.1f}s vs read-only {e2e['read_only_s']:.1f}s "
                f"= {e2e['ratio']:.2f}x; planning {e2e['planning_queries']} query in {e2e['planning_s']:.2f}s "
                f"for {e2e['chunks']} chunks (the emulator returns a whole result as one Arrow batch)"
            )
            for key, label in (("breakdown", "with read-ahead"), ("breakdown_no_read_ahead", "read-ahead off")):
                part = e2e[key]
                console.print(
                    f"  {label}: {part['total_s']:.2f}s = planning {part['planning_s']:.2f} + asset step "
                    f"{part['asset_step_s']:.2f} (load_table {part['load_table_s']:.2f}) + row_count check "
                    f"{part['row_count_check_s']:.2f} + chunk_fingerprint check {part['chunk_fingerprint_check_s']:.2f} "
                    f"+ the rest {part['rest_s']:.2f}; client CPU {part['client_cpu_s']:.2f}s"
                )
            console.print(
                f"  read-ahead off: {e2e['no_read_ahead_s']:.1f}s = {e2e['no_read_ahead_ratio']:.2f}x; medians over the "
                f"rounds: {e2e['median_ratio']:.2f}x with read-ahead, {e2e['median_no_read_ahead_ratio']:.2f}x without"
            )
        if "scenarios" in parts:
            orch = scenarios.orchestration("bench", sizes["small_chunks"] * 100, 100)
            results["orchestration"] = orch
            many, one = orch["many"], orch["one"]
            console.print(
                f"orchestration: single-run backfill of {many['chunks']:,} chunks ({many['rows']:,} rows, 1 thread) "
                f"ran {many['run_s']:.1f}s after planning: chunk transactions {many['chunk_loads_s']:.1f}s, checks "
                f"{many['check_steps_s']:.1f}s, the rest {many['beyond_data_s']:.1f}s = "
                f"{orch['overhead_ms_per_chunk']:.1f} ms/chunk beyond the data work (target < 50). Everything but "
                f"the Snowflake side ({many['source_s']:.1f}s) and the checks: {orch['sf2pg_ms_per_chunk']:.1f} ms/chunk. "
                f"The same rows in {one['chunks']} chunk: {one['run_s']:.1f}s, so "
                f"{orch['vs_one_chunk_ms_per_chunk']:.1f} ms per extra chunk, source queries and checks included"
            )
            skew = scenarios.skewed_planning(sizes["skewed_rows"], 250_000 if not quick else 25_000)
            results["skewed_planning"] = skew
            console.print(
                f"planning a skewed {skew['rows']:,}-row table (densest day {skew['densest_day_rows']:,} rows): "
                f"{skew['queries']} queries in {skew['seconds']:.2f}s, {skew['chunks']} chunks of "
                f"{skew['smallest_chunk_rows']:,}..{skew['largest_chunk_rows']:,} rows (target {skew['rows_per_chunk']:,})"
            )
            inc = scenarios.incremental_sync("bench", sizes["sync_rows"], sizes["sync_changed"])
            results["incremental_sync"] = inc
            console.print(
                f"incremental sync: {inc['changed']:,} changed rows into a {inc['rows']:,}-row table in "
                f"{inc['sync_s']:.2f}s, of which {inc['source_s']:.2f}s inside the Snowflake connector "
                f"({inc['source_queries']} statements): sf2pg's own time {inc['own_s']:.2f}s (target < 1 s); "
                "Dagster steps: " + ", ".join(f"{k.split('.')[-1]} {v:.2f}s" for k, v in inc["steps_s"].items())
            )
        if emulator is not None:
            emulator.stop()
            emulator = None

        if "memory" in parts:
            memory = {n: peak_rss_mb(n) for n in ([rows] if quick else [1_000_000, 5_000_000])}
            results["peak_rss_mb"] = memory
            console.print(
                "peak RSS of the load path: " + ", ".join(f"{n:,} rows {mb:.0f} MiB" for n, mb in memory.items())
            )
            if len(memory) == 2:
                console.print(f"5M/1M peak memory ratio: {memory[5_000_000] / memory[1_000_000]:.2f}x")

        if "commands" in parts:
            from sf2pg.bench.commands import Options, run_commands

            options = Options(
                rows=rows,
                rounds=args.rounds,
                changed=1_000 if quick and args.changed is None else args.changed or 10_000,
                peers=args.peers,
                importtime=args.importtime,
                pg_env=None if args.postgres == "embedded" else callers_pg,
                state=STATE / "commands",
            )
            commands = run_commands(options, server if args.postgres == "embedded" else None)
            results["commands"] = {"targets": commands["targets"], "machine": commands["machine"]}
    finally:
        if emulator is not None:
            emulator.stop()
        if server is not None:
            server.stop()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {args.json}")


def machine() -> dict:
    import pgpq  # noqa: F401
    import psycopg

    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_gib": round(pages / 2**30, 1),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "psycopg": psycopg.__version__,
        "max_rss_units": "KiB" if resource else "",
    }


if __name__ == "__main__":
    main()
