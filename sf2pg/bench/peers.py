"""The peers sf2pg is compared with, Sling and dlt, found in a virtualenv of their own.

They are not sf2pg dependencies and must not share its environment (dlt pins its own SQLAlchemy and
connector), so the benchmark looks for them in the virtualenv named by ``--peers`` or
``$SF2PG_BENCH_PEERS``; ``--setup-peers DIR`` creates one with the versions below. A peer that is
missing is skipped, with the reason printed and recorded.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sf2pg.bench.source_table import KEY, SF_DATABASE, SF_SCHEMA, SF_TABLE, WATERMARK

PEERS_ENV = "SF2PG_BENCH_PEERS"
SLING_PACKAGES = {  # Sling's binary, on PyPI as one package per platform
    ("Linux", "x86_64"): "sling-linux-amd64",
    ("Linux", "aarch64"): "sling-linux-arm64",
    ("Darwin", "arm64"): "sling-mac-arm64",
    ("Darwin", "x86_64"): "sling-mac-amd64",
}
PEER_REQUIREMENTS = [
    "dlt[postgres,sql-database,parquet]>=1.31,<2",  # parquet brings pyarrow, for the pyarrow backend
    # the emulator (fakesnow 0.12) cannot log in connector 5.x clients ("Missing response field: session ID"),
    # and snowflake-sqlalchemy 2 needs 5.x; 1.x breaks on SQLAlchemy 2.1 (ORMSelectCompileState was renamed)
    "snowflake-connector-python>=3.12,<5",
    "snowflake-sqlalchemy>=1.7,<2",
    "sqlalchemy>=2,<2.1",
]
SLING_REQUIREMENT = "{package}>=1.4,<1.5"


@dataclass
class Peers:
    """Where each peer's program is, or why it is not there."""

    sling: Path | None = None
    sling_missing: str = ""
    dlt_python: Path | None = None
    dlt_missing: str = ""


def _sling_binary(venv: Path) -> Path | None:
    for package in SLING_PACKAGES.values():
        module = package.replace("-", "_")
        for found in sorted(venv.glob(f"lib/python*/site-packages/{module}/bin/{package}")):
            if os.access(found, os.X_OK):
                return found
    return None


def find_peers(venv: str | None) -> Peers:
    """Sling (``$SLING_BINARY``, else the binary package in the venv) and dlt (the venv's python)."""
    peers = Peers()
    hint = f"set --peers or ${PEERS_ENV} to a virtualenv made by --setup-peers (docs/PERFORMANCE.md)"
    if os.environ.get("SLING_BINARY"):
        peers.sling = Path(os.environ["SLING_BINARY"])
    root = Path(venv).expanduser() if venv else None
    if root is None:
        peers.sling_missing = peers.sling_missing or ("" if peers.sling else f"no peers virtualenv: {hint}")
        peers.dlt_missing = f"no peers virtualenv: {hint}"
        return peers
    if not (root / "bin" / "python").exists():
        peers.dlt_missing = f"{root} is not a virtualenv (no bin/python): {hint}"
        if not peers.sling:
            peers.sling_missing = peers.dlt_missing
        return peers
    if not peers.sling:
        peers.sling = _sling_binary(root)
        if not peers.sling:
            peers.sling_missing = (
                f"no Sling binary package ({', '.join(sorted(set(SLING_PACKAGES.values())))}) in {root}"
            )
    python = root / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import dlt, sqlalchemy, snowflake.sqlalchemy, pyarrow, psycopg2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode == 0:
        peers.dlt_python = python
    else:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        peers.dlt_missing = f"dlt cannot be imported in {root}: {last}"
    return peers


def setup_peers(venv: Path) -> int:
    """Create ``venv`` with Sling's binary for this platform and dlt with its Snowflake and PostgreSQL parts."""
    package = SLING_PACKAGES.get((platform.system(), platform.machine()))
    requirements = list(PEER_REQUIREMENTS)
    if package:
        requirements.append(SLING_REQUIREMENT.format(package=package))
    else:
        print(f"no Sling binary package for {platform.system()} {platform.machine()}: Sling will be skipped")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", *requirements]
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command).returncode


def versions(peers: Peers) -> dict[str, str]:
    """Each installed peer's version, for the results."""
    found: dict[str, str] = {}
    if peers.sling:
        out = subprocess.run([str(peers.sling), "--version"], capture_output=True, text=True, timeout=60)
        found["sling"] = out.stdout.strip().removeprefix("Version: ") or out.stderr.strip()
    if peers.dlt_python:
        code = "import importlib.metadata as m; print(m.version('dlt'), m.version('snowflake-sqlalchemy'), m.version('snowflake-connector-python'))"
        out = subprocess.run([str(peers.dlt_python), "-c", code], capture_output=True, text=True, timeout=60)
        parts = out.stdout.split()
        if len(parts) == 3:
            found.update(
                {"dlt": parts[0], "snowflake-sqlalchemy": parts[1], "dlt's snowflake-connector-python": parts[2]}
            )
    return found


# ---- Sling ---------------------------------------------------------------------------------------


def sling_env(base: Mapping[str, str], database: str, home: Path) -> dict[str, str]:
    """Sling's two connections, as URLs in the environment, from the same SNOWFLAKE_* and PG* settings.

    The Snowflake URL goes straight to Sling's Go driver (``host:port`` and ``protocol``, which the
    emulator needs; Sling's own ``host`` key is taken for an account name), and ``use_bulk=false``:
    Sling otherwise unloads through a stage, which the emulator cannot do."""
    env = dict(base)
    sf_user, sf_password = quote(env["SNOWFLAKE_USER"], safe=""), quote(env["SNOWFLAKE_PASSWORD"], safe="")
    host = env.get("SNOWFLAKE_HOST") or f"{env['SNOWFLAKE_ACCOUNT']}.snowflakecomputing.com"
    port = f":{env['SNOWFLAKE_PORT']}" if env.get("SNOWFLAKE_PORT") else ""
    query = f"schema={SF_SCHEMA}&account={env['SNOWFLAKE_ACCOUNT']}&use_bulk=false"
    if env.get("SNOWFLAKE_PROTOCOL"):
        query += f"&protocol={env['SNOWFLAKE_PROTOCOL']}"
    for name in ("warehouse", "role"):
        if env.get(f"SNOWFLAKE_{name.upper()}"):
            query += f"&{name}={quote(env[f'SNOWFLAKE_{name.upper()}'], safe='')}"
    env["SF2PG_BENCH_SF"] = f"snowflake://{sf_user}:{sf_password}@{host}{port}/{SF_DATABASE}?{query}"
    pg_user = quote(env.get("PGUSER", "postgres"), safe="")
    pg_password = f":{quote(env['PGPASSWORD'], safe='')}" if env.get("PGPASSWORD") else ""
    pg_host = f"{env.get('PGHOST', '127.0.0.1')}:{env.get('PGPORT', '5432')}"
    # Sling's driver knows no "prefer" or "allow" (libpq's default is "prefer"): those become "disable"
    sslmode = env.get("PGSSLMODE", "disable")
    sslmode = "disable" if sslmode in ("prefer", "allow") else sslmode
    env["SF2PG_BENCH_PG"] = f"postgresql://{pg_user}{pg_password}@{pg_host}/{database}?sslmode={sslmode}"
    env["SLING_HOME_DIR"] = str(home)  # its state and logs, not the user's ~/.sling
    env["SLING_DISABLE_TELEMETRY"] = "true"
    return env


def sling_argv(binary: Path, target: str, incremental: bool) -> list[str]:
    """``sling run`` of the source table into ``target`` (schema.table): full refresh, or incremental by
    key and watermark (Sling reads the rows past the target's largest watermark and merges them)."""
    argv = [
        str(binary), "run", "--src-conn", "SF2PG_BENCH_SF", "--src-stream", f"{SF_SCHEMA}.{SF_TABLE}",
        "--tgt-conn", "SF2PG_BENCH_PG", "--tgt-object", target,
    ]  # fmt: skip
    if incremental:
        return [*argv, "--mode", "incremental", "--primary-key", KEY, "--update-key", WATERMARK]
    return [*argv, "--mode", "full-refresh"]


# ---- dlt -----------------------------------------------------------------------------------------


def dlt_argv(python: Path, database: str, dataset: str, pipelines_dir: Path) -> list[str]:
    """dlt's full load (``dlt_load.py``, run as ``python -c`` so only the peers' packages are imported)."""
    script = (Path(__file__).parent / "dlt_load.py").read_text()
    return [str(python), "-c", script, database, dataset, str(pipelines_dir), SF_DATABASE, SF_SCHEMA, SF_TABLE]


def dlt_env(base: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no network calls from the timed process
    return env
