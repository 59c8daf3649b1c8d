"""Timing whole processes, and reading `python -X importtime`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from sf2pg.bench.processes import Run, ServerClock, Summary, parse_importtime, run_timed, top_imports
from sf2pg.bench.report import cpu_floor


def test_a_process_is_timed_to_its_exit_with_its_cpu_and_output(tmp_path: Path):
    run = run_timed(
        [
            sys.executable,
            "-c",
            "import sys, time; t = time.process_time(); print('out'); print('err', file=sys.stderr)",
        ],
        dict(os.environ),
        tmp_path,
    )
    assert run.ok and run.exit_code == 0 and not run.timed_out
    assert run.seconds > 0 and run.cpu_s > 0
    assert "out" in run.output and "err" in run.output


def test_a_failing_process_keeps_its_exit_code_and_the_end_of_its_output(tmp_path: Path):
    run = run_timed(
        [sys.executable, "-c", "import sys; print('x' * 10000); sys.exit(3)"], dict(os.environ), tmp_path, keep=100
    )
    assert not run.ok and run.exit_code == 3 and len(run.output) == 100


def test_a_process_past_its_timeout_is_killed(tmp_path: Path):
    run = run_timed([sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ), tmp_path, timeout=0.5)
    assert run.timed_out and not run.ok and run.seconds < 10


def test_a_summary_counts_only_clean_rounds():
    runs = [Run(2.0, 1.0, 0, ""), Run(1.0, 0.5, 1, "boom"), Run(4.0, 3.0, 0, ""), Run(3.0, 2.0, 0, "")]
    summary = Summary.of(runs)
    assert summary is not None
    assert (summary.best_s, summary.median_s, summary.cpu_s, summary.rounds_s) == (2.0, 3.0, 2.0, [2.0, 4.0, 3.0])
    assert Summary.of([Run(1.0, 1.0, 2, "")]) is None


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       131 |        131 |   _io
import time:       248 |        657 | _frozen_importlib_external
some other line on stderr
import time:       192 |        192 |       _json
import time:       337 |        529 |     json.scanner
import time:       318 |        846 |   json.decoder
import time:       220 |       1414 | json
import time:      5000 |     900000 | dagster
"""


def test_importtime_lines_are_read_with_their_nesting():
    entries = parse_importtime(IMPORTTIME)
    assert [(e.module, e.depth) for e in entries] == [
        ("_io", 1), ("_frozen_importlib_external", 0), ("_json", 3), ("json.scanner", 2),
        ("json.decoder", 1), ("json", 0), ("dagster", 0),
    ]  # fmt: skip
    assert entries[-2].self_us == 220 and entries[-2].cumulative_us == 1414
    assert [e.module for e in top_imports(entries, 3)] == ["dagster", "json", "json.decoder"]
    assert [e.module for e in top_imports(entries, 10, max_depth=0)] == [
        "dagster",
        "json",
        "_frozen_importlib_external",
    ]


def test_importtime_of_a_real_process_parses(tmp_path: Path):
    import subprocess

    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import json"], capture_output=True, text=True)
    assert "json" in [e.module for e in parse_importtime(out.stderr) if e.depth == 0]


def test_the_servers_clock_counts_a_server_process_and_the_children_it_reaped(tmp_path: Path):
    """Like the postmaster, whose backends' CPU shows only once they have exited and been reaped."""
    import subprocess

    server = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', "
         "'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass']); input()"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        clock = ServerClock([server.pid])
        start = clock.now()
        deadline = time.monotonic() + 20
        while clock.now() - start < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert clock.now() - start >= 0.25
    finally:
        server.communicate(b"\n", timeout=20)


def test_a_loads_cpu_floor_is_its_cpu_and_the_servers_over_the_cores():
    s = Summary(best_s=3.0, median_s=3.2, cpu_s=2.0, rounds_s=[3.0], server_cpu_s=3.0)
    assert cpu_floor(s, cores=2) == 2.5
    assert cpu_floor(Summary(1.0, 1.0, 1.0, [1.0]), cores=2) is None  # the caller's own server: unknown
