"""sf2pg's Dagster Component, registered for ``dg`` through the ``dagster_dg_cli.registry_modules`` entry point."""
