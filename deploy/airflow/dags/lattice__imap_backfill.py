"""lattice__imap_backfill: one backfill command for a UID range of one folder of
one IMAP account on lattice.mail.sync.cmd.v1; a worker fetches the messages and
publishes them again (same event ids), leaving the watermark alone.

    airflow dags trigger lattice__imap_backfill \\
      --conf '{"account_id": "workmail-imap", "folder": "INBOX", "start_uid": 1, "end_uid": 500}'

See docs/airflow.md."""

from __future__ import annotations

from airflow.sdk import Param

import lattice_commands as lc

dag = lc.backfill_dag(
    "imap",
    "Backfill command for a UID range of one IMAP folder",
    {
        "account_id": Param(type="string", minLength=1, description="mail_accounts.account_id (an imap account)"),
        "tenant_id": Param(None, type=["null", "string"], description="Needed only when account_id exists in several tenants"),
        "folder": Param("INBOX", type="string", minLength=1, description="The folder (mailbox) to backfill"),
        "start_uid": Param(None, type=["null", "integer"], description="First UID (inclusive); empty: from the first message"),
        "end_uid": Param(None, type=["null", "integer"], description="Last UID (inclusive); empty: to the last message"),
    },
    __doc__,
)
