"""lattice__gmail_sync_incremental: one incremental sync command per enabled
Gmail account (every configured label or query scope) on
lattice.mail.sync.cmd.v1; the workers do the work (History API from the stored
historyId). See docs/airflow.md."""

from __future__ import annotations

import lattice_commands as lc

dag = lc.incremental_dag("gmail", "Incremental sync commands for every enabled Gmail account", __doc__)
