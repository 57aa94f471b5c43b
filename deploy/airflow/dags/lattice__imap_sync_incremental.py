"""lattice__imap_sync_incremental: one incremental sync command per enabled IMAP
account (every configured folder) on lattice.mail.sync.cmd.v1; the workers do
the work. See docs/airflow.md."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, Variable, get_current_context, task

import lattice_commands as lc

PROVIDER = "imap"
DAG_ID = f"lattice__{PROVIDER}_sync_incremental"

with DAG(
    dag_id=DAG_ID,
    description="Incremental sync commands for every enabled IMAP account",
    schedule=os.environ.get("LATTICE_AIRFLOW_IMAP_SCHEDULE", "*/10 * * * *"),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["lattice", PROVIDER],
    params={
        "tenant_id": Param(None, type=["null", "string"], description="Only this tenant's accounts (default: all)"),
    },
) as dag:

    if lc.incremental_mode() == "scheduler":

        @task(task_id="run_scheduler")
        def run_scheduler() -> None:
            ctx = get_current_context()
            topic = Variable.get(lc.TOPIC_VARIABLE, default=lc.DEFAULT_TOPIC)
            lc.run_scheduler(PROVIDER, ctx["params"].get("tenant_id"), topic)

        run_scheduler()
    else:

        @task(task_id="build_commands")
        def build_commands() -> list[dict]:
            return lc.incremental_commands(PROVIDER, DAG_ID, get_current_context()["params"].get("tenant_id"))

        lc.LatticeProduceOperator(
            task_id="produce_commands",
            producer_function_kwargs={"commands": build_commands()},
        )
