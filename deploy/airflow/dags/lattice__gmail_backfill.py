"""lattice__gmail_backfill: one backfill command for the messages of one Gmail
account dated start_date..end_date (UTC days, inclusive) on
lattice.mail.sync.cmd.v1; a worker pages through them and publishes them,
leaving the watermark alone.

    airflow dags trigger lattice__gmail_backfill \\
      --conf '{"account_id": "personal-gmail", "start_date": "2024-01-01", "end_date": "2024-06-30"}'

See docs/airflow.md."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

import lattice_commands as lc

PROVIDER = "gmail"
DAG_ID = "lattice__gmail_backfill"

with DAG(
    dag_id=DAG_ID,
    description="Backfill command for a date range of one Gmail account",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["lattice", PROVIDER, "backfill"],
    params={
        "account_id": Param(type="string", minLength=1, description="mail_accounts.account_id (a gmail account)"),
        "tenant_id": Param(None, type=["null", "string"], description="Needed only when account_id exists in several tenants"),
        "start_date": Param(type="string", format="date", description="First day, YYYY-MM-DD (UTC, inclusive)"),
        "end_date": Param(type="string", format="date", description="Last day, YYYY-MM-DD (UTC, inclusive)"),
        "scope": Param(None, type=["null", "string"], description="A label or query scope (label:Receipts); empty: every configured scope"),
    },
) as dag:

    @task(task_id="build_command")
    def build_command() -> list[dict]:
        return lc.backfill_command(PROVIDER, DAG_ID, dict(get_current_context()["params"]))

    lc.LatticeProduceOperator(
        task_id="produce_command",
        producer_function_kwargs={"commands": build_command()},
    )
