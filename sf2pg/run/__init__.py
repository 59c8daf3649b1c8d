"""A command's run without Dagster: what to load (``commands``), where it runs (``runners``), progress
events and the ledger's status."""
