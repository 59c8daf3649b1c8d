"""Asset checks: a clean load passes; one bad row fails exactly its chunk; re-materializing heals it."""

from __future__ import annotations

import pytest
from dagster import AssetSelection, DagsterInstance, materialize

from sf2pg.config.loading import parse_config
from sf2pg.dagster.assets import asset_key, build_table_asset
from sf2pg.dagster.checks import build_table_checks
from sf2pg.dagster.definitions import build_resources
from sf2pg.dagster.partitions import partitions_name
from sf2pg.dagster.runner import verify
from sf2pg.plan.chunks import parse_chunk_key
from sf2pg_tests.harness import World
from sf2pg_tests.test_load.test_migrate import all_types_config, run, seed_all_types


def loaded(world: World, **table_keys) -> tuple[DagsterInstance, object, list[str]]:
    seed_all_types(world, 900)
    instance = DagsterInstance.ephemeral()
    raw = all_types_config(world, "id", checks_after_load="cells", **table_keys)  # each load compares every cell
    outcome = run(world, raw, instance)[0]
    assert outcome.success, outcome.error
    assert outcome.checks == {"row_count": True, "chunk_fingerprint": True}
    spec = parse_config(raw).tables()[0]
    return instance, spec, list(instance.get_dynamic_partitions(partitions_name(spec)))


def id_range(key: str) -> tuple[int, int]:
    lower, upper = key[3:].split("_")
    return int(lower), int(upper)


TAMPERING = {
    "deleted": "DELETE FROM tgt.all_types WHERE id = %s",
    "altered": "UPDATE tgt.all_types SET n_dec = n_dec + 1 WHERE id = %s",
    "altered text": "UPDATE tgt.all_types SET v = v || '!' WHERE id = %s AND v IS NOT NULL AND v <> ''",
    "nulled": "UPDATE tgt.all_types SET ts_ntz = NULL WHERE id = %s",
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_one_bad_row_fails_exactly_its_chunk_and_rematerializing_heals_it(world: World, how: str):
    instance, spec, keys = loaded(world)
    victim = keys[1]
    lower, _ = id_range(victim)
    world.pg_query(TAMPERING[how], (lower + 2,))

    [verdict] = verify([spec], instance)
    assert [c.key for c in verdict.failed_chunks] == [victim]
    assert verdict.failed_chunks[0].mismatches

    result = materialize(
        [build_table_asset(spec), *build_table_checks(spec)],
        instance=instance,
        resources=build_resources(resolve_env=True),
        partition_key=victim,
    )
    assert result.success
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "row_count": True,
        "chunk_rows": True,
        "chunk_fingerprint": True,
    }
    assert verify([spec], instance)[0].passed


def test_a_duplicated_row_fails_its_chunk_and_the_row_count(world: World):
    instance, spec, keys = loaded(world, uniqueness_columns=[])
    victim = keys[0]
    lower, _ = id_range(victim)
    world.pg_query("INSERT INTO tgt.all_types SELECT * FROM tgt.all_types WHERE id = %s", (lower + 1,))
    [verdict] = verify([spec], instance)
    assert not verdict.passed
    assert verdict.target_rows == verdict.source_rows + 1
    assert [c.key for c in verdict.failed_chunks] == [victim]


def test_the_partitioned_check_names_the_failing_chunk_in_dagster(world: World):
    instance, spec, keys = loaded(world)
    victim = keys[-1]
    lower, _ = id_range(victim)
    world.pg_query("DELETE FROM tgt.all_types WHERE id = %s", (lower,))
    result = materialize(
        [build_table_asset(spec), *build_table_checks(spec)],
        selection=AssetSelection.checks_for_assets(asset_key(spec)),
        instance=instance,
        resources=build_resources(resolve_env=True),
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        raise_on_error=False,
    )
    chunk_evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == "chunk_fingerprint"]
    assert sorted(e.partition for e in chunk_evaluations) == sorted(keys)  # one result per partition
    [failed] = [e for e in chunk_evaluations if not e.passed]
    assert failed.partition == victim and victim in failed.description
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["row_count"].passed
    assert evaluations["row_count"].description == "target has 1 fewer rows than the source (900 vs 901)"
    assert evaluations["row_count"].metadata["difference"].value == -1


def test_fingerprints_of_a_thousand_chunks_take_a_handful_of_source_queries(world: World):
    from sf2pg.plan.chunks import Chunk, chunk_key
    from sf2pg.plan.planning import source_columns
    from sf2pg.reconcile.fingerprints import fingerprint_chunks

    _, spec, _ = loaded(world)
    chunks = [Chunk(chunk_key("id", i, i + 1), i, i + 1) for i in range(1, 1001)]
    with world.stack.sf_connect() as sf, world.stack.pg(world.pg_database) as pg:
        verdicts, queries = fingerprint_chunks(sf, pg, spec, source_columns(sf, spec), chunks)
    assert queries <= 4
    assert len(verdicts) == 1000 and all(v.passed for v in verdicts)


def test_fingerprints_by_index_range_and_by_grouped_scan_agree(world: World):
    """The target side reads each chunk's index range when an index leads with the chunking column, and
    groups one scan otherwise; both must give the same verdicts, tampered chunk included."""
    from sf2pg.plan.planning import source_columns
    from sf2pg.reconcile.fingerprints import fingerprint_chunks

    _, spec, keys = loaded(world, chunking_columns=["ID"], chunking_column_types=["id"])
    chunks = [parse_chunk_key("id", k) for k in keys]
    world.pg_query(TAMPERING["altered"], (id_range(keys[1])[0] + 1,))

    def verdicts() -> list[tuple[str, int, int, bool]]:
        with world.stack.sf_connect() as sf, world.stack.pg(world.pg_database) as pg:
            found, _ = fingerprint_chunks(sf, pg, spec, source_columns(sf, spec), chunks)
        return [(v.key, v.source_rows, v.target_rows, v.passed) for v in found]

    by_range = verdicts()
    world.pg_query("ALTER TABLE tgt.all_types DROP CONSTRAINT all_types_pkey")
    grouped = verdicts()
    assert by_range == grouped
    assert [key for key, *_, passed in by_range if not passed] == [keys[1]]
    assert sum(rows for _, _, rows, _ in by_range) == world.pg_query("SELECT COUNT(*) FROM tgt.all_types")[0][0]


def check_statuses(instance: DagsterInstance, spec) -> dict[str, list[str]]:
    """The chunk check's partitions by status, as the Dagster UI's Partitions tab reads them."""
    from dagster import AssetCheckKey, partition_loading_context
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus

    from sf2pg.dagster.partitions import partitions_def

    key = AssetCheckKey(asset_key(spec), "chunk_fingerprint")
    with partition_loading_context(dynamic_partitions_store=instance):  # as the webserver's loader does
        state = instance.event_log_storage.get_asset_check_state([(key, partitions_def(spec))])[key]
        return {
            status.value: sorted(subset.subset_value.get_partition_keys())
            for status, subset in state.subsets.items()
            if status in (AssetCheckExecutionResolvedStatus.SUCCEEDED, AssetCheckExecutionResolvedStatus.FAILED)
        }


def test_each_partition_of_the_chunk_check_shows_its_own_result_in_dagster(world: World):
    """A check evaluation counts for a partition only if it names the partition's latest materialization;
    without it, Dagster's partition status (and the UI's Partitions tab) showed every chunk as missing."""
    instance, spec, keys = loaded(world)
    assert check_statuses(instance, spec) == {"SUCCEEDED": sorted(keys), "FAILED": []}
    victim = keys[0]
    world.pg_query("DELETE FROM tgt.all_types WHERE id = %s", (id_range(victim)[0],))
    materialize(
        [build_table_asset(spec), *build_table_checks(spec)],
        selection=AssetSelection.checks_for_assets(asset_key(spec)),
        instance=instance,
        resources=build_resources(resolve_env=True),
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        raise_on_error=False,
    )
    assert check_statuses(instance, spec) == {"SUCCEEDED": sorted(keys[1:]), "FAILED": [victim]}
