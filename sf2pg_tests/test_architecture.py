"""The layout is the architecture: the engine (config, plan, source, load, reconcile, run) knows nothing of
Dagster; only ``sf2pg.dagster`` (and the CLI, when ``DAGSTER_HOME`` asks for it) imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sf2pg"
ENGINE = ["config", "plan", "source", "load", "reconcile", "run"]
ENGINE_MODULES = ["errors.py"]  # shared by every engine stage


def _engine_files() -> list[Path]:
    files = [PACKAGE / name for name in ENGINE_MODULES]
    for package in ENGINE:
        files += sorted((PACKAGE / package).rglob("*.py"))
    return files


def _is_dagster(module: str) -> bool:
    top = module.split(".")[0]
    return top == "dagster" or top.startswith("dagster_") or module.startswith("sf2pg.dagster")


def _dagster_imports(path: Path) -> list[str]:
    """Every import of dagster, a dagster_* package or sf2pg's Dagster layer, anywhere in the module
    (at its top, in a function, under TYPE_CHECKING)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names if _is_dagster(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_dagster(node.module):
            found.append(f"{path.name}:{node.lineno} from {node.module}")
    return found


def test_every_engine_package_exists_and_holds_modules():
    for package in ENGINE:
        assert (PACKAGE / package / "__init__.py").exists(), package
        assert len(list((PACKAGE / package).glob("*.py"))) > 1, package


def test_no_engine_module_imports_dagster_anywhere():
    offending = [hit for path in _engine_files() for hit in _dagster_imports(path)]
    assert not offending, "the engine must not import Dagster (move the code to sf2pg/dagster/):\n" + "\n".join(
        offending
    )


def test_the_boundary_check_sees_an_import_inside_a_function(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from dagster import DagsterInstance\n    import dagster_postgres\n")
    assert len(_dagster_imports(module)) == 2


def test_importing_the_engine_loads_no_dagster():
    code = (
        "import sys\n"
        "import sf2pg.config.model, sf2pg.config.preflight, sf2pg.plan.planning, sf2pg.plan.incremental\n"
        "import sf2pg.source.extract, sf2pg.load.table, sf2pg.load.ledger, sf2pg.reconcile.counts\n"
        "import sf2pg.run.commands, sf2pg.run.runners, sf2pg.run.status\n"
        "import sf2pg.cli.main\n"
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith(('dagster.', 'dagster_'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout
