"""Whole processes, timed as a user waits for them: wall clock from start to exit, plus the CPU the
process (and any child it waited for) used, which is steadier than wall time on a shared machine."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    """One timed process."""

    seconds: float
    cpu_s: float
    exit_code: int
    output: str  # the last lines of stdout and stderr together, for a failure's message
    timed_out: bool = False
    server_cpu_s: float | None = None  # the emulator's and PostgreSQL's CPU meanwhile, when they are ours

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run_timed(argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 1800, keep: int = 4000) -> Run:
    """Run ``argv`` to its end; stdout and stderr go to a file (a full pipe would stall the process)."""
    with tempfile.TemporaryFile() as out:
        timed_out = threading.Event()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd,
            start_new_session=True,  # a timeout ends the process and anything it started
        )  # fmt: skip

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return Run(seconds, usage.ru_utime + usage.ru_stime, proc.returncode, text[-keep:], timed_out.is_set())


@dataclass
class Summary:
    """A contender's rounds: the best and the median wall time, and the median CPU."""

    best_s: float
    median_s: float
    cpu_s: float
    rounds_s: list[float]
    server_cpu_s: float | None = None  # median; None when a server is not the benchmark's own

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Summary | None:
        good = [r for r in runs if r.ok]
        if not good:
            return None
        times = [r.seconds for r in good]
        servers = [r.server_cpu_s for r in good if r.server_cpu_s is not None]
        return cls(
            min(times), statistics.median(times), statistics.median(r.cpu_s for r in good), times,
            statistics.median(servers) if len(servers) == len(good) else None,
        )  # fmt: skip


class ServerClock:
    """CPU seconds the benchmark's own servers spend: the emulator's process and the PostgreSQL
    postmaster with every backend it has reaped. On a machine with few cores, a command's wall time
    cannot go below (its CPU + the servers' CPU) / cores, which is what a ratio to the read-only
    baseline (which leaves PostgreSQL idle) has to be read against."""

    def __init__(self, pids: Sequence[int]) -> None:
        import psutil

        self.processes = [psutil.Process(pid) for pid in pids]

    def now(self) -> float:
        total = 0.0
        for p in self.processes:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        return total


# ---- python -X importtime ------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One line of ``python -X importtime``: a module, its own and its cumulative time, its nesting."""

    module: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[Import]:
    """The ``import time:`` lines of a process's stderr (other lines ignored)."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        name = parts[2].rstrip()
        stripped = name.lstrip(" ")
        depth = (len(name) - len(stripped) - 1) // 2
        entries.append(Import(stripped, int(parts[0]), int(parts[1]), max(depth, 0)))
    return entries


def top_imports(entries: Sequence[Import], count: int = 10, max_depth: int = 1) -> list[Import]:
    """The modules that cost most, counting what they import: top level and their direct imports."""
    shallow = [e for e in entries if e.depth <= max_depth]
    return sorted(shallow, key=lambda e: e.cumulative_us, reverse=True)[:count]
