"""dlt as a peer: a full load of one Snowflake table into PostgreSQL with the ``sql_database`` source
over snowflake-sqlalchemy and the pyarrow backend, dlt's fast path, in one fresh process.

The benchmark runs this file's text with the peers' virtualenv's ``python -c`` (dlt is not in sf2pg's
environment). Two settings are not dlt's defaults, both needed for an exact copy of this table:

- VARIANT columns are read as text. snowflake-sqlalchemy hands them over as parsed JSON, the pyarrow
  backend turns those into Arrow structs, and dlt's CSV loader then fails ("Unsupported Type:
  struct"); as text they load, and the content check compares them as JSON.
- The ``insert_values`` loader instead of CSV ``COPY``: dlt's CSV ``COPY`` into PostgreSQL sets
  ``FORCE_NULL`` on every nullable column, so empty strings arrive as NULL (on 100,000 rows of this
  table: its 3,036 empty strings), and a copy that differs is not timed.

Arguments: target database, dataset (schema), pipelines folder, Snowflake database, schema, table.
"""

import os
import sys
from urllib.parse import quote


def _variant_as_text(sql_type):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    if isinstance(sql_type, sa.JSON) or type(sql_type).__name__ in ("VARIANT", "OBJECT", "ARRAY"):
        return sa.Text()
    return sql_type


def main(database: str, dataset: str, pipelines_dir: str, sf_database: str, sf_schema: str, sf_table: str) -> int:
    import dlt
    import sqlalchemy as sa
    from dlt.sources.sql_database import sql_database

    env = os.environ
    connect_args: dict = {"session_parameters": {"TIMEZONE": "UTC"}}
    for name in ("host", "protocol", "warehouse", "role"):
        if env.get(f"SNOWFLAKE_{name.upper()}"):
            connect_args[name] = env[f"SNOWFLAKE_{name.upper()}"]
    if env.get("SNOWFLAKE_PORT"):
        connect_args["port"] = int(env["SNOWFLAKE_PORT"])
    user, password = quote(env["SNOWFLAKE_USER"], safe=""), quote(env["SNOWFLAKE_PASSWORD"], safe="")
    engine = sa.create_engine(
        f"snowflake://{user}:{password}@{env['SNOWFLAKE_ACCOUNT']}/{sf_database}/{sf_schema}", connect_args=connect_args
    )
    # snowflake-sqlalchemy reports Snowflake's upper-case names in lower case
    source = sql_database(
        credentials=engine,
        schema=sf_schema.lower(),
        table_names=[sf_table.lower()],
        backend="pyarrow",
        type_adapter_callback=_variant_as_text,
    )
    pg_user = quote(env.get("PGUSER", "postgres"), safe="")
    pg_password = quote(env.get("PGPASSWORD") or "unused", safe="")  # dlt wants one; a trust server ignores it
    target = (
        f"postgresql://{pg_user}:{pg_password}@{env.get('PGHOST', '127.0.0.1')}:{env.get('PGPORT', '5432')}/{database}"
    )
    if env.get("PGSSLMODE"):
        target += f"?sslmode={env['PGSSLMODE']}"
    pipeline = dlt.pipeline(
        pipeline_name="sf2pg_bench",
        destination=dlt.destinations.postgres(credentials=target),
        dataset_name=dataset,
        pipelines_dir=pipelines_dir,
    )
    info = pipeline.run(source, write_disposition="replace", loader_file_format="insert_values")
    info.raise_on_failed_jobs()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:7]))
