"""The read-only baseline: a fresh process that logs in with the connector, reads one query's rows as
Arrow batches and drops them, and nothing else: what any copy of those rows must at least wait for.

The benchmark runs this file's text with ``python -c`` so that nothing of sf2pg is imported, only the
connector (and pyarrow, which ``fetch_arrow_batches`` uses). The session is set up as sf2pg's is (UTC,
scaled numbers as decimals, autocommit), so both decode the same values. Prints the row count.
"""

import os
import sys


def main(query: str) -> int:
    import snowflake.connector

    env = os.environ
    extra = {
        name: env[f"SNOWFLAKE_{name.upper()}"]
        for name in ("host", "protocol", "warehouse", "role")
        if env.get(f"SNOWFLAKE_{name.upper()}")
    }
    if env.get("SNOWFLAKE_PORT"):
        extra["port"] = int(env["SNOWFLAKE_PORT"])
    conn = snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"],
        user=env["SNOWFLAKE_USER"],
        password=env["SNOWFLAKE_PASSWORD"],
        session_parameters={"TIMEZONE": "UTC"},
        arrow_number_to_decimal=True,
        autocommit=True,
        **extra,
    )
    try:
        cur = conn.cursor()
        cur.execute(query)
        return sum(batch.num_rows for batch in cur.fetch_arrow_batches())
    finally:
        conn.close()


if __name__ == "__main__":
    print(main(sys.argv[1]))
