"""lattice__imap_backfill: one backfill command for a UID range of one folder of
one IMAP account on lattice.mail.sync.cmd.v1; a worker fetches the messages and
publishes them again (same event ids), leaving the watermark alone.

    airflow dags trigger lattice__imap_backfill \\
      --conf '{"account_id": "workmail-imap", "folder": "INBOX", "start_uid": 1, "end_uid": 500}'

See docs/airflow.md."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

import lattice_commands as lc

PROVIDER = "imap"
DAG_ID = "lattice__imap_backfill"

with DAG(
    dag_id=DAG_ID,
    description="Backfill command for a UID range of one IMAP folder",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["lattice", PROVIDER, "backfill"],
    params={
        "account_id": Param(type="string", minLength=1, description="mail_accounts.account_id (an imap account)"),
        "tenant_id": Param(None, type=["null", "string"], description="Needed only when account_id exists in several tenants"),
        "folder": Param("INBOX", type="string", minLength=1, description="The folder (mailbox) to backfill"),
        "start_uid": Param(None, type=["null", "integer"], description="First UID (inclusive); empty: from the first message"),
        "end_uid": Param(None, type=["null", "integer"], description="Last UID (inclusive); empty: to the last message"),
    },
) as dag:

    @task(task_id="build_command")
    def build_command() -> list[dict]:
        return lc.backfill_command(PROVIDER, DAG_ID, dict(get_current_context()["params"]))

    lc.LatticeProduceOperator(
        task_id="produce_command",
        producer_function_kwargs={"commands": build_command()},
    )
