"""The config model and its rules: tables and sources (``model``), Snowflake/PostgreSQL names, the type map,
table selection, and the checks that connect before any row moves (``preflight``)."""
