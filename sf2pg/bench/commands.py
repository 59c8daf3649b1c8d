"""``python -m sf2pg.bench --only commands``: sf2pg's commands timed as a user waits for them.

Every contender is a whole process started afresh (its imports, logins and exit included), against
the same emulator table and the same PostgreSQL, in interleaved rounds of one run. Each is set
beside a baseline that does the least any tool must do:

- full loads (``sf2pg migrate`` with the default config and a tuned one, Sling's full refresh, dlt)
  beside a process that reads all rows with the connector and drops them;
- ``sf2pg sync`` of a round's changed rows (updates moving the watermark forward, and inserts), a
  no-op ``sf2pg sync`` and Sling's incremental run beside a process that reads just those rows;
- ``sf2pg --help``, ``validate`` and ``status`` beside ``python -c "import psycopg, pyarrow"``.

A load's round counts only once its target is proven equal to the source (``content.py``); each
timed process starts on a settled server (``settling.py``). The run prints the table and the
issue's targets (``targets.py``, ``report.py``) and writes everything, machine facts included, to
``bench_results/commands-<time>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sf2pg.bench import content, peers, source_table
from sf2pg.bench.contenders import contenders
from sf2pg.bench.processes import Run, ServerClock, parse_importtime, run_timed, top_imports
from sf2pg.bench.report import console, machine_facts, print_importtimes, print_report, verdict_json
from sf2pg.bench.settling import settle
from sf2pg.bench.targets import evaluate

DATABASE = "sf2pg_bench_commands"
TABLE = source_table.SF_TABLE.lower()  # every tool names the target table this way
SCHEMAS = {"migrate_default": "sf2pg_default", "migrate_tuned": "sf2pg_tuned", "sling": "sling", "dlt": "dlt"}
LEDGER = "migration_status"  # sf2pg's ledger, dropped with the targets: each round's migrate is a first load


@dataclass
class Options:
    """What ``python -m sf2pg.bench`` passes to this part."""

    rows: int = 1_000_000
    rounds: int = 3
    changed: int = 10_000
    peers: str | None = None
    importtime: bool = False
    pg_env: dict[str, str] | None = None  # the caller's PG* variables, to use their server instead of the embedded one
    state: Path = Path(".sf2pg/bench/commands")
    results: Path = Path("bench_results")
    timeout: float = 1800.0


# ---- configs and command lines --------------------------------------------------------------------


def write_configs(folder: Path, rows: int) -> dict[str, Path]:
    """sf2pg's config with no tuning key (every default as shipped), and the same with ``rows_per_chunk``
    set so the table loads as 8 chunks on the default 4 threads."""
    table = {
        "source": source_table.SF_TABLE,
        "chunking_columns": [source_table.KEY],
        "chunking_column_types": ["id"],
        "uniqueness_columns": [source_table.KEY],
        "source_watermark": source_table.WATERMARK,
    }

    def config(schema: str, **tuning: int) -> dict:
        source = {
            "source_name": "bench",
            "source_sf_database": source_table.SF_DATABASE,
            "source_sf_schema": source_table.SF_SCHEMA,
            "target_pg_database": DATABASE,
            "target_pg_schema": schema,
            "tables": [table],
        }
        return {**tuning, "sources": [source]}

    paths = {"default": folder / "default.json", "tuned": folder / "tuned.json"}
    paths["default"].write_text(json.dumps(config(SCHEMAS["migrate_default"]), indent=2))
    paths["tuned"].write_text(
        json.dumps(config(SCHEMAS["migrate_tuned"], rows_per_chunk=max(rows // 8, 100)), indent=2)
    )
    return paths


def sf2pg_argv(*args: str) -> list[str]:
    """The ``sf2pg`` console script beside this Python, as a user runs it (else ``python -m sf2pg.cli``)."""
    script = Path(sys.executable).with_name("sf2pg")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "sf2pg.cli", *args]


def read_argv(query: str) -> list[str]:
    """The read-only baseline, run as ``python -c`` so only the connector is imported."""
    return [sys.executable, "-c", (Path(__file__).parent / "read_only.py").read_text(), query]


# ---- the run ----------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The emulator, the PostgreSQL database and the environment every timed process gets."""

    env: dict[str, str]
    emulator: Any
    postgres: Any | None  # the embedded server, or None for the caller's own

    def sf_connect(self) -> Any:
        import snowflake.connector

        e = self.env
        return snowflake.connector.connect(
            account=e["SNOWFLAKE_ACCOUNT"], user=e["SNOWFLAKE_USER"], password=e["SNOWFLAKE_PASSWORD"],
            host=e["SNOWFLAKE_HOST"], port=int(e["SNOWFLAKE_PORT"]), protocol=e["SNOWFLAKE_PROTOCOL"],
            session_parameters={"TIMEZONE": "UTC"}, arrow_number_to_decimal=True, autocommit=True,
        )  # fmt: skip


def process_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment with the stack's connections, and no Dagster instance or config of theirs:
    each command then runs without Dagster, as a plain ``sf2pg`` invocation does. Nor
    ``PYTHONDONTWRITEBYTECODE``: a user's Python caches compiled modules after the first run, and a
    process that compiles sf2pg's sources on every start measures something no user waits for."""
    dropped = ("DAGSTER_HOME", "SF2PG_CONFIG", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith(("PG", "SNOWFLAKE_"))}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_stack(options: Options, postgres: Any | None) -> Stack:
    from sf2pg.devstack.emulator import start_emulator

    pg_env = postgres.env() if postgres is not None else dict(options.pg_env or {})
    for name in [k for k in os.environ if k.startswith("PG")]:
        del os.environ[name]  # psycopg here reaches the same server as the timed processes
    os.environ.update(pg_env)
    if postgres is not None:
        postgres.create_database(DATABASE)
    else:
        _create_database_from_env()
    emulator = start_emulator(None, log_path=options.state / "emulator.log")
    return Stack(process_env({**pg_env, **emulator.env()}), emulator, postgres)


def server_clock(stack: Stack) -> ServerClock | None:
    """The emulator's and the embedded PostgreSQL's CPU clock; None with the caller's own server."""
    if stack.postgres is None or stack.emulator.process is None:
        return None
    postmaster = int((stack.postgres.data_dir / "postmaster.pid").read_text().split()[0])
    return ServerClock([stack.emulator.process.pid, postmaster])


def _chunks(schema: str) -> int:
    """The chunks sf2pg planned for its target in ``schema`` (what the config's chunk size made of the table)."""
    import psycopg

    with psycopg.connect(dbname=DATABASE) as conn:
        query = f"SELECT count(*) FROM {LEDGER}.chunk_state WHERE target_schema = %s"
        return conn.execute(query, (schema,)).fetchone()[0]


def _create_database_from_env() -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dbname=os.environ.get("PGDATABASE", "postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


class Bench:
    """One run of the part: the shared setup, then the rounds."""

    def __init__(self, options: Options, stack: Stack) -> None:
        self.options = options
        self.stack = stack
        self.env = stack.env
        self.state = options.state
        self.all = contenders(options.rows)
        self.configs = write_configs(self.state, options.rows)
        self.peers = peers.find_peers(options.peers)
        self.servers = server_clock(stack)
        self.load_average: list[tuple[float, float, float]] = []
        self.inserted = 0  # rows the rounds' changes have added to the source so far
        self.sling_loaded = False  # this round's Sling full refresh is exact: its incremental run can follow
        updates, inserts = source_table.split_changes(min(options.changed, max(options.rows // 10, 2)))
        self.updates, self.inserts = updates, inserts
        if not self.peers.sling:
            for key in ("sling_full", "sling_incremental"):
                self.all[key].skipped = self.peers.sling_missing
        if not self.peers.dlt_python:
            self.all["dlt_full"].skipped = self.peers.dlt_missing

    # -- helpers --

    def time(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> Run:
        before = self.servers.now() if self.servers else None
        run = run_timed(argv, env or self.env, self.state, self.options.timeout)
        if self.servers and before is not None:
            run.server_cpu_s = self.servers.now() - before
        console.print(
            f"  {self.all[key].label}: {run.seconds:.2f}s"
            + ("" if run.ok else f" [red]failed[/] (exit {run.exit_code})"),
            highlight=False,
        )
        return run

    def checked(self, key: str, run: Run, schema: str) -> bool:
        """Record a load's round, counting it only when its target equals the source."""
        if not run.ok:
            self.all[key].add(run, False)
            return False
        verdict = content.compare(DATABASE, schema, TABLE, self.all[key].label)
        note = verdict.summary()
        if key.startswith("migrate_"):
            note += f", {_chunks(schema)} chunk(s)"
        self.all[key].add(run, verdict.exact, note)
        if not verdict.exact:
            console.print(f"  [red]{self.all[key].label}: content differs from the source[/]: {verdict.summary()}")
        return verdict.exact

    def counted_read(self, key: str, run: Run, expected: int) -> None:
        rows = run.output.strip().splitlines()[-1:] if run.ok else []
        got = int(rows[0]) if rows and rows[0].isdigit() else None
        self.all[key].add(run, got == expected, "" if got == expected else f"read {got} rows, expected {expected}")

    def settle(self, drop: tuple[str, ...] = (), vacuum: tuple[str, ...] = ()) -> None:
        settle(DATABASE, drop, vacuum)

    # -- the rounds --

    def run(self) -> None:
        with self.stack.sf_connect() as sf:
            source_table.execute(sf, source_table.seed_statements(self.options.rows))
            content.build_reference(sf, DATABASE)
        for n in range(self.options.rounds):
            self.load_average.append(os.getloadavg())
            console.print(f"[bold]round {n + 1} of {self.options.rounds}[/] (load average {os.getloadavg()[0]:.2f})")
            loaded = self.full_loads()
            self.syncs(n, loaded)
            self.starts()

    def full_loads(self) -> bool:
        """Each full load into an empty target on a settled server; True when sf2pg's default one is exact."""
        dlt_dir = self.state / "dlt-pipelines"
        shutil.rmtree(dlt_dir, ignore_errors=True)
        self.settle(drop=(*SCHEMAS.values(), LEDGER))
        self.counted_read(
            "read_all",
            self.time("read_all", read_argv(source_table.read_all_query())),
            self.options.rows + self.inserted,
        )
        loaded = False
        for key, config in (("migrate_default", "default"), ("migrate_tuned", "tuned")):
            self.settle()
            run = self.time(key, sf2pg_argv("migrate", "--config", str(self.configs[config])))
            exact = self.checked(key, run, SCHEMAS[key])
            loaded = loaded or (key == "migrate_default" and exact)
            self.settle(vacuum=(f"{SCHEMAS[key]}.{TABLE}",))
        if self.peers.sling:
            env = peers.sling_env(self.env, DATABASE, self.state / "sling")
            run = self.time("sling_full", peers.sling_argv(self.peers.sling, f"{SCHEMAS['sling']}.{TABLE}", False), env)
            self.sling_loaded = self.checked("sling_full", run, SCHEMAS["sling"])
            self.settle(vacuum=(f"{SCHEMAS['sling']}.{TABLE}",))
        if self.peers.dlt_python:
            argv = peers.dlt_argv(self.peers.dlt_python, DATABASE, SCHEMAS["dlt"], dlt_dir)
            run = self.time("dlt_full", argv, peers.dlt_env(self.env))
            self.checked("dlt_full", run, SCHEMAS["dlt"])
            self.settle(vacuum=(f"{SCHEMAS['dlt']}.{TABLE}",))
        return loaded

    def syncs(self, n: int, loaded: bool) -> None:
        """One round's changes in the source, then each incremental contender takes them."""
        change = source_table.Change(n, self.options.rows, self.updates, self.inserts)
        with self.stack.sf_connect() as sf:
            source_table.execute(sf, change.statements())
            self.inserted += change.inserts
            content.build_reference(sf, DATABASE)
        self.settle()
        self.counted_read(
            "read_changed",
            self.time("read_changed", read_argv(source_table.read_changed_query(change))),
            change.changed,
        )
        if loaded:
            sync = sf2pg_argv("sync", "--config", str(self.configs["default"]))
            self.settle()
            changed = self.time("sync_changed", sync)
            self.settle()
            noop = self.time("sync_noop", sync)
            # both leave the same target: it must hold the source's rows after them
            verdict = content.compare(DATABASE, SCHEMAS["migrate_default"], TABLE)
            self.all["sync_changed"].add(changed, verdict.exact, verdict.summary())
            if changed.ok:
                self.all["sync_noop"].add(noop, verdict.exact, verdict.summary())
            else:  # the second sync did the first one's work: no no-op to time
                self.all["sync_noop"].add(noop, False, "the sync before it failed")
            if not verdict.exact:
                console.print(f"  [red]sf2pg sync: content differs from the source[/]: {verdict.summary()}")
        else:
            for key in ("sync_changed", "sync_noop"):
                self.all[key].missed.append("no exact sf2pg migrate to sync from in this round")
        if self.peers.sling and self.sling_loaded:
            env = peers.sling_env(self.env, DATABASE, self.state / "sling")
            self.settle()
            run = self.time(
                "sling_incremental", peers.sling_argv(self.peers.sling, f"{SCHEMAS['sling']}.{TABLE}", True), env
            )
            self.checked("sling_incremental", run, SCHEMAS["sling"])

    def starts(self) -> None:
        """The short commands, after a sync so that status has a ledger and targets to read."""
        config = str(self.configs["default"])
        self.settle()
        for key, argv in (
            ("bare_start", [sys.executable, "-c", "import psycopg, pyarrow"]),
            ("cli_help", sf2pg_argv("--help")),
            ("cli_validate", sf2pg_argv("validate", "--config", config)),
            ("cli_status", sf2pg_argv("status", "--config", config)),
        ):
            run = self.time(key, argv)
            self.all[key].add(run, True)

    def importtimes(self) -> dict[str, dict[str, Any]]:
        """``python -X importtime`` of each short command (untimed): where its start goes."""
        config = str(self.configs["default"])
        cli = [sys.executable, "-X", "importtime", "-m", "sf2pg.cli"]
        commands = {
            "bare_start": [sys.executable, "-X", "importtime", "-c", "import psycopg, pyarrow"],
            "cli_help": [*cli, "--help"],
            "cli_validate": [*cli, "validate", "--config", config],
            "cli_status": [*cli, "status", "--config", config],
            "sync_noop": [*cli, "sync", "--config", config],
        }
        found = {}
        for key, argv in commands.items():
            out = subprocess.run(
                argv, env=self.env, cwd=self.state, capture_output=True, text=True, timeout=self.options.timeout
            )
            entries = parse_importtime(out.stderr)
            found[key] = {
                "total_s": sum(e.cumulative_us for e in entries if e.depth == 0) / 1e6,
                "top": [asdict(e) for e in top_imports(entries, 12, max_depth=1)],
            }
        return found


def run_commands(options: Options, postgres: Any | None) -> dict:
    """The whole part: setup, rounds, report; returns what it wrote to its JSON file."""
    options.state = options.state.resolve()
    options.state.mkdir(parents=True, exist_ok=True)
    stack = start_stack(options, postgres)
    try:
        bench = Bench(options, stack)
        peer_versions = peers.versions(bench.peers)
        bench.run()
        found = bench.importtimes() if options.importtime else {}
        load_after = os.getloadavg()
        facts = machine_facts(DATABASE, stack.postgres is not None, peer_versions)
    finally:
        stack.emulator.stop()
    summaries = {k: c.summary() for k, c in bench.all.items()}
    verdicts = evaluate(summaries, {k: c.missing() for k, c in bench.all.items()})
    print_report(bench.all, verdicts, options.rounds)
    if found:
        print_importtimes(found, bench.all)
    results = {
        "machine": facts,
        "rows": options.rows,
        "rounds": options.rounds,
        "changed_rows": {"updates": bench.updates, "inserts": bench.inserts},
        "load_average_per_round": bench.load_average,
        "load_average_after": load_after,
        "contenders": {k: c.as_json() for k, c in bench.all.items()},
        "targets": [verdict_json(v) for v in verdicts],
        "importtime": found,
    }
    options.results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = options.results / f"commands-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"results written to {path}")
    return results
