"""The config model and its rules: tables and sources (``model``), reading a file and its problems
(``loading``), Snowflake/PostgreSQL names, the type map, table selection, and the checks that connect
before any row moves (``preflight``)."""
