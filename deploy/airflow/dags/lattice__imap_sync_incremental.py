"""lattice__imap_sync_incremental: one incremental sync command per enabled IMAP
account (every configured folder) on lattice.mail.sync.cmd.v1; the workers do
the work. See docs/airflow.md."""

from __future__ import annotations

import lattice_commands as lc

dag = lc.incremental_dag("imap", "Incremental sync commands for every enabled IMAP account", __doc__)
