"""Config parsing and validation: pure logic, no servers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from sf2pg.config import (
    AppConfig,
    ConfigError,
    SourceConfig,
    TableConfig,
    config_path,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[1]

SEED_SHAPED = {
    "parallel_threads": 10,
    "batch_size": 25000,
    "sources": [
        {
            "source_name": "analytics",
            "enabled": True,
            "source_sf_database": "ANALYTICS_DB",
            "source_sf_schema": "PUBLIC",
            "target_pg_database": "analytics",
            "target_pg_schema": "analytics_dev",
            "tables": [
                {
                    "enabled": True,
                    "source": "FACTVISITCALLPERFORMANCE_CR",
                    "target": "factvisitcallperformance_cr",
                    "chunking_columns": ["Visit Updated Timestamp"],
                    "chunking_column_types": ["timestamp"],
                    "uniqueness_columns": ["Visit Id"],
                    "source_watermark": "Visit Updated Timestamp",
                    "target_watermark": "Visit Updated Timestamp",
                    "truncate_onstart": True,
                    "insert_only_mode": True,
                    "parallel_threads": 20,
                    "batch_size": 25000,
                }
            ],
        }
    ],
}


def with_table(**keys) -> dict:
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["tables"][0].update(keys)
    return raw


def problems(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return [str(p) for p in info.value.problems]


def test_the_original_tools_config_is_accepted_unchanged():
    [spec] = parse_config(SEED_SHAPED).tables()
    assert spec.sf_table == "FACTVISITCALLPERFORMANCE_CR" and spec.pg_table == "factvisitcallperformance_cr"
    assert (spec.chunking_column, spec.chunking_type) == ("Visit Updated Timestamp", "timestamp")
    assert spec.uniqueness_columns == ("Visit Id",)
    assert spec.truncate_onstart and spec.insert_only_mode
    assert (spec.parallel_threads, spec.batch_size) == (20, 25000)
    assert spec.config_path == "sources[0].tables[0]"


def test_table_settings_inherit_from_the_source_then_the_top_level_then_defaults():
    raw = with_table(parallel_threads=None, batch_size=None)
    raw["sources"][0]["parallel_threads"] = 6
    [spec] = parse_config(raw).tables()
    assert (spec.parallel_threads, spec.batch_size, spec.rows_per_chunk) == (6, 25000, 1_000_000)


def test_target_defaults_to_lower_case_for_unquoted_source_names():
    raw = with_table(target=None, source_watermark="UPDATED_AT", target_watermark=None)
    [spec] = parse_config(raw).tables()
    assert spec.pg_table == "factvisitcallperformance_cr"
    assert spec.target_watermark == "updated_at"
    [quoted] = parse_config(with_table(target=None, source="Mixed Case")).tables()
    assert quoted.pg_table == "Mixed Case"


def test_integer_is_a_synonym_of_id():
    [spec] = parse_config(with_table(chunking_columns=["ID"], chunking_column_types=["integer"])).tables()
    assert spec.chunking_type == "id"


def test_unknown_keys_suggest_the_closest_name():
    raw = with_table(chunking_column=["x"])
    raw["batchsize"] = 5
    found = problems(raw)
    assert "sources[0].tables[0].chunking_column: unknown key (hint: did you mean `chunking_columns`?)" in found
    assert "batchsize: unknown key (hint: did you mean `batch_size`?)" in found


def test_every_problem_is_reported_with_its_path():
    raw = with_table(parallel_threads="4", chunking_column_types=["week"], source_filter="a > 1; DROP TABLE t")
    del raw["sources"][0]["source_sf_schema"]
    found = problems(raw)
    assert len(found) == 4
    assert any(p.startswith("sources[0].tables[0].parallel_threads: must be a whole number") for p in found)
    assert any(p.startswith("sources[0].tables[0].chunking_column_types[0]: 'week' is not allowed") for p in found)
    assert any(p.startswith("sources[0].tables[0].source_filter: must be a single boolean expression") for p in found)
    assert "sources[0].source_sf_schema: is required" in found


def test_mismatched_chunking_types_name_the_table_path():
    found = problems(with_table(chunking_column_types=["timestamp", "id"]))
    assert found == [
        "sources[0].tables[0].chunking_column_types: has 2 entries for 1 chunking_columns "
        "(hint: give one type (timestamp, date, id) per chunking column)"
    ]


def test_two_tables_loading_the_same_target_are_rejected():
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["tables"].append({"source": "OTHER", "target": "factvisitcallperformance_cr"})
    [found] = problems(raw)
    assert found.startswith("sources[0].tables[1].target: PostgreSQL table analytics.analytics_dev")
    assert "sources[0].tables[0]" in found


@pytest.mark.parametrize("bad", ["x > 1; DELETE FROM t", "x > 1 -- sneaky", "x /* y */ > 1", "  "])
def test_a_source_filter_must_be_one_expression(bad: str):
    [found] = problems(with_table(source_filter=bad, truncate_onstart=False))
    assert found.startswith("sources[0].tables[0].source_filter:")


def test_truncate_with_a_filter_is_refused():
    [found] = problems(with_table(source_filter="x > 1"))
    assert found.startswith("sources[0].tables[0].truncate_onstart: cannot be combined with source_filter")


def test_source_names_must_work_as_asset_keys():
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["source_name"] = "my source"
    [found] = problems(raw)
    assert found.startswith("sources[0].source_name: 'my source' must start with a letter")


def test_an_unknown_source_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean `analytics`"):
        parse_config(SEED_SHAPED).source("analytic")


def test_config_path_prefers_the_flag_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.setenv("SF2PG_CONFIG", "/env/config.json")
    assert config_path("/flag.json") == Path("/flag.json")
    assert config_path(None) == Path("/env/config.json")
    monkeypatch.delenv("SF2PG_CONFIG")
    assert config_path(None) == Path("config/config.json")


def test_invalid_json_reports_line_and_column(tmp_path: Path):
    path = tmp_path / "c.json"
    path.write_text('{\n  "sources": [,]\n}')
    with pytest.raises(ConfigError, match="line 2, column 15"):
        load_config(path)


def test_a_top_level_that_is_not_an_object_is_rejected():
    assert problems([1, 2]) == ["(top level): must be a JSON object (hint: see config/example.full.json)"]


def test_shipped_configs_validate():
    assert load_config(REPO / "config" / "config.json").tables()
    example = load_config(REPO / "config" / "example.full.json")
    raw = json.loads((REPO / "config" / "example.full.json").read_text())
    used = set(raw) | set(raw["sources"][0]) | set(raw["sources"][0]["tables"][0])
    every = set(AppConfig.model_fields) | set(SourceConfig.model_fields) | set(TableConfig.model_fields)
    assert every <= used, f"example.full.json misses {every - used}"
    assert example.tables(enabled_only=False)


def test_the_configuration_doc_describes_every_key():
    doc = (REPO / "docs" / "CONFIGURATION.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", doc, flags=re.M))
    every = set(AppConfig.model_fields) | set(SourceConfig.model_fields) | set(TableConfig.model_fields)
    assert every <= documented, f"docs/CONFIGURATION.md misses {every - documented}"
