-- 0003: the delivery protocol's in-doubt record and the command log.
--
-- Per batch the worker (a) stores objects, (b) begins a Kafka transaction,
-- produces the events and one marker record and learns the marker's
-- partition/offset, (c) UPSERTs mail_watermark_pending (committed), (d)
-- commits the Kafka transaction, (e) in one Postgres transaction applies the
-- pending watermark to mail_watermarks and deletes the pending row. A row
-- left here after a crash is resolved by reading the marker with a
-- read_committed consumer: visible -> apply; aborted -> delete.

CREATE TABLE mail_watermark_pending (
    tenant_id        text NOT NULL,
    account_id       text NOT NULL,
    scope            text NOT NULL
        CONSTRAINT mail_watermark_pending_scope_length CHECK (length(scope) BETWEEN 1 AND 1024),
    provider         text NOT NULL
        CONSTRAINT mail_watermark_pending_provider_known CHECK (provider IN ('gmail', 'imap')),
    -- The watermark to apply once the Kafka transaction is known committed.
    watermark_json   jsonb NOT NULL
        CONSTRAINT mail_watermark_pending_format CHECK (lt_watermark_valid(provider, watermark_json)),
    -- true: an explicit resync; applying may move the watermark backwards.
    resync           boolean NOT NULL DEFAULT false,
    command_id       text NOT NULL
        CONSTRAINT mail_watermark_pending_command_id_length CHECK (length(command_id) BETWEEN 1 AND 256),
    marker_topic     text NOT NULL
        CONSTRAINT mail_watermark_pending_topic_length CHECK (length(marker_topic) BETWEEN 1 AND 249),
    marker_partition integer NOT NULL
        CONSTRAINT mail_watermark_pending_partition_range CHECK (marker_partition >= 0),
    marker_offset    bigint NOT NULL
        CONSTRAINT mail_watermark_pending_offset_range CHECK (marker_offset >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- One in-doubt batch per (tenant, account, scope, provider); the prefix
    -- (tenant, account) serves the recovery scan of one account.
    CONSTRAINT mail_watermark_pending_pkey PRIMARY KEY (tenant_id, account_id, scope, provider),
    CONSTRAINT mail_watermark_pending_account_fkey FOREIGN KEY (tenant_id, account_id)
        REFERENCES mail_accounts (tenant_id, account_id) ON DELETE CASCADE ON UPDATE CASCADE
);

-- One row per command id: the worker's record of what it ran. No foreign key
-- to mail_accounts: a command for an unknown account is still recorded
-- (dead_lettered).
CREATE TABLE mail_sync_commands (
    command_id     text PRIMARY KEY
        CONSTRAINT mail_sync_commands_command_id_length CHECK (length(command_id) BETWEEN 1 AND 256),
    tenant_id      text NOT NULL,
    account_id     text NOT NULL,
    provider       text NOT NULL,
    kind           text NOT NULL,
    scope          text,
    status         text NOT NULL
        CONSTRAINT mail_sync_commands_status_known
        CHECK (status IN ('running', 'succeeded', 'failed', 'dead_lettered')),
    attempt        integer NOT NULL DEFAULT 1 CONSTRAINT mail_sync_commands_attempt_range CHECK (attempt >= 1),
    worker_id      text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_at   timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    messages       integer NOT NULL DEFAULT 0,
    bytes          bigint NOT NULL DEFAULT 0,
    error_class    text,
    error          text,
    progress_done  bigint,
    progress_total bigint
);

-- The scheduler's "is a command for this account still in flight?"
CREATE INDEX mail_sync_commands_account_status
    ON mail_sync_commands (tenant_id, account_id, status);
-- The scheduler's bulk variant (every running command with a fresh
-- heartbeat) and stale-command sweeps: small, only running rows.
CREATE INDEX mail_sync_commands_running_heartbeat
    ON mail_sync_commands (heartbeat_at) WHERE status = 'running';
-- Retention: delete finished commands older than N days.
CREATE INDEX mail_sync_commands_finished_at
    ON mail_sync_commands (finished_at) WHERE finished_at IS NOT NULL;
