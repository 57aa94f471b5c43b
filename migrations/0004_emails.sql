-- 0004: the parsed messages (lattice-mail-parser, docs/parser.md).
--
-- One row per message, keyed like the provider knows it: (tenant_id,
-- account_id, provider_message_id). The parser UPSERTs, so a replayed
-- mail.raw.v1 event rewrites the same row (idempotent). A row whose event
-- decoded but whose raw message could not be read or parsed is still
-- written, with parse_error set and the content columns empty.
--
-- Full-text search: `fts` is generated from subject, from and body with the
-- 'simple' configuration (lower-cased words, no stemming, no stop words:
-- mail is multilingual and a search should find the word as written).
-- Queries must name the same configuration:
--     WHERE fts @@ plainto_tsquery('simple', 'invoice')

CREATE TABLE emails (
    tenant_id           text NOT NULL,
    account_id          text NOT NULL,
    provider_message_id text NOT NULL,
    event_id            uuid NOT NULL,
    provider            text NOT NULL
        CONSTRAINT emails_provider_known CHECK (provider IN ('gmail', 'imap')),
    mailbox             text,
    thread_id           text,
    received_at         timestamptz NOT NULL,
    -- Message-ID header without <> (from the message, else from the event).
    message_id          text,
    subject             text,
    -- From as one display string ("Name" <a@b>) and its first address.
    from_display        text,
    from_email          text,
    -- Addresses of To / Cc (groups flattened), and the fields as display strings.
    to_addrs            text[] NOT NULL DEFAULT '{}',
    cc_addrs            text[] NOT NULL DEFAULT '{}',
    to_display          text,
    cc_display          text,
    -- The Date header: parsed (NULL if missing or unparseable) and as sent.
    date_header         timestamptz,
    date_raw            text,
    -- text/plain preferred, else text/html converted to text; capped
    -- (LATTICE_PARSER_MAX_BODY_BYTES), body_truncated when cut.
    body_text           text NOT NULL DEFAULT '',
    body_source         text
        CONSTRAINT emails_body_source_known CHECK (body_source IN ('text/plain', 'text/html')),
    body_truncated      boolean NOT NULL DEFAULT false,
    -- From the event's manifest: [{"attachment_id", "filename", "content_type",
    -- "size_bytes", "sha256", "object_key"}], in MIME order.
    attachments         jsonb NOT NULL DEFAULT '[]'
        CONSTRAINT emails_attachments_is_array CHECK (jsonb_typeof(attachments) = 'array'),
    attachment_count    integer GENERATED ALWAYS AS (jsonb_array_length(attachments)) STORED,
    raw_bucket          text NOT NULL,
    raw_object_key      text NOT NULL,
    raw_size_bytes      bigint NOT NULL,
    raw_sha256          text NOT NULL,
    data_classification text NOT NULL,
    -- Set when the raw message could not be fetched or parsed (the row then
    -- holds what the event says); NULL for a parsed message.
    parse_error         text,
    parse_error_class   text,
    -- Where the event was read (the last write wins on replays).
    kafka_partition     integer NOT NULL,
    kafka_offset        bigint NOT NULL,
    parsed_at           timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    fts                 tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, coalesce(subject, '')), 'A') ||
        setweight(to_tsvector('simple'::regconfig, coalesce(from_display, '')), 'B') ||
        setweight(to_tsvector('simple'::regconfig, body_text), 'C')
    ) STORED,
    CONSTRAINT emails_pkey PRIMARY KEY (tenant_id, account_id, provider_message_id)
);

CREATE INDEX emails_fts ON emails USING gin (fts);
-- A mailbox listing: newest first per account.
CREATE INDEX emails_account_received ON emails (tenant_id, account_id, received_at DESC);
CREATE INDEX emails_event_id ON emails (event_id);
-- Rows to look at (and replay once the cause is fixed): small, errors only.
CREATE INDEX emails_parse_errors ON emails (tenant_id, account_id) WHERE parse_error IS NOT NULL;
