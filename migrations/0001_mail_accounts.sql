-- 0001: account configuration (seed A2).
-- Applied by lattice-migrate in one transaction; never edit once applied
-- (the tool refuses a changed file): add a new numbered file instead.
-- Names are unqualified so the schema comes from search_path.

-- Keeps updated_at current on every UPDATE.
CREATE FUNCTION lt_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE mail_accounts (
    id                  bigserial PRIMARY KEY,
    -- Same charset and length as the command contract.
    tenant_id           text NOT NULL
        CONSTRAINT mail_accounts_tenant_id_format CHECK (tenant_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    account_id          text NOT NULL
        CONSTRAINT mail_accounts_account_id_format CHECK (account_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    provider            text NOT NULL
        CONSTRAINT mail_accounts_provider_known CHECK (provider IN ('gmail', 'imap')),
    enabled             boolean NOT NULL DEFAULT true,
    -- Provider details and REFERENCES to secrets (env var or file names),
    -- never the secrets themselves.
    config_json         jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT mail_accounts_config_is_object CHECK (jsonb_typeof(config_json) = 'object'),
    data_classification text NOT NULL DEFAULT 'confidential',
    status              text NOT NULL DEFAULT 'active'
        CONSTRAINT mail_accounts_status_known CHECK (status IN ('active', 'needs_reauth', 'flagged')),
    status_reason       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mail_accounts_tenant_account_key UNIQUE (tenant_id, account_id)
);

CREATE TRIGGER mail_accounts_touch_updated_at
    BEFORE UPDATE ON mail_accounts
    FOR EACH ROW EXECUTE FUNCTION lt_touch_updated_at();

-- The scheduler streams enabled accounts, optionally filtered by provider
-- and tenant, in (provider, tenant_id, account_id) order. Partial: disabled
-- accounts are not in it. (Lookups by tenant alone or by tenant+account use
-- the UNIQUE index above.)
CREATE INDEX mail_accounts_enabled_by_provider
    ON mail_accounts (provider, tenant_id, account_id) WHERE enabled;
