/* lt_command: the sync command contract, topic lattice.mail.sync.cmd.v1.
 *
 * A command is a JSON object (so kcat and Airflow users can write one by
 * hand), Kafka key = account_id. The contract is
 * schemas/sync-command.v1.schema.json; docs/commands.md explains it.
 * lt_command_parse() is strict: unknown fields, wrong types, bad enums, bad
 * dates, reversed ranges, duplicate field names, non-UTF-8 input and input
 * over LT_COMMAND_MAX_SIZE are rejected, with a reason that names the field
 * ("backfill.start_date: ..."). A rejected command can never succeed as
 * written: the worker sends it to the DLQ.
 *
 * Ownership: an lt_command_t owns all of its strings; getters return
 * borrowed pointers valid until lt_command_destroy(). */
#ifndef LT_COMMAND_H
#define LT_COMMAND_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lt_buf.h"
#include "lt_err.h"
#include "lt_provider.h"

#define LT_COMMAND_SCHEMA "lattice.mail.sync.cmd.v1"
#define LT_COMMAND_MAX_SIZE (64 * 1024) /* bytes of JSON */
#define LT_COMMAND_ID_MAX 128           /* command_id, tenant_id, account_id */
#define LT_COMMAND_SCOPE_MAX 1024       /* scope and backfill.folder, characters */
#define LT_COMMAND_REQUESTED_BY_MAX 256 /* characters */

typedef enum {
    LT_SYNC_INCREMENTAL = 1,
    LT_SYNC_BACKFILL = 2,
} lt_sync_kind_t;

typedef struct lt_command_s lt_command_t;

/* "incremental" / "backfill" (NULL for other values). */
const char *lt_sync_kind_name(lt_sync_kind_t k);

/* Parse and validate `len` bytes of JSON (no NUL needed). On success *out is
 * a new command owned by the caller. On failure *out is NULL, errstr names
 * the field and the problem, and the result is LT_ERR_TOO_BIG (input over
 * LT_COMMAND_MAX_SIZE) or LT_ERR_INVALID (anything else). */
lt_err_t lt_command_parse(const char *json, size_t len, lt_command_t **out, char *errstr,
                          size_t errstr_size);

void lt_command_destroy(lt_command_t *cmd);

/* Append the command as one line of JSON (fields in a fixed order) to `out`.
 * Parsing the result gives an equal command. LT_ERR_TOO_BIG if `out`'s cap
 * is reached (out then holds a partial line: reset it). */
lt_err_t lt_command_to_json(const lt_command_t *cmd, lt_buf_t *out);

/* Check that a Kafka message key equals the command's account_id (the topic
 * is keyed by account_id so that one account's commands stay in order).
 * LT_ERR_INVALID with a reason otherwise, also for a missing key. */
lt_err_t lt_command_check_key(const lt_command_t *cmd, const void *key, size_t keylen, char *errstr,
                              size_t errstr_size);

/* Getters. Strings are borrowed. */
const char *lt_command_id(const lt_command_t *cmd);
const char *lt_command_tenant_id(const lt_command_t *cmd);
const char *lt_command_account_id(const lt_command_t *cmd);
lt_provider_t lt_command_provider(const lt_command_t *cmd);
lt_sync_kind_t lt_command_kind(const lt_command_t *cmd);
/* Gmail label/query scope or IMAP folder; NULL = all configured scopes.
 * Always NULL for an IMAP backfill (its folder is lt_command_backfill_folder). */
const char *lt_command_scope(const lt_command_t *cmd);
const char *lt_command_requested_at(const lt_command_t *cmd); /* RFC 3339, as sent */
time_t lt_command_requested_at_unix(const lt_command_t *cmd); /* whole seconds */
const char *lt_command_requested_by(const lt_command_t *cmd);
const char *lt_command_traceparent(const lt_command_t *cmd); /* NULL if none */

/* Backfill (kind = backfill). Gmail: dates "YYYY-MM-DD", both inclusive;
 * NULL otherwise. IMAP: folder (NULL otherwise) and the UID range, 0 when
 * not given (0 is never a valid UID). */
const char *lt_command_backfill_start_date(const lt_command_t *cmd);
const char *lt_command_backfill_end_date(const lt_command_t *cmd);
const char *lt_command_backfill_folder(const lt_command_t *cmd);
uint32_t lt_command_backfill_start_uid(const lt_command_t *cmd);
uint32_t lt_command_backfill_end_uid(const lt_command_t *cmd);

/* The one spelling of an IMAP mailbox name for scopes, watermarks and
 * events: "INBOX" for INBOX in any case (RFC 3501 5.1 and RFC 9051 5.1:
 * the name INBOX is case-insensitive), every other name as given (they are
 * case-sensitive; "inbox/Sub" stays as it is: the RFCs make only INBOX
 * itself case-insensitive, and the hierarchy separator is the server's).
 * Returns `name` or a static "INBOX"; NULL for NULL. lt_command_parse
 * applies it to an IMAP command's scope and backfill.folder. */
const char *lt_command_imap_mailbox(const char *name);

/* Builders for the scheduler and tools. Plain value carriers; every string
 * is borrowed and copied. The result is checked by the same rules as
 * lt_command_parse (it is built by serializing and parsing), so a builder
 * never makes a command the worker would reject. */
typedef struct {
    const char *command_id; /* NULL: a random "cmd-<32 hex>" */
    const char *tenant_id;
    const char *account_id;
    lt_provider_t provider;
    const char *scope; /* NULL: all configured scopes */
    const char *requested_by;
    time_t requested_at;     /* 0: now */
    const char *traceparent; /* NULL: none */
} lt_command_spec_t;

typedef struct {
    const char *start_date; /* gmail: "YYYY-MM-DD", inclusive */
    const char *end_date;   /* gmail: "YYYY-MM-DD", inclusive */
    const char *folder;     /* imap: required */
    uint32_t start_uid;     /* imap: 0 = from the first message */
    uint32_t end_uid;       /* imap: 0 = to the last message */
} lt_command_backfill_t;

lt_err_t lt_command_new_incremental(const lt_command_spec_t *spec, lt_command_t **out, char *errstr,
                                    size_t errstr_size);
/* The JSON of lt_command_new_incremental(spec) + lt_command_to_json, written
 * directly (no JSON tree, no parse): the same bytes, the same checks and
 * reasons as lt_command_parse, several times cheaper (the scheduler writes
 * one per account and run). The command id used (spec's or a fresh one) is
 * copied to id_out. Nothing is appended on failure. */
lt_err_t lt_command_write_incremental(const lt_command_spec_t *spec, lt_buf_t *out, char *id_out,
                                      size_t id_out_size, char *errstr, size_t errstr_size);
lt_err_t lt_command_new_backfill(const lt_command_spec_t *spec, const lt_command_backfill_t *bf,
                                 lt_command_t **out, char *errstr, size_t errstr_size);

#endif
