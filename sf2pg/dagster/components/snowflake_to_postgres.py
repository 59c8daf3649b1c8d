"""The sf2pg Component: the same definitions as the ``sf2pg.definitions`` code location, from ``defs.yaml``.

A dg project gets sf2pg's table assets, partitions, checks, watermark sensors, planning job,
resources and executor from one of these, configured either by a config file (``config_path``) or by
the same JSON shape written inline (``config``). Either is validated by ``sf2pg.config.loading``, so a mistake
gets the same one-line-per-problem message, naming the file (or ``defs.yaml``) and the path inside it.
Connections and secrets stay in the environment, as for the code location.
"""

# no `from __future__ import annotations`: Resolvable reads the field types at run time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from dagster import Component, ComponentLoadContext, Definitions, Resolvable, Resolver, scaffold_with

from sf2pg.config.loading import load_config, parse_config
from sf2pg.config.model import AppConfig, ConfigError, ConfigProblem
from sf2pg.dagster.components.scaffolder import SnowflakeToPostgresScaffolder
from sf2pg.dagster.definitions import build_definitions


@scaffold_with(SnowflakeToPostgresScaffolder)
@dataclass
class SnowflakeToPostgresComponent(Component, Resolvable):
    """Snowflake tables copied into PostgreSQL and kept in sync: one partitioned asset per table.

    Scaffold with ``dg scaffold defs sf2pg.dagster.components.SnowflakeToPostgresComponent PATH``. Set either
    ``config_path`` (an sf2pg config file, relative to this defs.yaml) or ``config`` (the same JSON
    shape, inline). Connections come from the environment: ``SNOWFLAKE_*``, ``PG*``.

    The definitions hold sf2pg's resources (``snowflake``, ``postgres``, ``sf2pg_io_manager``), the
    ``plan_chunks`` job and the in-process executor, so a project holds one of these components (one
    config may list any number of sources).
    """

    config_path: Annotated[
        str | None,
        Resolver.default(
            description="An sf2pg config file (docs/CONFIGURATION.md), relative to this defs.yaml's folder.",
            examples=["sf2pg.json"],
        ),
    ] = None
    config: Annotated[
        dict[str, Any] | None,
        Resolver.default(
            description="The config inline, in the same shape as an sf2pg config file (sources, tables, ...).",
        ),
    ] = None

    def load_config(self, context: ComponentLoadContext) -> AppConfig:
        """The validated config; a ``ConfigError`` names ``defs.yaml`` or the config file and the path inside."""
        defs_yaml = context.path / "defs.yaml"
        if (self.config_path is None) == (self.config is None):
            raise ConfigError(
                str(defs_yaml),
                [
                    ConfigProblem(
                        "attributes",
                        "set exactly one of config_path (an sf2pg config file) and config (the tables inline)",
                    )
                ],
            )
        if self.config is not None:
            return parse_config(self.config, f"{defs_yaml} (attributes.config)")
        path = Path(self.config_path)  # type: ignore[arg-type]
        path = path if path.is_absolute() else context.path / path
        if not path.exists():
            raise ConfigError(
                str(defs_yaml),
                [
                    ConfigProblem(
                        "attributes.config_path", f"no config file at {path}", "the path is relative to defs.yaml"
                    )
                ],
            )
        return load_config(path)

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        return build_definitions(self.load_config(context))
