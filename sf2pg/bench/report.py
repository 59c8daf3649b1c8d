"""The whole-command part's report: the table and the targets on the terminal, and the facts about
the machine and the versions that the JSON keeps beside the figures."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sf2pg.bench.contenders import BASELINES, Contender
from sf2pg.bench.processes import Summary
from sf2pg.bench.targets import Verdict

console = Console(width=140)
REPO = Path(__file__).resolve().parents[2]


def _fmt(value: float | None, unit: str = "s") -> str:
    return "" if value is None else f"{value:.2f}{unit}"


def print_report(all_: dict[str, Contender], verdicts: list[Verdict], rounds: int) -> None:
    table = Table(title=f"whole commands, fresh processes: best and median of {rounds} interleaved round(s)")
    for column in ("contender", "best", "median", "CPU", "servers' CPU", "vs baseline", "medians", "content / note"):
        table.add_column(column, justify="left" if column in ("contender", "content / note") else "right")
    summaries = {k: c.summary() for k, c in all_.items()}
    group = None
    for key, c in all_.items():
        if c.group != group:
            group = c.group
            table.add_section()
        s = summaries[key]
        base = summaries.get(BASELINES[c.group])
        is_base = key == BASELINES[c.group]
        note = f"skipped: {c.skipped}" if c.skipped else next((n for n in reversed(c.notes) if n), "")
        if s is None:
            table.add_row(c.label, "", "", "", "", "", "", note or c.missing())
            continue
        table.add_row(
            c.label,
            _fmt(s.best_s),
            _fmt(s.median_s),
            _fmt(s.cpu_s),
            _fmt(s.server_cpu_s),
            "" if is_base or base is None else f"{s.best_s / base.best_s:.2f}x",
            "" if is_base or base is None else f"{s.median_s / base.median_s:.2f}x",
            note,
        )
    console.print(table)
    _print_cpu_floors(all_, summaries)
    targets = Table(title="the issue's targets (ratio of the best times; medians beside)")
    for column in ("target", "ratio", "medians", "bound", "met?"):
        targets.add_column(column, justify="left" if column in ("target", "met?") else "right")
    for v in verdicts:
        colour = {"met": "green", "not met": "red"}.get(v.status, "yellow")
        status = f"[{colour}]{v.status}[/]" + (f" ({v.why})" if v.why else "")
        targets.add_row(v.target.label, _fmt(v.ratio, "x"), _fmt(v.median_ratio, "x"), v.target.bound(), status)
    console.print(targets)


def cpu_floor(s: Summary, cores: int) -> float | None:
    """The least wall time any schedule of this much CPU (the command's and the servers') can take."""
    return None if s.server_cpu_s is None else (s.cpu_s + s.server_cpu_s) / cores


def _print_cpu_floors(all_: dict[str, Contender], summaries: dict[str, Summary | None]) -> None:
    """For the full loads: how far the CPU they need lets them come to the read-only baseline here."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    base = summaries.get(BASELINES["full load"])
    for key, c in all_.items():
        s = summaries[key]
        if c.group != "full load" or s is None or base is None or key == BASELINES["full load"]:
            continue
        floor = cpu_floor(s, cores)
        if floor is not None:
            console.print(
                f"  {c.label}: {s.cpu_s:.2f} + {s.server_cpu_s:.2f} servers' CPU-s on {cores} core(s): "
                f"no schedule beats {floor:.2f}s = {floor / base.best_s:.2f}x of the baseline's best",
                highlight=False,
            )


def print_importtimes(found: dict[str, dict[str, Any]], all_: dict[str, Contender]) -> None:
    for key, item in found.items():
        console.print(
            f"[bold]{all_[key].label}[/]: imports {item['total_s']:.2f}s; by cumulative time:", highlight=False
        )
        for entry in item["top"]:
            indent = "  " * (entry["depth"] + 1)
            console.print(f"{indent}{entry['cumulative_us'] / 1e6:6.3f}s  {entry['module']}", highlight=False)


def machine_facts(database: str, embedded: bool, peer_versions: dict[str, str]) -> dict[str, Any]:
    """What a figure depends on: cores, load, memory, the commit, and every tool's version."""
    import psycopg

    packages = ("dagster", "snowflake-connector-python", "pyarrow", "psycopg", "pgpq", "fakesnow", "duckdb")
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    with psycopg.connect(dbname=database) as conn:
        versions["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    versions.update(peer_versions)
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(pages / 2**30, 1),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "postgres": "embedded" if embedded else "PG* variables",
        "versions": versions,
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        return ""


def verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "target": v.target.label,
        "ratio": v.ratio,
        "median_ratio": v.median_ratio,
        "bound": v.target.bound(),
        "status": v.status,
        "why": v.why,
    }
