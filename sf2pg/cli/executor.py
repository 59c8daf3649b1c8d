"""Where the CLI's commands run: as Dagster jobs on the ``DAGSTER_HOME`` instance when one is configured,
else directly in this process (no Dagster import, no throwaway instance)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sf2pg.run.runners import Executor


def executor_from_env() -> Executor | None:
    """The Dagster layer's executor on the DAGSTER_HOME instance; None without one: the engine runs directly."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    from dagster import DagsterInstance

    from sf2pg.dagster.runner import DagsterExecutor

    return DagsterExecutor(DagsterInstance.get())
