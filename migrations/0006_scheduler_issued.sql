-- 0006: the scheduler's record of the commands it issued.
--
-- The worker writes mail_sync_commands only when it starts a command; a
-- command still queued in Kafka has no row there. lattice-scheduler records
-- every command it produces here, so an account counts as "in flight" while
--   * a command for it is running (mail_sync_commands) with a heartbeat newer
--     than the staleness threshold, or
--   * a command issued for it newer than the threshold has not started yet
--     (a row here and none in mail_sync_commands),
-- and gets no new command meanwhile (no pile-up). Rows older than the
-- threshold no longer count; the scheduler deletes them at each run.

CREATE TABLE mail_sync_issued (
    command_id text PRIMARY KEY
        CONSTRAINT mail_sync_issued_command_id_length CHECK (length(command_id) BETWEEN 1 AND 256),
    tenant_id  text NOT NULL,
    account_id text NOT NULL,
    provider   text NOT NULL
        CONSTRAINT mail_sync_issued_provider_known CHECK (provider IN ('gmail', 'imap')),
    -- NULL: every configured scope of the account.
    scope      text
        CONSTRAINT mail_sync_issued_scope_length CHECK (length(scope) BETWEEN 1 AND 1024),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mail_sync_issued_account_fkey FOREIGN KEY (tenant_id, account_id)
        REFERENCES mail_accounts (tenant_id, account_id) ON DELETE CASCADE ON UPDATE CASCADE
);

-- The in-flight scan (issued_at newer than the threshold) and the pruning.
CREATE INDEX mail_sync_issued_issued_at ON mail_sync_issued (issued_at);
-- The foreign key's cascade when an account is deleted.
CREATE INDEX mail_sync_issued_account ON mail_sync_issued (tenant_id, account_id);
