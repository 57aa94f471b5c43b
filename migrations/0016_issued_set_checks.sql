-- 0016: mail_sync_issued checks its accounts once per statement, not per row.
--
-- The foreign key of 0006 checked every issued row on its own (a lookup
-- and a FOR KEY SHARE lock of the account row, i.e. a write to the
-- account's tuple): most of the server's work when the scheduler records
-- 100,000 commands. The same rules, set-based:
--   * a statement that records a command for an unknown account fails
--     whole (SQLSTATE 23503, as the foreign key did);
--   * deleting accounts deletes their issued rows, renaming an account
--     renames them (ON DELETE / ON UPDATE CASCADE).
-- The difference: no lock is held on the account between the check and the
-- commit, so an account deleted by another transaction in that instant can
-- leave issued rows behind. They are harmless and short-lived: an issued
-- row only makes its (tenant, account) count as "in flight" until it is
-- stale_after_s old, and every scheduler run deletes the stale ones; a
-- command produced for an account deleted meanwhile meets a missing
-- account in the worker either way.

ALTER TABLE mail_sync_issued DROP CONSTRAINT mail_sync_issued_account_fkey;
-- It served the foreign key's cascade. Deleting an account now scans the
-- table (at most the commands issued within one staleness threshold: about
-- one row per account), and the scheduler's inserts keep one index less up
-- to date (a third of their index work).
DROP INDEX mail_sync_issued_account;

CREATE FUNCTION lt_issued_check_accounts() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    a text;
BEGIN
    SELECT n.tenant_id, n.account_id INTO t, a
    FROM issued_new n
    WHERE NOT EXISTS (SELECT 1 FROM mail_accounts m
                      WHERE m.tenant_id = n.tenant_id AND m.account_id = n.account_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'issued command for an unknown account: tenant %, account %', t, a
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'mail_sync_issued_account_known';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER mail_sync_issued_account_known
    AFTER INSERT ON mail_sync_issued
    REFERENCING NEW TABLE AS issued_new
    FOR EACH STATEMENT EXECUTE FUNCTION lt_issued_check_accounts();

CREATE FUNCTION lt_issued_accounts_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM mail_sync_issued i USING accounts_old o
    WHERE i.tenant_id = o.tenant_id AND i.account_id = o.account_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER mail_accounts_issued_deleted
    AFTER DELETE ON mail_accounts
    REFERENCING OLD TABLE AS accounts_old
    FOR EACH STATEMENT EXECUTE FUNCTION lt_issued_accounts_deleted();

CREATE FUNCTION lt_issued_account_renamed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mail_sync_issued SET tenant_id = NEW.tenant_id, account_id = NEW.account_id
    WHERE tenant_id = OLD.tenant_id AND account_id = OLD.account_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER mail_accounts_issued_renamed
    AFTER UPDATE OF tenant_id, account_id ON mail_accounts
    FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION lt_issued_account_renamed();
