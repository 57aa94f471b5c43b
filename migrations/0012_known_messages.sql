-- 0012: the messages each sync scope has announced (docs/delivery-protocol.md,
-- "Known messages").
--
-- Change tracking needs to know which messages a scope has published on
-- mail.raw.v1 and not since reported deleted: an IMAP server without
-- QRESYNC tells no deletions, so the worker compares the server's UID set
-- with this one; after a Gmail history expiry the full listing is compared
-- with it; and a deletion is reported only for a message that was announced
-- (no orphan change).
--
-- The set moves with the delivery protocol: a batch's additions and
-- removals are staged in mail_known_pending under the batch's pending row
-- (same key), and applied in the Postgres transaction that applies that row
-- (the Kafka transaction is known committed) or dropped with it (aborted).
-- So the set never holds a message whose event was not committed, and never
-- lacks one whose event was.

CREATE TABLE mail_known_messages (
    tenant_id           text NOT NULL,
    account_id          text NOT NULL,
    scope               text NOT NULL,
    provider            text NOT NULL
        CONSTRAINT mail_known_messages_provider_known CHECK (provider IN ('gmail', 'imap')),
    provider_message_id text NOT NULL
        CONSTRAINT mail_known_messages_id_length
        CHECK (length(provider_message_id) BETWEEN 1 AND 2048),
    -- What the worker last published of the message's mutable state (IMAP:
    -- its flags, canonical text), for a connector that must find changes by
    -- comparing (an IMAP server without CONDSTORE); NULL: none recorded.
    state               text,
    CONSTRAINT mail_known_messages_pkey
        PRIMARY KEY (tenant_id, account_id, scope, provider, provider_message_id),
    CONSTRAINT mail_known_messages_account_fkey FOREIGN KEY (tenant_id, account_id)
        REFERENCES mail_accounts (tenant_id, account_id) ON DELETE CASCADE ON UPDATE CASCADE
);

-- A batch's staged changes to the set. op: 'a' add, 's' add or update with
-- a state, 'd' remove, 'r' forget the scope's whole set first (a UIDVALIDITY
-- change); seq orders them, and the last one of a message decides.
CREATE TABLE mail_known_pending (
    tenant_id           text NOT NULL,
    account_id          text NOT NULL,
    scope               text NOT NULL,
    provider            text NOT NULL,
    seq                 integer NOT NULL,
    op                  text NOT NULL CONSTRAINT mail_known_pending_op CHECK (op IN ('a', 's', 'd', 'r')),
    provider_message_id text,
    state               text,
    CONSTRAINT mail_known_pending_pkey PRIMARY KEY (tenant_id, account_id, scope, provider, seq),
    CONSTRAINT mail_known_pending_account_fkey FOREIGN KEY (tenant_id, account_id)
        REFERENCES mail_accounts (tenant_id, account_id) ON DELETE CASCADE ON UPDATE CASCADE
);
