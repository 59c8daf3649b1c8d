"""sf2pg as a Dagster Component, for ``dg`` projects (registered through ``dagster_dg_cli.registry_modules``).

``dg scaffold defs sf2pg.dagster.components.SnowflakeToPostgresComponent tables`` adds it to a project.
"""

from sf2pg.dagster.components.snowflake_to_postgres import SnowflakeToPostgresComponent

__all__ = ["SnowflakeToPostgresComponent"]
