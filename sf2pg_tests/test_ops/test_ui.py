"""The Dagster UI, tried in a real browser: `dagster dev` on a loaded table, driven by headless Chromium.

Uses Debian's ``chromium`` package through Python Playwright (``executable_path``, no browser
download); skips when either is missing. Screenshots are saved under the test's tmp_path.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from sf2pg.config.loading import parse_config
from sf2pg.dagster.assets import build_table_asset
from sf2pg.dagster.checks import build_table_checks
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg.dagster.runner import plan_tables
from sf2pg.reconcile.verdicts import chunk_check_after_load
from sf2pg_tests.harness import World, dagster_deployment, stop_process_group

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian's chromium package; .ci/run installs it where it can)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed (the [dev] extra)")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 90_000  # the first page waits for the code location to load on a busy machine


def seed(world: World, table: str, rows: int) -> None:
    world.sf_exec(
        f'CREATE TABLE "{world.sf_database}"."PUBLIC"."{table}" (ID NUMBER(18,0), NAME VARCHAR)',
        f'INSERT INTO "{world.sf_database}"."PUBLIC"."{table}" SELECT SEQ4(), \'n\' || SEQ4() '
        f"FROM TABLE(GENERATOR(ROWCOUNT => {rows}))",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_session_with_default_sigint() -> None:
    """In the child: a process group of its own, and Ctrl-C handling even if our shell ignored SIGINT."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def dagster_dev(work: Path) -> Iterator[str]:
    """``dagster dev -w workspace.yaml`` (webserver, daemon, code server) in its own process group."""
    port = free_port()
    log_path = work / "dagster_dev.log"
    with log_path.open("w") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_own_session_with_default_sigint,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert dev.poll() is None, log_path.read_text()[-3000:]
                try:
                    urllib.request.urlopen(f"{url}/server_info", timeout=2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(0.5)
            yield url
        finally:
            # Ctrl-C, as a user stops it: dagster dev then shuts its webserver, daemon and code server down.
            dev.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                dev.wait(30)
            stop_process_group(dev.pid)  # a backstop for anything of the group still running
            dev.wait(10)


def test_the_dagster_ui_shows_the_table_assets_and_their_partition_statuses(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seed(world, "ORDERS", 2000)
    seed(world, "CUSTOMERS", 1000)
    table = {"chunking_columns": ["ID"], "chunking_column_types": ["id"], "uniqueness_columns": ["ID"]}
    raw = world.config([{"source": "ORDERS", **table}, {"source": "CUSTOMERS", **table}])
    with dagster_deployment(world, tmp_path, raw, monkeypatch) as work:
        config = parse_config(raw)
        orders, customers = config.tables()
        check, _ = chunk_check_after_load(orders)  # chunk_rows: loads run it (checks_after_load "rows")
        with DagsterInstance.get() as instance:
            plans = plan_tables([orders, customers], instance)
            assert (len(plans[orders.name].chunks), len(plans[customers.name].chunks)) == (4, 2)
            # orders: three of its four chunks loaded in one ranged run; customers: planned, not loaded
            keys = instance.get_dynamic_partitions(partitions_name(orders))
            result = materialize(
                [build_table_asset(orders), *build_table_checks(orders)],
                instance=instance,
                resources=build_resources(resolve_env=True),
                tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[2]},
            )
            assert result.success
        [(loaded,)] = world.pg_query("SELECT count(*) FROM tgt.orders")
        assert loaded == 1500

        with dagster_dev(work) as url, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(UI_TIMEOUT_MS)
                # A first visit shows a 'Join the Dagster community' dialog over the page: skip it when it shows.
                page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())

                # The asset graph: both table assets with their partition counts.
                page.goto(f"{url}/asset-groups")
                sync_api.expect(page.get_by_text("4 partitions")).to_be_visible()
                sync_api.expect(page.get_by_text("2 partitions")).to_be_visible()
                sync_api.expect(page.get_by_text("75% filled")).to_be_visible()  # orders: 3 of 4
                sync_api.expect(page.get_by_text("0% filled", exact=True)).to_be_visible()  # customers
                page.screenshot(path=tmp_path / "asset_graph.png")
                graph = page.inner_text("body")
                assert "orders" in graph and "customers" in graph, graph[:2000]

                # One table's partitions page: three chunks materialized, one missing.
                page.goto(f"{url}/assets/src/orders?view=partitions")
                sync_api.expect(page.get_by_text("Materialized (3)")).to_be_visible()
                sync_api.expect(page.get_by_text("Missing (1)")).to_be_visible()
                sync_api.expect(page.get_by_text("Failed (0)")).to_be_visible()
                for key in keys:
                    sync_api.expect(page.get_by_text(key, exact=True).first).to_be_visible()
                page.get_by_text(keys[0], exact=True).first.click()
                sync_api.expect(page.get_by_text("rows_per_s", exact=True)).to_be_visible()
                page.screenshot(path=tmp_path / "orders_partitions.png")

                # The per-chunk check a load runs, partitioned like its asset: its result on each chunk
                # loaded, none on the chunk not loaded (row_count, over the whole table, fails meanwhile).
                page.goto(f"{url}/assets/src/orders?view=checks")
                page.get_by_title(check, exact=True).click()  # the checks list (its text has a hidden copy too)
                sync_api.expect(page).to_have_url(re.compile(rf"[?&]checkDetail={check}\b"))
                # the asset's own Partitions tab comes first, then the selected check's
                page.get_by_role("tab", name="Partitions", exact=True).last.click()
                sync_api.expect(page.get_by_text("Passed (3)", exact=True)).to_be_visible()
                sync_api.expect(page.get_by_text("Missing (1)", exact=True)).to_be_visible()
                sync_api.expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
                sync_api.expect(page.get_by_text("Execution Failed (0)", exact=True)).to_be_visible()
                # each partition in the list: its key truncated in the middle, the full key as its title;
                # the first element with that title is the key's chip in the partition selection above
                page.get_by_title(keys[3], exact=True).last.click()
                sync_api.expect(
                    page.get_by_text("This partition has not been executed for this asset check")
                ).to_be_visible()
                page.get_by_title(keys[0], exact=True).last.click()
                sync_api.expect(page.get_by_text("the chunk matches its source", exact=True)).to_be_visible()
                page.screenshot(path=tmp_path / "check_partitions.png")
            finally:
                browser.close()
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert shots == ["asset_graph.png", "check_partitions.png", "orders_partitions.png"]
    print(f"screenshots in {tmp_path}")
