"""Config parsing and validation: pure logic, no servers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from sf2pg.config.loading import config_path, load_config, parse_config
from sf2pg.config.model import DEFAULT_CONFIG_PATH, AppConfig, ConfigError, SourceConfig, TableConfig

REPO = Path(__file__).resolve().parents[1]

# The configuration example from the original tool's README, key for key.
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


def with_table(**keys: object) -> dict:
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["tables"][0].update(keys)
    return raw


def second_source(name: str = "finance", **keys: object) -> dict:
    return {
        "source_name": name,
        "source_sf_database": "FINANCE_DB",
        "source_sf_schema": "REPORTING",
        "target_pg_database": "finance",
        "target_pg_schema": "reporting",
        **keys,
    }


def problems(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return [str(p) for p in info.value.problems]


# ---- accepted shapes and resolved values ----------------------------------------------------------


def test_seed_shaped_config_is_accepted():
    [spec] = parse_config(SEED_SHAPED).tables()
    assert (spec.sf_database, spec.sf_schema, spec.sf_table) == (
        "ANALYTICS_DB",
        "PUBLIC",
        "FACTVISITCALLPERFORMANCE_CR",
    )
    assert (spec.pg_database, spec.pg_schema, spec.pg_table) == (
        "analytics",
        "analytics_dev",
        "factvisitcallperformance_cr",
    )
    assert (spec.chunking_column, spec.chunking_type) == ("Visit Updated Timestamp", "timestamp")
    assert spec.uniqueness_columns == ("Visit Id",)
    assert (spec.source_watermark, spec.target_watermark) == ("Visit Updated Timestamp", "Visit Updated Timestamp")
    assert spec.truncate_onstart and spec.insert_only_mode
    assert (spec.parallel_threads, spec.batch_size) == (20, 25000)
    assert spec.nul_bytes == "fail" and spec.source_filter is None
    assert spec.config_path == "sources[0].tables[0]"
    assert spec.asset_key_path == ["analytics", "factvisitcallperformance_cr"]
    assert spec.name == "analytics.factvisitcallperformance_cr"


def test_table_inherits_threads_from_source_then_top_level():
    raw = with_table(parallel_threads=None, batch_size=None)
    raw["sources"][0]["parallel_threads"] = 6
    [spec] = parse_config(raw).tables()
    # rows_per_chunk unset: the planner sizes chunks from the table's row count (planning.auto_chunk_rows)
    assert (spec.parallel_threads, spec.batch_size, spec.rows_per_chunk) == (6, 25000, None)

    del raw["sources"][0]["parallel_threads"]
    [spec] = parse_config(raw).tables()
    assert spec.parallel_threads == 10


def test_defaults_apply_when_no_level_sets_a_value():
    raw = copy.deepcopy(SEED_SHAPED)
    del raw["parallel_threads"], raw["batch_size"]
    raw["sources"][0]["tables"] = [{"source": "T"}]
    [spec] = parse_config(raw).tables()
    assert (spec.parallel_threads, spec.batch_size, spec.rows_per_chunk) == (
        4,
        50_000,
        None,
    )  # None: sized from the table (auto)
    assert (spec.chunking_column, spec.chunking_type, spec.uniqueness_columns) == (None, None, ())
    assert not spec.truncate_onstart and not spec.insert_only_mode


def test_null_means_not_set():
    raw = with_table(enabled=None, truncate_onstart=None, source_watermark=None, target_watermark=None)
    raw["sources"][0]["tables"][0]["nul_bytes"] = None
    [spec] = parse_config(raw).tables()
    assert spec.target_watermark is None and spec.nul_bytes == "fail" and not spec.truncate_onstart


def test_target_defaults_to_lower_case_for_unquoted_source():
    raw = with_table(target=None, source_watermark="UPDATED_AT", target_watermark=None)
    [spec] = parse_config(raw).tables()
    assert spec.pg_table == "factvisitcallperformance_cr"
    assert spec.target_watermark == "updated_at"
    [quoted] = parse_config(with_table(target=None, source="Mixed Case")).tables()
    assert quoted.pg_table == "Mixed Case"


def test_integer_chunking_type_is_read_as_id_and_extra_columns_are_kept():
    raw = with_table(chunking_columns=["ID", "TS"], chunking_column_types=["integer", "timestamp"])
    [spec] = parse_config(raw).tables()
    assert (spec.chunking_column, spec.chunking_type, spec.extra_chunking_columns) == ("ID", "id", ("TS",))


def test_tables_skip_disabled_sources_and_tables_unless_asked():
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["tables"].append({"source": "OLD", "enabled": False})
    raw["sources"].append(second_source(enabled=False, tables=[{"source": "LEDGER"}]))
    config = parse_config(raw)
    assert [t.sf_table for t in config.tables()] == ["FACTVISITCALLPERFORMANCE_CR"]
    everything = config.tables(enabled_only=False)
    assert [t.config_path for t in everything] == [
        "sources[0].tables[0]",
        "sources[0].tables[1]",
        "sources[1].tables[0]",
    ]


def test_unknown_source_name_suggests_the_closest():
    config = parse_config(SEED_SHAPED, "my.json")
    assert config.source("analytics").source_sf_database == "ANALYTICS_DB"
    with pytest.raises(ConfigError) as info:
        config.source("analytic")
    assert (
        str(info.value) == 'my.json: 1 problem\n  sources: no source named "analytic" (hint: did you mean `analytics`?)'
    )


# ---- problems and their messages --------------------------------------------------------------


def test_unknown_key_suggests_closest_name():
    raw = with_table(chunking_column=["x"])
    raw["batchsize"] = 5
    found = problems(raw)
    assert "sources[0].tables[0].chunking_column: unknown key (hint: did you mean `chunking_columns`?)" in found
    assert "batchsize: unknown key (hint: did you mean `batch_size`?)" in found


def test_a_key_at_the_wrong_level_says_where_it_belongs():
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["uniqueness_columns"] = ["ID"]
    assert problems(raw) == [
        "sources[0].uniqueness_columns: unknown key (hint: `uniqueness_columns` belongs in a table, not in a source)"
    ]


def test_every_problem_is_reported_with_its_path():
    raw = with_table(parallel_threads="4", chunking_column_types=["week"], source_filter="a > 1; DROP TABLE t")
    del raw["sources"][0]["source_sf_schema"]
    raw["sources"].append(second_source("analytics", tables=[{"source": "T", "enabled": 1}]))
    found = problems(raw)
    assert found == [
        "sources[0].source_sf_schema: is required (hint: the Snowflake schema to read from)",
        "sources[0].tables[0].chunking_column_types[0]: \"week\" is not allowed (hint: use one of 'timestamp', 'date', 'id' or 'integer')",
        'sources[0].tables[0].parallel_threads: must be a whole number, found "4"',
        "sources[0].tables[0].source_filter: must be a single boolean expression; `;` is not allowed "
        '(hint: write only the condition, e.g. "ID > 1000000", with no statement separators or comments)',
        "sources[0].tables[0].truncate_onstart: cannot be combined with source_filter: truncating drops rows "
        "the filter never reloads (hint: set truncate_onstart to false, or remove source_filter)",
        'sources[1].source_name: "analytics" is already used by sources[0] '
        "(hint: source names become Dagster asset key prefixes and must be unique)",
        "sources[1].tables[0].enabled: must be true or false, found 1",
    ]


def test_error_text_counts_problems_and_lists_one_per_line():
    raw = with_table(batch_size=5, nul_bytes="drop")
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "config/config.json")
    assert str(info.value).splitlines() == [
        "config/config.json: 2 problems",
        "  sources[0].tables[0].batch_size: must be between 1000 and 1000000, found 5",
        "  sources[0].tables[0].nul_bytes: \"drop\" is not allowed (hint: use one of 'fail' or 'strip')",
    ]


def test_echoed_values_are_cut_short():
    [found] = problems(with_table(batch_size="x" * 500))
    assert found.startswith('sources[0].tables[0].batch_size: must be a whole number, found "xxx')
    echoed = found.split("found ", 1)[1]
    assert len(echoed) == 60 and echoed.endswith("...")


def test_mismatched_chunking_types_name_the_table_path():
    found = problems(with_table(chunking_column_types=["timestamp", "id"]))
    assert found == [
        "sources[0].tables[0].chunking_column_types: has 2 entries for 1 chunking_columns "
        "(hint: give one type per chunking column, each one of timestamp, date, id, integer)"
    ]


def test_column_types_and_the_integer_policy_resolve_with_inheritance():
    raw = with_table(column_types={"Visit Id": "BIGINT", "Notes": "varchar(200)"})
    raw["wide_integers"] = "bigint"
    raw["sources"][0]["unsafe_schema_changes"] = "ignore"
    [spec] = parse_config(raw).tables()
    assert spec.column_types == (("Visit Id", "BIGINT"), ("Notes", "varchar(200)"))
    assert (spec.wide_integers, spec.unsafe_schema_changes) == ("bigint", "ignore")
    raw["sources"][0]["tables"][0]["wide_integers"] = "bigint_when_fits"
    assert parse_config(raw).tables()[0].wide_integers == "bigint_when_fits"
    [default] = parse_config(SEED_SHAPED).tables()
    assert (default.column_types, default.wide_integers, default.unsafe_schema_changes) == ((), "numeric", "fail")


def test_a_column_type_sf2pg_cannot_load_into_names_its_column():
    found = problems(with_table(column_types={"Notes": "varchr(20)", "Big": "numeric(5,9)"}, wide_integers="int"))
    assert found[0].startswith('sources[0].tables[0].wide_integers: "int" is not allowed')
    assert found[1].startswith(
        "sources[0].tables[0].column_types.Notes: 'varchr(20)' is not a type sf2pg can load into (one of smallint, "
    )
    assert found[2].startswith("sources[0].tables[0].column_types.Big: numeric(p,s) needs 1 <= p <= 1000")


def test_names_postgresql_would_cut_are_refused():
    raw = with_table(target="t" * 64)
    raw["sources"][0]["target_pg_schema"] = "ü" * 32  # 64 bytes
    found = problems(raw)
    assert [f.split(":")[0] for f in found] == ["sources[0].target_pg_schema", "sources[0].tables[0].target"]
    assert "is 64 bytes; PostgreSQL names hold at most 63" in found[0]


def test_a_key_column_named_twice_or_a_name_holding_nul_is_refused():
    found = problems(with_table(uniqueness_columns=["ID", "Day", "id"], target="t\x00"))
    assert found == [
        "sources[0].tables[0].target: holds a NUL character (\\u0000) (hint: PostgreSQL names cannot hold one)",
        'sources[0].tables[0].uniqueness_columns[2]: "id" repeats uniqueness_columns[0] (hint: name each key '
        "column once (names differing only in case are one PostgreSQL column))",
    ]


def test_delete_detection_and_insert_only_mode_are_refused_together():
    [found] = problems(with_table(uniqueness_columns=["ID"], delete_detection="keys", insert_only_mode=True))
    assert found.startswith("sources[0].tables[0].delete_detection: cannot be combined with insert_only_mode")


def test_same_target_table_twice_is_rejected():
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["tables"].append({"source": "OTHER", "target": "factvisitcallperformance_cr"})
    [found] = problems(raw)
    assert found.startswith(
        "sources[0].tables[1].target: PostgreSQL table analytics.analytics_dev.factvisitcallperformance_cr "
        "is already the target of sources[0].tables[0]"
    )


def test_same_target_across_sources_counts_but_disabled_tables_do_not():
    raw = copy.deepcopy(SEED_SHAPED)
    clash = second_source(target_pg_database="analytics", target_pg_schema="analytics_dev")
    clash["tables"] = [{"source": "FACTVISITCALLPERFORMANCE_CR"}]
    raw["sources"].append(clash)
    [found] = problems(raw)
    assert found.startswith("sources[1].tables[0].target:") and "sources[0].tables[0]" in found

    clash["tables"][0]["enabled"] = False
    assert parse_config(raw)


def test_duplicate_source_names_are_rejected():
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"].append(second_source("analytics"))
    [found] = problems(raw)
    assert found.startswith('sources[1].source_name: "analytics" is already used by sources[0]')


def test_source_names_must_work_as_asset_keys():
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["source_name"] = "my source"
    [found] = problems(raw)
    assert found.startswith('sources[0].source_name: "my source" must start with a letter')


@pytest.mark.parametrize(
    "bad",
    [
        "x > 1; DELETE FROM t",
        "x > 1 -- sneaky",
        "x /* y */ > 1",
        "  ",
        "1=1) OR (1=1",
        "ID",
        "ID + 1",
        "'yes'",
        "DELETE FROM t",
        "x > 1;",
    ],
)
def test_a_source_filter_that_is_not_one_boolean_expression_is_rejected(bad: str):
    [found] = problems(with_table(source_filter=bad, truncate_onstart=False))
    assert found.startswith("sources[0].tables[0].source_filter:")
    assert "(hint: " in found


@pytest.mark.parametrize(
    "good",
    [
        "ID > 1000000",
        "NOTES LIKE '%--%' OR NOTES = 'a;b'",
        '"Visit Id" BETWEEN 1 AND 5 AND NOT IS_TEST',
        "(REGION IN ('EU', 'US'))",
        "STARTSWITH(NAME, 'A')",
        "ID IN (SELECT ID FROM KEEP)",
        "DELETED_AT IS NULL",
    ],
)
def test_a_boolean_source_filter_is_kept_as_written(good: str):
    [spec] = parse_config(with_table(source_filter=good, truncate_onstart=False)).tables()
    assert spec.source_filter == good


def test_truncate_with_a_filter_is_refused():
    [found] = problems(with_table(source_filter="x > 1"))
    assert found.startswith("sources[0].tables[0].truncate_onstart: cannot be combined with source_filter")
    assert "truncating drops rows the filter never reloads" in found


def test_target_watermark_needs_a_source_watermark():
    [found] = problems(with_table(source_watermark=None))
    assert found.startswith("sources[0].tables[0].target_watermark: is set without source_watermark")


def test_incremental_sync_without_a_key_is_refused_unless_append_only_which_may_look_back():
    keyless = with_table(uniqueness_columns=[], truncate_onstart=False, insert_only_mode=False)
    [found] = problems(keyless)
    assert found.startswith("sources[0].tables[0].source_watermark: incremental sync merges by key")

    append_only = with_table(uniqueness_columns=[], truncate_onstart=False, insert_only_mode=True)
    assert parse_config(append_only).tables()[0].watermark_lookback is None  # the watermark type's default
    # an append-only window replaces its watermark range, so re-reading a margin never duplicates rows
    append_only["sources"][0]["tables"][0]["watermark_lookback"] = 60
    assert parse_config(append_only).tables()[0].watermark_lookback == 60


def test_sensor_keys_default_to_stopped_every_five_minutes():
    source = parse_config(SEED_SHAPED).source("analytics")
    assert (source.sensor_running, source.sensor_interval_seconds) == (False, 300)
    raw = copy.deepcopy(SEED_SHAPED)
    raw["sources"][0]["sensor_interval_seconds"] = 5
    assert problems(raw) == ["sources[0].sensor_interval_seconds: must be at least 30, found 5"]


def test_a_config_needs_at_least_one_source():
    assert problems({"sources": []}) == ["sources: must have at least 1 entry, found none"]
    assert problems({}) == ["sources: is required (hint: the sources to copy, at least one)"]


def test_a_top_level_that_is_not_an_object_is_rejected():
    assert problems([1, 2]) == ["(top level): must be a JSON object, found list (hint: see config/example.full.json)"]


# ---- files ----------------------------------------------------------------------------------------


def test_config_path_prefers_flag_then_env_then_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SF2PG_CONFIG", "/env/config.json")
    assert config_path("/flag.json") == Path("/flag.json")
    assert config_path(None) == Path("/env/config.json")
    monkeypatch.delenv("SF2PG_CONFIG")
    assert config_path(None) == DEFAULT_CONFIG_PATH == Path("config/config.json")


def test_load_config_without_a_path_reads_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(SEED_SHAPED))
    monkeypatch.setenv("SF2PG_CONFIG", str(path))
    assert load_config().tables()[0].sf_table == "FACTVISITCALLPERFORMANCE_CR"


def test_missing_file_says_how_its_path_was_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SF2PG_CONFIG", str(tmp_path / "env.json"))
    with pytest.raises(ConfigError, match=r"no config file at .*flag\.json \(given with --config\)"):
        load_config(tmp_path / "flag.json")
    with pytest.raises(ConfigError, match=r"env\.json \(from \$SF2PG_CONFIG\)"):
        load_config()
    monkeypatch.delenv("SF2PG_CONFIG")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"config/config\.json \(the default, relative to "):
        load_config()


def test_invalid_json_reports_line_and_column(tmp_path: Path):
    path = tmp_path / "c.json"
    path.write_text('{\n  "sources": [,]\n}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.origin == str(path)
    [problem] = info.value.problems
    assert problem.path == "(file)" and problem.message.startswith("invalid JSON at line 2, column 15")


def test_shipped_configs_validate():
    demo = load_config(REPO / "config" / "config.json")
    assert [t.pg_table for t in demo.tables()] == ["fact_visits", "dim_providers", "all_types", "daily_metrics"]

    example_path = REPO / "config" / "example.full.json"
    assert load_config(example_path).tables(enabled_only=False)
    raw = json.loads(example_path.read_text())
    shown = set(raw) | set(raw["sources"][0]) | set(raw["sources"][0]["tables"][0])
    every = set(AppConfig.model_fields) | set(SourceConfig.model_fields) | set(TableConfig.model_fields)
    assert every <= shown, f"example.full.json misses {every - shown}"


def test_configuration_doc_mentions_every_key():
    doc = (REPO / "docs" / "CONFIGURATION.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", doc, flags=re.M))
    every = set(AppConfig.model_fields) | set(SourceConfig.model_fields) | set(TableConfig.model_fields)
    assert every <= documented, f"docs/CONFIGURATION.md misses {every - documented}"
