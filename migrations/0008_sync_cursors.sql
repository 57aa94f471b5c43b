-- 0008: durable progress of long syncs (docs/delivery-protocol.md, "Progress
-- of long syncs").
--
-- A long sync (a Gmail first sync or full resync, any backfill) records how
-- far it got after every batch, in the same step that moves a watermark: the
-- batch's pending row carries the cursor, and applying the row (once the
-- batch's Kafka transaction is known committed) writes the cursor to its
-- home in the same Postgres transaction. A cursor therefore never runs ahead
-- of the events it covers, and never lags a committed batch.
--
-- Homes:
--   * a backfill's cursor lives in its command row (mail_sync_commands.
--     cursor_json, an object keyed by scope): a backfill is identified by its
--     command id, and Kafka re-delivers the same command after a crash;
--   * a first sync's (or full resync's) cursor lives with the account's scope
--     (mail_sync_cursors): the scheduler may send a new command id after a
--     failure, and that command must resume the same listing. The row exists
--     only while the full sync is in progress; the batch that writes the
--     final watermark deletes it.

ALTER TABLE mail_sync_commands ADD COLUMN cursor_json jsonb
    CONSTRAINT mail_sync_commands_cursor_object
    CHECK (cursor_json IS NULL OR jsonb_typeof(cursor_json) = 'object');

CREATE TABLE mail_sync_cursors (
    tenant_id   text NOT NULL,
    account_id  text NOT NULL,
    scope       text NOT NULL
        CONSTRAINT mail_sync_cursors_scope_length CHECK (length(scope) BETWEEN 1 AND 1024),
    provider    text NOT NULL
        CONSTRAINT mail_sync_cursors_provider_known CHECK (provider IN ('gmail', 'imap')),
    cursor_json jsonb NOT NULL
        CONSTRAINT mail_sync_cursors_object CHECK (jsonb_typeof(cursor_json) = 'object'),
    -- the command that wrote it last (for operators)
    command_id  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mail_sync_cursors_pkey PRIMARY KEY (tenant_id, account_id, scope, provider),
    CONSTRAINT mail_sync_cursors_account_fkey FOREIGN KEY (tenant_id, account_id)
        REFERENCES mail_accounts (tenant_id, account_id) ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TRIGGER mail_sync_cursors_touch_updated_at
    BEFORE UPDATE ON mail_sync_cursors
    FOR EACH ROW EXECUTE FUNCTION lt_touch_updated_at();

-- The pending row of a batch that moves only a cursor (a backfill batch, an
-- intermediate batch of a full sync) has no watermark.
--   cursor_home: NULL (no cursor), 'command' or 'scope'.
--   cursor_json: the cursor to write; NULL with home 'scope' deletes the
--                scope's cursor (the full sync is done).
ALTER TABLE mail_watermark_pending ALTER COLUMN watermark_json DROP NOT NULL;
ALTER TABLE mail_watermark_pending DROP CONSTRAINT mail_watermark_pending_format;
ALTER TABLE mail_watermark_pending ADD CONSTRAINT mail_watermark_pending_format
    CHECK (watermark_json IS NULL OR lt_watermark_valid(provider, watermark_json));
ALTER TABLE mail_watermark_pending ADD COLUMN cursor_home text
    CONSTRAINT mail_watermark_pending_cursor_home_known
    CHECK (cursor_home IS NULL OR cursor_home IN ('command', 'scope'));
ALTER TABLE mail_watermark_pending ADD COLUMN cursor_json jsonb
    CONSTRAINT mail_watermark_pending_cursor_object
    CHECK (cursor_json IS NULL OR jsonb_typeof(cursor_json) = 'object');
ALTER TABLE mail_watermark_pending ADD CONSTRAINT mail_watermark_pending_moves_something
    CHECK (watermark_json IS NOT NULL OR cursor_home IS NOT NULL);
