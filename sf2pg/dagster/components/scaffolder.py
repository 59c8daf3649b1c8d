"""What ``dg scaffold defs sf2pg.dagster.components.SnowflakeToPostgresComponent PATH`` writes.

By default a ``defs.yaml`` that points at a starter ``sf2pg.json`` beside it (the QUICKSTART's table,
to edit). ``--json-params '{"config_path": "..."}'`` points at an existing config file instead and
writes none; ``--json-params '{"inline": true}'`` writes the starter tables into ``defs.yaml``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dagster import Scaffolder, ScaffoldRequest, scaffold_component
from pydantic import BaseModel, Field

TEMPLATE = Path(__file__).parent / "templates" / "sf2pg.json"
STARTER_NAME = "sf2pg.json"


class ScaffoldParams(BaseModel):
    config_path: str | None = Field(
        default=None, description="an existing sf2pg config file to point at (no starter file is written)"
    )
    inline: bool = Field(default=False, description="write the starter tables into defs.yaml, not a config file")


class SnowflakeToPostgresScaffolder(Scaffolder[ScaffoldParams]):
    @classmethod
    def get_scaffold_params(cls) -> type[ScaffoldParams]:
        return ScaffoldParams

    def scaffold(self, request: ScaffoldRequest[ScaffoldParams]) -> None:
        params = request.params or ScaffoldParams()
        if params.inline:
            scaffold_component(request, {"config": json.loads(TEMPLATE.read_text())})
            return
        if params.config_path is None:
            request.target_path.mkdir(parents=True, exist_ok=True)
            shutil.copy(TEMPLATE, request.target_path / STARTER_NAME)
        scaffold_component(request, {"config_path": params.config_path or STARTER_NAME})
