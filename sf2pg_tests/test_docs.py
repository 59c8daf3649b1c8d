"""Every shell command shown in README.md and docs/*.md is run by this test, or allowlisted with a reason.

What is collected: every line of a fenced ```bash / ```sh / ```shell / ```console block (in a console
block, only lines starting with ``$ ``; the lines after a command are its shown output). ``\\`` joins
continuation lines; ``&&``, ``||``, ``;`` and ``|`` split a line into simple commands.

What happens to each simple command:

- ``sf2pg ...`` runs for real, in this process through ``sf2pg.cli.main.main`` (the console script's entry
  point; a subprocess per command would spend ~5 s importing Dagster each time), against the session's
  test stack (emulator + PostgreSQL), in a scratch folder that holds the repository's ``config/`` files
  with ``config/config.json`` (and ``config/shop.json``) replaced by the config QUICKSTART.md shows.
  It must exit 0, or with N when the doc writes ``# exit N`` after it. Output lines the doc shows
  under a ``$ `` command (except rich table rows) must appear in the real output; ``…`` in a shown
  line stands for anything.
- ``export NAME=value`` sets the variable for the doc's later commands; connection variables
  (``SNOWFLAKE_*``, ``PG*``, ``DAGSTER_PG_*``) keep the test stack's values instead of the doc's.
- ``mkdir`` / ``cp`` run for real in the scratch folder (they prepare DAGSTER_HOME in QUICKSTART).
- Anything else must match ALLOWLIST (a reason, plus the cheapest check that the tool exists),
  so a doc that gains a command nobody runs fails this test.

```yaml blocks (deployment snippets) must parse, and those shaped like dagster.yaml must pass
Dagster's own instance-config validation.

Markers (HTML comments, invisible on GitHub) give a block its context:

- ``<!-- doc-test: file PATH -->`` before a ```json block: the test writes the block to PATH;
- ``<!-- doc-test: scenario NAME -->`` before a shell block: the test resets the source and target,
  then sets up SCENARIOS[NAME] (the broken config, data or environment the doc describes) before
  running the block. Unmarked blocks continue the doc's running state, starting from a fresh world
  with the QUICKSTART table seeded.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from sf2pg_tests.harness import Stack

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(file|scenario)\s+(\S+)\s*-->\s*$")
EXIT_COMMENT = re.compile(r"#\s*exit\s+(\d+)\b")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
TABLE_CHARS = set("│┃━─┏┓┗┛┡┩└┘┌┐├┤┬┴┼╇╈╋┳┻")
CONNECTION_VARS = re.compile(r"^(SNOWFLAKE_\w+|PG\w+|DAGSTER_PG_\w+)$")

# ---- commands that are not run here, each with its reason and a cheap check ---------------------


@dataclass(frozen=True)
class Allowed:
    prefix: tuple[str, ...]  # the command's first words
    reason: str
    check: tuple[str, ...] | None = None  # run once; must exit 0 (proves the tool works here)


BIN = Path(sys.executable).parent

ALLOWLIST = [
    Allowed(("python3", "-m", "venv"), "creates a virtualenv on a fresh machine: .ci/run does exactly this"),
    Allowed((".", ".venv/bin/activate"), "activates that virtualenv: .ci/run does exactly this"),
    Allowed(
        ("pip", "install"),
        "installs sf2pg on a fresh machine: .ci/run runs the README's test command (test_ci_runs_the_readmes_test_command)",
        ("pip", "--version"),
    ),
    Allowed(("pytest",), "is this test suite: .ci/run runs it", ("pytest", "--version")),
    Allowed(
        ("eval",),
        "sets the running demo stack's environment from `sf2pg demo env`: test_demo.py runs it in bash against a "
        "real demo stack, with the psql line the demo prints",
    ),
    Allowed(
        ("dg", "scaffold", "defs"),
        "needs a dg project: test_components.py creates one with create-dagster and scaffolds the Component",
        ("dg", "--version"),
    ),
    Allowed(("dg", "check", "defs"), "test_components.py runs it in the project it scaffolded"),
    Allowed(("dg", "dev"), "serves the UI until Ctrl-C; the definitions it loads are checked by dg check defs"),
    Allowed(
        ("dagster", "dev"),
        "serves the UI until Ctrl-C; the code location it loads is tested in test_definitions.py",
        ("dagster", "dev", "--help"),
    ),
    Allowed(
        ("python", "-m", "sf2pg.bench"),
        "the benchmark takes minutes (docs/PERFORMANCE.md); tests assert correctness only",
        ("python", "-m", "sf2pg.bench", "--help"),
    ),
    Allowed(
        ("dagster", "instance", "concurrency", "set"),
        "changes a live deployment's pool limit; the daemon tests run with the pool limits of dagster.yaml",
        ("dagster", "instance", "concurrency", "set", "--help"),
    ),
    Allowed(("docker",), "needs a Docker daemon, which CI does not have"),
    Allowed(("kubectl",), "needs a Kubernetes cluster"),
    Allowed(("helm",), "needs a Kubernetes cluster"),
]

# sf2pg commands run with --help only
HELP_ONLY = {
    "demo": "takes ~25 s on 2 cores and starts its own PostgreSQL and emulator; the migrate/verify path it "
    "drives is run for real by the QUICKSTART commands here, and its data by test_load/test_backfill.py",
    "dev": "starts the demo stack and serves the Dagster UI until Ctrl-C",
}

FILE_COMMANDS = {"mkdir", "cp"}  # run for real, in the scratch folder

# ---- collecting ----------------------------------------------------------------------------------


@dataclass
class Command:
    doc: str
    line: int
    text: str  # the logical line as the doc shows it
    words: list[str]  # one simple command
    expected_exit: int = 0
    output: list[str] = field(default_factory=list)  # shown output (console blocks), for the last part


@dataclass
class Block:
    doc: str
    line: int
    kind: str  # "shell" or "file"
    scenario: str | None = None
    path: str | None = None  # for files
    content: str = ""
    commands: list[Command] = field(default_factory=list)


def split_commands(doc: str, line: int, text: str) -> list[Command]:
    """A logical shell line as simple commands (comments dropped, ``# exit N`` kept)."""
    expected = 0
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    tokens = list(lexer)
    if "#" in text:  # a comment starts at a token beginning with '#'
        for i, tok in enumerate(tokens):
            if tok.startswith("#"):
                comment = " ".join(tokens[i:])
                if m := EXIT_COMMENT.search(comment):
                    expected = int(m.group(1))
                tokens = tokens[:i]
                break
    commands, current = [], []
    for tok in [*tokens, ";"]:
        if tok in ("&&", "||", ";", "|", "&"):
            if current:
                commands.append(Command(doc, line, text, current))
            current = []
        else:
            current.append(tok)
    if commands:
        commands[-1].expected_exit = expected
    return commands


def collect(path: Path) -> list[Block]:
    return collect_text(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))


def collect_text(text: str, doc: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    marker: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := MARKER.match(line):
            marker = (m.group(1), m.group(2))
            i += 1
            continue
        fence = FENCE.match(line)
        if not fence:
            if line.strip():
                marker = None  # a marker applies to the very next block only
            i += 1
            continue
        ticks, lang = fence.group(1), fence.group(2).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(ticks[:3]):
            body.append(lines[i])
            i += 1
        i += 1
        if marker and marker[0] == "file":
            blocks.append(Block(doc, start + 1, "file", path=marker[1], content="\n".join(body) + "\n"))
        elif lang in SHELL_LANGS:
            block = Block(doc, start + 1, "shell", scenario=marker[1] if marker else None)
            block.commands = _shell_commands(doc, start + 1, body, console=lang == "console")
            blocks.append(block)
        marker = None
    return blocks


def _shell_commands(doc: str, first: int, body: list[str], console: bool) -> list[Command]:
    commands: list[Command] = []
    j = 0
    while j < len(body):
        raw, number = body[j], first + 1 + j
        j += 1
        if console and not raw.startswith("$ "):
            if commands and raw.strip():
                commands[-1].output.append(raw)
            continue
        text = raw[2:] if console else raw
        while text.rstrip().endswith("\\") and j < len(body):
            text = text.rstrip()[:-1] + " " + body[j].strip()
            j += 1
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        commands += split_commands(doc, number, text.strip())
    return commands


def all_blocks() -> list[Block]:
    return [b for path in DOC_FILES for b in collect(path)]


def allowed(words: list[str]) -> Allowed | None:
    return next((a for a in ALLOWLIST if tuple(words[: len(a.prefix)]) == a.prefix), None)


def strip_assignments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while words and (m := ASSIGNMENT.match(words[0])):
        env[m.group(1)] = m.group(2)
        words = words[1:]
    return env, words


# ---- the test world ----------------------------------------------------------------------------


def quickstart_config() -> dict:
    """The config QUICKSTART.md tells a newcomer to write (its ``doc-test: file`` json block)."""
    for block in collect(REPO / "docs" / "QUICKSTART.md"):
        if block.kind == "file" and block.path == "config/shop.json":
            return json.loads(block.content)
    raise AssertionError("docs/QUICKSTART.md shows no config/shop.json block for the test to use")


@dataclass
class DocWorld:
    """The scratch folder, the stack, and helpers the scenarios use."""

    stack: Stack
    folder: Path
    config: dict
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture

    @property
    def sf_database(self) -> str:
        return self.config["sources"][0]["source_sf_database"]

    @property
    def pg_database(self) -> str:
        return self.config["sources"][0]["target_pg_database"]

    def sf(self, *statements: str) -> None:
        conn = self.stack.sf_connect()
        try:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)
        finally:
            conn.close()

    def pg(self, statement: str) -> None:
        with psycopg.connect(dbname=self.pg_database, autocommit=True) as conn:
            conn.execute(statement)

    def write(self, name: str, content: dict | str) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))

    def variant(self, **table_keys: object) -> dict:
        """The QUICKSTART config with keys of its table changed (``None`` removes a key)."""
        raw = json.loads(json.dumps(self.config))
        table = raw["sources"][0]["tables"][0]
        for key, value in table_keys.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return raw

    def cli(self, *argv: str) -> tuple[int, str]:
        from sf2pg.cli.main import main

        self.capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = self.capsys.readouterr()
        return code, out.out + out.err

    def must(self, *argv: str) -> None:
        code, out = self.cli(*argv)
        assert code == 0, f"scenario setup `sf2pg {' '.join(argv)}` failed:\n{out}"

    def reset(self) -> None:
        """A fresh source table (300 orders) and empty target and Dagster databases."""
        for database in (self.pg_database, DAGSTER_DB):
            self.stack.create_pg_database(database)
        db = self.sf_database
        self.sf(
            f'CREATE DATABASE IF NOT EXISTS "{db}"',
            f'CREATE SCHEMA IF NOT EXISTS "{db}"."PUBLIC"',
            f'DROP TABLE IF EXISTS "{db}"."PUBLIC"."ORDERS_EU"',
            f'CREATE OR REPLACE TABLE "{db}"."PUBLIC"."ORDERS" (ORDER_ID NUMBER(18,0), UPDATED_AT TIMESTAMP_NTZ, '
            "CUSTOMER VARCHAR, AMOUNT NUMBER(12,2))",
            f'INSERT INTO "{db}"."PUBLIC"."ORDERS" SELECT SEQ4() + 1, '
            "DATEADD(minute, SEQ4() * 7, '2024-01-01 00:00:00'::TIMESTAMP_NTZ), "
            "'customer ' || (SEQ4() % 40), (SEQ4() % 500) * 1.25 FROM TABLE(GENERATOR(ROWCOUNT => 300))",
        )


DAGSTER_DB = "sf2pg_docs_dagster"

# ---- scenarios: what TROUBLESHOOTING.md describes, set up for real --------------------------------


def _bad_keys(w: DocWorld) -> None:
    raw = w.variant(chunking_column=["UPDATED_AT"], chunking_columns=None, chunking_column_types=["timestamp"])
    raw["batchsize"] = 25000
    raw["sources"][0]["tables"][0]["parallel_threads"] = "8"
    w.write("config/shop.json", raw)


def _missing_table_and_column(w: DocWorld) -> None:
    raw = w.variant(uniqueness_columns=["ORDER_NO"])
    raw["sources"][0]["tables"].append({"source": "ORDER_ITEMS", "uniqueness_columns": ["ITEM_ID"]})
    w.write("config/shop.json", raw)


def _snowflake_unreachable(w: DocWorld) -> None:
    w.monkeypatch.setenv("SNOWFLAKE_HOST", "127.0.0.1")
    w.monkeypatch.setenv("SNOWFLAKE_PORT", "9")
    w.monkeypatch.setenv("SNOWFLAKE_LOGIN_TIMEOUT", "5")


def _snowflake_unset(w: DocWorld) -> None:
    w.monkeypatch.delenv("SNOWFLAKE_PASSWORD")


def _postgres_unreachable(w: DocWorld) -> None:
    w.monkeypatch.setenv("PGHOST", "127.0.0.1")
    w.monkeypatch.setenv("PGPORT", "9")


def _nul_bytes(w: DocWorld) -> None:
    w.sf(f'UPDATE "{w.sf_database}"."PUBLIC"."ORDERS" SET CUSTOMER = \'bad\' || CHR(0) || \'byte\' WHERE ORDER_ID = 42')


def _second_source(w: DocWorld) -> None:
    w.must("migrate")
    eu = json.loads(json.dumps(w.config))
    eu["sources"][0]["source_name"] = "shop_eu"
    eu["sources"][0]["tables"][0].update(source="ORDERS_EU", target="orders")
    w.write("config/shop-eu.json", eu)
    w.sf(f'CREATE TABLE "{w.sf_database}"."PUBLIC"."ORDERS_EU" AS SELECT * FROM "{w.sf_database}"."PUBLIC"."ORDERS"')


def _incompatible_column(w: DocWorld) -> None:
    w.pg(
        "CREATE SCHEMA sales; CREATE TABLE sales.orders "
        "(order_id integer PRIMARY KEY, updated_at timestamp, customer text, amount integer)"
    )


def _narrowed_column(w: DocWorld) -> None:
    w.must("migrate")
    w.sf(f'ALTER TABLE "{w.sf_database}"."PUBLIC"."ORDERS" ALTER COLUMN AMOUNT SET DATA TYPE NUMBER(10,2)')


def _fresh(w: DocWorld) -> None:
    """Only the reset: the QUICKSTART config and source, nothing loaded yet."""


def _delete_guard(w: DocWorld) -> None:
    w.write("config/shop.json", w.variant(delete_detection="keys"))
    w.must("migrate")
    w.sf(f'DELETE FROM "{w.sf_database}"."PUBLIC"."ORDERS" WHERE ORDER_ID <= 150')


def _verify_mismatch(w: DocWorld) -> None:
    w.must("migrate")
    w.pg("DELETE FROM sales.orders WHERE order_id IN (7, 8)")


def _truncate(w: DocWorld) -> None:
    w.write("config/shop.json", w.variant(truncate_onstart=True))
    w.must("migrate")
    w.pg("INSERT INTO sales.orders (order_id, customer) VALUES (100000, 'not in Snowflake')")


SCENARIOS: dict[str, Callable[[DocWorld], None]] = {
    "bad-keys": _bad_keys,
    "missing-table-and-column": _missing_table_and_column,
    "snowflake-unreachable": _snowflake_unreachable,
    "snowflake-unset": _snowflake_unset,
    "postgres-unreachable": _postgres_unreachable,
    "nul-bytes": _nul_bytes,
    "second-source": _second_source,
    "incompatible-column": _incompatible_column,
    "narrowed-column": _narrowed_column,
    "fresh": _fresh,
    "delete-guard": _delete_guard,
    "verify-mismatch": _verify_mismatch,
    "truncate": _truncate,
}

# ---- running -------------------------------------------------------------------------------------


def shown_lines_missing(shown: list[str], actual: str) -> list[str]:
    """Shown output lines (not table rows) that the real output lacks; ``…`` matches anything."""
    flat = re.sub(r"\s+", " ", actual)
    missing = []
    for line in shown:
        if not line.strip() or TABLE_CHARS & set(line):
            continue
        parts = [re.escape(p) for p in re.sub(r"\s+", " ", line.strip()).split("…")]
        if not re.search(".*?".join(parts), flat):
            missing.append(line)
    return missing


def test_every_command_in_the_docs_is_collected_and_known():
    """Cheap, no servers: the collector finds the commands, and each one is run or allowlisted."""
    blocks = all_blocks()
    commands = [c for b in blocks if b.kind == "shell" for c in b.commands]
    assert any(c.doc == "README.md" and c.words[:2] == ["sf2pg", "demo"] for c in commands)
    unknown = []
    for c in commands:
        _, words = strip_assignments(c.words)
        if not words or words[0] in ("sf2pg", "export", *FILE_COMMANDS) or allowed(words):
            continue
        unknown.append(f"{c.doc}:{c.line}: {c.text}")
    assert not unknown, "doc commands neither run by test_docs.py nor allowlisted:\n" + "\n".join(unknown)
    used = {a.prefix for c in commands if (a := allowed(strip_assignments(c.words)[1]))}
    stale = [a.prefix for a in ALLOWLIST if a.prefix not in used]
    assert not stale, f"allowlist entries no doc uses any more (remove them): {stale}"
    scenarios = {b.scenario for b in blocks if b.scenario}
    assert not scenarios - set(SCENARIOS), f"unknown doc-test scenarios: {scenarios - set(SCENARIOS)}"
    assert not set(SCENARIOS) - scenarios, f"scenarios no doc uses: {set(SCENARIOS) - scenarios}"


def test_the_collector_reads_console_bash_markers_and_exit_comments(tmp_path: Path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "<!-- doc-test: scenario fresh -->\n```console\n$ sf2pg verify   # exit 1\n✗ a … c\n```\n"
        "```bash\nexport A=1 B=2\npython3 -m venv .venv && . .venv/bin/activate  # two\nsf2pg plan \\\n  -t x\n```\n"
        "```json\n{}\n```\n"
    )
    console, bash = collect_text(doc.read_text(), "x.md")
    assert console.scenario == "fresh" and bash.scenario is None
    [verify] = console.commands
    assert verify.words == ["sf2pg", "verify"] and verify.expected_exit == 1 and verify.output == ["✗ a … c"]
    assert [c.words for c in bash.commands] == [
        ["export", "A=1", "B=2"],
        ["python3", "-m", "venv", ".venv"],
        [".", ".venv/bin/activate"],
        ["sf2pg", "plan", "-t", "x"],
    ]
    assert not shown_lines_missing(verify.output, "✗ a b c\n")
    assert shown_lines_missing(verify.output, "✗ a b\n") == ["✗ a … c"]
    assert not shown_lines_missing(["┃ table ┃"], "")  # table rows are not compared


def test_yaml_in_the_docs_parses_and_dagster_instance_settings_validate(tmp_path: Path, monkeypatch):
    """Deployment snippets cannot run here, but they can be parsed, and dagster.yaml ones validated."""
    import yaml
    from dagster._core.instance.config import dagster_instance_config

    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else "x")
    checked = 0
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for lang, body in re.findall(r"^```(ya?ml)\n(.*?)^```", text, flags=re.M | re.S):
            data = yaml.safe_load(body)
            assert isinstance(data, dict), f"{path.name}: a {lang} block is not a mapping"
            if {"storage", "run_launcher", "run_coordinator"} & set(data):
                (tmp_path / "dagster.yaml").write_text(body)
                dagster_instance_config(str(tmp_path))  # raises on an unknown or misspelt setting
                checked += 1
    assert checked >= 1, "no dagster.yaml snippet found in docs/DEPLOYMENT.md"


def test_ci_runs_the_readmes_test_command():
    """The README promises that its test command is what CI runs: .ci/run holds it verbatim."""
    [readme_command] = [
        c.text
        for b in collect(REPO / "README.md")
        if b.kind == "shell"
        for c in b.commands
        if c.words[:1] == ["pytest"]
    ]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_command in ci, f".ci/run does not run the README's test command: {readme_command}"


def test_allowlisted_tools_exist():
    checks = {a.check for a in ALLOWLIST if a.check}
    for check in sorted(checks):
        program = shutil.which(check[0], path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        assert program, f"{check[0]} is not installed"
        result = subprocess.run([program, *check[1:]], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == 0, f"{' '.join(check)}: {result.stderr[-2000:]}"
    assert shutil.which("sf2pg", path=str(BIN)), "the sf2pg console script is not installed"


def test_every_sf2pg_command_in_the_docs_runs_as_shown(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    from sf2pg.cli import main as cli

    monkeypatch.setattr(cli.console, "_width", 200)  # no wrapping: shown lines compare whole
    monkeypatch.setattr(cli.err_console, "_width", 200)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("SF2PG_CONFIG", raising=False)
    stack_env = {k: v for k, v in os.environ.items() if CONNECTION_VARS.match(k)}
    stack_env.update(
        DAGSTER_PG_HOST=os.environ.get("PGHOST", "127.0.0.1"),
        DAGSTER_PG_PORT=os.environ.get("PGPORT", "5432"),
        DAGSTER_PG_USER=os.environ.get("PGUSER", "postgres"),
        DAGSTER_PG_PASSWORD=os.environ.get("PGPASSWORD", ""),
        DAGSTER_PG_DB=DAGSTER_DB,
    )
    config = quickstart_config()
    failures: list[str] = []
    ran = 0
    for doc in DOC_FILES:
        blocks = collect(doc)
        if not any(c.words and c.words[0] in ("sf2pg", "export") for b in blocks for c in b.commands):
            continue
        folder = tmp_path / doc.stem
        shutil.copytree(REPO / "config", folder / "config")
        shutil.copytree(REPO / "instance", folder / "instance")
        shutil.copy(REPO / "workspace.yaml", folder / "workspace.yaml")
        world = DocWorld(stack, folder, config, monkeypatch, capsys)
        world.write("config/config.json", config)
        world.write("config/shop.json", config)
        monkeypatch.chdir(folder)
        world.reset()
        with monkeypatch.context() as doc_env:
            for block in blocks:
                if block.kind == "file":
                    world.write(block.path, block.content)
                    continue
                with monkeypatch.context() as block_env:
                    world.monkeypatch = block_env
                    if block.scenario:
                        world.reset()
                        world.write("config/shop.json", config)
                        SCENARIOS[block.scenario](world)
                    for command in block.commands:
                        failure = _run(command, world, doc_env if not block.scenario else block_env, stack_env)
                        ran += command.words[:1] == ["sf2pg"]
                        if failure:
                            failures.append(failure)
    assert ran >= 10, f"only {ran} sf2pg commands found in the docs"
    assert not failures, "\n\n".join(failures)


def _run(command: Command, world: DocWorld, env: pytest.MonkeyPatch, stack_env: dict[str, str]) -> str | None:
    where = f"{command.doc}:{command.line}: {command.text}"
    assignments, words = strip_assignments(command.words)
    if not words:
        return None
    if words[0] == "export":
        for word in words[1:]:
            name, _, value = word.partition("=")
            if CONNECTION_VARS.match(name):  # the test stack's endpoint, not the doc's example
                if name in stack_env:
                    env.setenv(name, stack_env[name])
                else:
                    env.delenv(name, raising=False)
            else:
                env.setenv(name, _expand(value, world))
        return None
    if words[0] in FILE_COMMANDS:
        result = subprocess.run([_expand(w, world) for w in words], capture_output=True, text=True, cwd=world.folder)
        return None if result.returncode == 0 else f"{where}\nexit {result.returncode}: {result.stderr}"
    if words[0] != "sf2pg":
        return None  # allowlisted (checked by test_every_command_in_the_docs_is_collected_and_known)
    args = [_expand(w, world) for w in words[1:]]
    subcommand = next((a for a in args if not a.startswith("-") and a not in _option_values(args)), None)
    if subcommand in HELP_ONLY:
        args = [subcommand, "--help"]
    with pytest.MonkeyPatch.context() as local:
        for name, value in assignments.items():
            if not CONNECTION_VARS.match(name):
                local.setenv(name, _expand(value, world))
        code, out = world.cli(*args)
    expected = 0 if subcommand in HELP_ONLY else command.expected_exit
    problems = []
    if code != expected:
        problems.append(f"exit {code}, the doc says {expected}")
    if subcommand not in HELP_ONLY and (missing := shown_lines_missing(command.output, out)):
        problems.append("shown output not in the real output:\n  " + "\n  ".join(missing))
    if os.environ.get("SF2PG_DOCS_SHOW"):
        print(f"\n===== {where} -> {code}\n{out}", file=sys.__stderr__)
    if problems:
        return f"{where}\n" + "\n".join(problems) + f"\n--- real output:\n{out[-4000:]}"
    return None


def _option_values(args: list[str]) -> set[str]:
    return {args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"}


def _expand(word: str, world: DocWorld) -> str:
    """``$PWD`` is the scratch folder; other variables as the doc's commands have set them."""
    return os.path.expandvars(word.replace("${PWD}", "$PWD").replace("$PWD", str(world.folder)))
