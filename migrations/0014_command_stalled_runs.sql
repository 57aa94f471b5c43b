-- 0014: runs of a command that ended without finishing and without durable
-- progress (docs/operations.md, "Retries").
--
-- `attempt` numbers every run of a command id. A run that never finished
-- (its worker was killed, ran out of memory) is only a sign of a command
-- that takes its worker down when the next run finds the row still
-- running with no message counted by a heartbeat after a checkpoint (the
-- watermark did not move). The worker dead-letters a command whose runs
-- did that LATTICE_WORKER_MAX_ATTEMPTS times in a row; a run that moved the
-- watermark sets the count back to 0.
ALTER TABLE mail_sync_commands
    ADD COLUMN stalled_runs integer NOT NULL DEFAULT 0
        CONSTRAINT mail_sync_commands_stalled_runs_range CHECK (stalled_runs >= 0);
