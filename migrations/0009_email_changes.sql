-- 0009: mailbox changes on the parsed messages (docs/parser.md, "Mailbox
-- changes").
--
-- A message deleted in the mailbox is MARKED (deleted_at), not removed:
-- legal holds and audits need what was there, and a later re-add of the same
-- message (a Gmail untrash, an IMAP message moved back) simply clears the
-- mark. Searches exclude marked rows: query the view `emails_live` (or add
-- `deleted_at IS NULL`), which the partial full-text index below serves.
-- Rows are removed outright only by a retention purge of old marks or an
-- erasure request (both by the operator; see docs/parser.md).
--
-- flags (IMAP flags and keywords) and labels (Gmail labelIds) hold the full
-- current set, sorted and without duplicates; NULL until a change for the
-- message has been applied (mail.raw.v1 carries neither).
--
-- Ordering: each attribute keeps the event time of the fact it holds
-- (*_as_of). A change older than that is ignored, so a late or replayed
-- change never overwrites a newer state; a replayed mail.raw.v1 event older
-- than a deletion rewrites the content but leaves the row deleted.

ALTER TABLE emails
    ADD COLUMN deleted_at     timestamptz,
    ADD COLUMN presence_as_of timestamptz,
    ADD COLUMN flags          text[],
    ADD COLUMN flags_as_of    timestamptz,
    ADD COLUMN labels         text[],
    ADD COLUMN labels_as_of   timestamptz,
    -- When a change last altered deleted_at, flags or labels (server clock).
    ADD COLUMN changed_at     timestamptz;

-- The search of live messages replaces the full-text index of 0004: the GIN
-- index over bodies is the table's largest write cost, so there is one, and
-- it serves what searches ask for (a query over deleted rows too, an audit,
-- is rare and may scan).
DROP INDEX emails_fts;
CREATE INDEX emails_fts_live ON emails USING gin (fts) WHERE deleted_at IS NULL;
-- Retention purge and audit: the deleted rows only.
CREATE INDEX emails_deleted ON emails (deleted_at) WHERE deleted_at IS NOT NULL;

-- What searches and listings read: messages still in the mailbox.
CREATE VIEW emails_live AS SELECT * FROM emails WHERE deleted_at IS NULL;
