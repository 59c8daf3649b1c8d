"""The planning job: plan every enabled table and register its chunks as partitions."""

from dagster import Config, JobDefinition, OpExecutionContext, job, op
from pydantic import Field

from sf2pg.config.model import TableSpec
from sf2pg.dagster.partitions import replan_and_register
from sf2pg.dagster.resources import PostgresResource, SnowflakeResource


class PlanConfig(Config):
    tables: list[str] = Field(default=[], description="Limit to these tables (source.target); empty = all.")


def build_plan_job(specs: list[TableSpec]) -> JobDefinition:
    @op(name="plan_tables", description="One aggregated Snowflake query per table; registers new chunks.")
    def plan_chunks_op(
        context: OpExecutionContext, config: PlanConfig, snowflake: SnowflakeResource, postgres: PostgresResource
    ) -> None:
        selected = [s for s in specs if not config.tables or s.name in config.tables]
        with snowflake.get_connection() as conn:
            for spec in selected:
                plan = replan_and_register(spec, conn, context.instance, postgres)
                context.log.info(
                    f"{spec.name}: {len(plan.chunks)} chunk(s), {len(plan.new_keys)} new, "
                    f"{plan.source_queries} source quer{'y' if plan.source_queries == 1 else 'ies'}"
                )

    @job(name="plan_chunks", description="Plan chunks for every enabled table and register them as partitions.")
    def plan_job() -> None:
        plan_chunks_op()

    return plan_job
