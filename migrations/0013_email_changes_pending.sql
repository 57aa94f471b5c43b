-- 0013: mailbox changes that arrived before their message (docs/parser.md,
-- "Mailbox changes", "Changes before their message").
--
-- mail.raw.v1 and mail.change.v1 are read independently, so a change (a
-- deletion, a new flag or label set) can reach the parser before the raw
-- event that creates the message's row. Such a change is kept here, the
-- newest per (message, kind), and applied in the transaction that upserts
-- the message's row, by the same ordering rules as any change (*_as_of of
-- 0009): a deletion older than the raw event is stale, a newer one marks the
-- row deleted at once.
--
-- Entries whose message never comes (a message deleted before it was
-- fetched, a change for another provider's id) are purged after
-- LATTICE_PARSER_PENDING_RETENTION_S by the parser (pending_since: when the
-- entry was last written, server clock).

CREATE TABLE emails_changes_pending (
    tenant_id           text NOT NULL,
    account_id          text NOT NULL,
    provider            text NOT NULL
        CONSTRAINT emails_changes_pending_provider_known CHECK (provider IN ('gmail', 'imap')),
    provider_message_id text NOT NULL,
    kind                text NOT NULL
        CONSTRAINT emails_changes_pending_kind_known CHECK (kind IN ('deleted', 'flags', 'labels')),
    -- The change's event time (the ordering of 0009).
    event_time          timestamptz NOT NULL,
    -- flags / labels: the full new set, sorted, no duplicates; '{}' for deleted.
    change_values       text[] NOT NULL DEFAULT '{}',
    pending_since       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT emails_changes_pending_pkey
        PRIMARY KEY (tenant_id, account_id, provider_message_id, provider, kind)
);

-- The retention purge.
CREATE INDEX emails_changes_pending_since ON emails_changes_pending (pending_since);
