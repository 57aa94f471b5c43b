-- 0002: per-scope watermarks (seed A2) and their monotonic guard.
--   gmail: {"historyId": "123"}                    (a string: it is a uint64)
--   imap:  {"uidvalidity": 9999, "last_uid": 12345} (uint32 numbers)
-- Other keys are allowed (kept as given); the ones above are required.

-- True when w is a well-formed watermark of provider p.
CREATE FUNCTION lt_watermark_valid(p text, w jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(w) IS DISTINCT FROM 'object' THEN false
        WHEN p = 'gmail' THEN
            CASE WHEN jsonb_typeof(w -> 'historyId') = 'string'
                 THEN (w ->> 'historyId') ~ '^[0-9]{1,20}$'
                      AND (w ->> 'historyId')::numeric <= 18446744073709551615
                 ELSE false END
        WHEN p = 'imap' THEN
            CASE WHEN jsonb_typeof(w -> 'uidvalidity') = 'number'
                      AND jsonb_typeof(w -> 'last_uid') = 'number'
                 THEN (w ->> 'uidvalidity')::numeric BETWEEN 1 AND 4294967295
                      AND (w ->> 'uidvalidity')::numeric = trunc((w ->> 'uidvalidity')::numeric)
                      AND (w ->> 'last_uid')::numeric BETWEEN 0 AND 4294967295
                      AND (w ->> 'last_uid')::numeric = trunc((w ->> 'last_uid')::numeric)
                 ELSE false END
        ELSE false
    END
$$;

-- The monotonic guard: may `new` replace `old`? (Both valid for p.)
--   gmail: historyId compared as a number, never backwards.
--   imap:  a different uidvalidity replaces (the old UIDs mean nothing any
--          more); within the same uidvalidity last_uid never goes backwards.
-- Equal values "advance" (idempotent rewrite). An explicit resync bypasses
-- the guard in the callers, not here.
CREATE FUNCTION lt_watermark_advances(p text, old jsonb, new jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p
        WHEN 'gmail' THEN
            (new ->> 'historyId')::numeric >= (old ->> 'historyId')::numeric
        WHEN 'imap' THEN
            (new ->> 'uidvalidity')::numeric <> (old ->> 'uidvalidity')::numeric
            OR (new ->> 'last_uid')::numeric >= (old ->> 'last_uid')::numeric
        ELSE false
    END
$$;

CREATE TABLE mail_watermarks (
    tenant_id      text NOT NULL,
    account_id     text NOT NULL,
    -- Gmail label / search scope, or IMAP folder (any text, 1..1024 chars).
    scope          text NOT NULL
        CONSTRAINT mail_watermarks_scope_length CHECK (length(scope) BETWEEN 1 AND 1024),
    provider       text NOT NULL
        CONSTRAINT mail_watermarks_provider_known CHECK (provider IN ('gmail', 'imap')),
    watermark_json jsonb NOT NULL
        CONSTRAINT mail_watermarks_format CHECK (lt_watermark_valid(provider, watermark_json)),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The primary key is the lookup index (tenant, account, scope, provider);
    -- its prefix serves "all watermarks of an account" too.
    CONSTRAINT mail_watermarks_pkey PRIMARY KEY (tenant_id, account_id, scope, provider),
    CONSTRAINT mail_watermarks_account_fkey FOREIGN KEY (tenant_id, account_id)
        REFERENCES mail_accounts (tenant_id, account_id) ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TRIGGER mail_watermarks_touch_updated_at
    BEFORE UPDATE ON mail_watermarks
    FOR EACH ROW EXECUTE FUNCTION lt_touch_updated_at();
