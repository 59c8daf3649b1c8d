"""The Dagster code location (``workspace.yaml``, ``-m sf2pg.definitions``): one asset per enabled table.

It stays at the top of the package, outside ``sf2pg/dagster/``, because deployments name it.

The config comes from SF2PG_CONFIG, else config/config.json; an invalid config fails the load with
one line per problem, shown in the Dagster UI.
"""

from sf2pg.config.loading import load_config
from sf2pg.dagster.definitions import build_definitions

defs = build_definitions(load_config())
