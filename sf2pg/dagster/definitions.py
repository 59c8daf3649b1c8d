"""Build the Dagster definitions for a config: the one place both the ``sf2pg.definitions`` code
location and the dg Component (``sf2pg.dagster.components``) get them from."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import BetaWarning, Definitions, PreviewWarning, in_process_executor

from sf2pg.config.model import AppConfig
from sf2pg.dagster.assets import IO_MANAGER_KEY, build_table_asset
from sf2pg.dagster.checks import build_table_checks
from sf2pg.dagster.io_manager import PostgresCopyIOManager
from sf2pg.dagster.plan_job import build_plan_job
from sf2pg.dagster.resources import PostgresResource, snowflake_resource
from sf2pg.dagster.sensors import build_watermark_sensor


def build_resources(resolve_env: bool = False) -> dict[str, Any]:
    """The one place resources are chosen. ``resolve_env`` reads secrets now (in-process CLI runs)."""
    postgres = PostgresResource()
    return {
        "snowflake": snowflake_resource(resolve=resolve_env),
        "postgres": postgres,
        IO_MANAGER_KEY: PostgresCopyIOManager(postgres=postgres),
    }


@contextmanager
def _without_sf2pg_notices() -> Iterator[None]:
    """Hide the two notices sf2pg's own definitions raise, which a user can do nothing about: backfill
    policies are beta and partitioned asset checks are preview (the only way to get a single-run
    backfill and a check result per chunk). A user's own code, loaded elsewhere, still shows them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Parameter `backfill_policy` .* is currently in beta", BetaWarning)
        warnings.filterwarnings("ignore", r"Specifying a partitions_def on an AssetCheckSpec", PreviewWarning)
        yield


def build_definitions(config: AppConfig, resolve_env: bool = False) -> Definitions:
    """Every enabled table as an asset, plus the planning job, for one config."""
    with _without_sf2pg_notices():
        return _definitions(config, resolve_env)


def _definitions(config: AppConfig, resolve_env: bool) -> Definitions:
    specs = config.tables()
    sensors = [
        build_watermark_sensor(
            source.source_name,
            [s for s in specs if s.source_name == source.source_name],
            source.sensor_interval_seconds,
            source.sensor_running,
        )
        for source in config.sources
        if source.enabled
    ]
    return Definitions(
        assets=[build_table_asset(spec) for spec in specs],
        sensors=[s for s in sensors if s is not None],
        asset_checks=[check for spec in specs for check in build_table_checks(spec, spec.blocking_checks)],
        jobs=[build_plan_job(specs)],
        resources=build_resources(resolve_env),
        # A run's steps (the table load, then its checks) run one after another in the run worker:
        # a process per step would cost a fresh interpreter and instance each (about 3 s apiece),
        # and a load's parallelism is its own threads. Retries: see retries.py.
        executor=in_process_executor,
    )
