"""The Dagster layer, wiring only: assets, IO manager, partitions, checks, sensors, the planning job,
resources, retries, the definitions, the dg Component, and the CLI's runs as Dagster jobs (``runner``).
The mechanism each calls lives in the engine packages (config, plan, source, load, reconcile, run)."""
