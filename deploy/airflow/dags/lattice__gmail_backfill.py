"""lattice__gmail_backfill: one backfill command for the messages of one Gmail
account dated start_date..end_date (UTC days, inclusive) on
lattice.mail.sync.cmd.v1; a worker pages through them and publishes them,
leaving the watermark alone.

    airflow dags trigger lattice__gmail_backfill \\
      --conf '{"account_id": "personal-gmail", "start_date": "2024-01-01", "end_date": "2024-06-30"}'

See docs/airflow.md."""

from __future__ import annotations

from airflow.sdk import Param

import lattice_commands as lc

dag = lc.backfill_dag(
    "gmail",
    "Backfill command for a date range of one Gmail account",
    {
        "account_id": Param(type="string", minLength=1, description="mail_accounts.account_id (a gmail account)"),
        "tenant_id": Param(None, type=["null", "string"], description="Needed only when account_id exists in several tenants"),
        "start_date": Param(type="string", format="date", description="First day, YYYY-MM-DD (UTC, inclusive)"),
        "end_date": Param(type="string", format="date", description="Last day, YYYY-MM-DD (UTC, inclusive)"),
        "scope": Param(None, type=["null", "string"], description="A label or query scope (label:Receipts); empty: every configured scope"),
    },
    __doc__,
)
