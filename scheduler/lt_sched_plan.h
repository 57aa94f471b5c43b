/* lt_sched_plan: the pure parts of lattice-scheduler (no servers): its
 * command line, which scopes of an account get a command, the commands
 * themselves, and the set of accounts in flight. */
#ifndef LT_SCHED_PLAN_H
#define LT_SCHED_PLAN_H

#include <stddef.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_err.h"

/* ---- command line ---- */

#define LT_SCHED_INTERVAL_MAX (7 * 24 * 3600)

/* What the command line asked for; strings point into argv. */
typedef struct {
    int help;
    int version;
    int once;             /* --once */
    int interval_s;       /* --interval N; 0 = not given */
    int dry_run;          /* --dry-run */
    const char *provider; /* --provider gmail|imap; NULL = not given */
    const char *tenant;   /* --tenant T; NULL = not given */
} lt_sched_args_t;

/* Parse argv[1..]. Accepts "--opt value" and "--opt=value". LT_ERR_INVALID
 * with the reason for an unknown or repeated option, a missing or bad value
 * (provider not gmail|imap, tenant not an id, interval not 1..
 * LT_SCHED_INTERVAL_MAX) or --once together with --interval. */
lt_err_t lt_sched_args_parse(int argc, char *const *argv, lt_sched_args_t *out, char *errstr,
                             size_t errstr_size);

/* ---- scopes ---- */

/* Called once per command to make for an account: scope NULL = one command
 * for all of the account's configured scopes. Non-zero stops. */
typedef int (*lt_sched_scope_fn)(const char *scope, void *opaque);

#define LT_SCHED_SCOPES_MAX 256

/* The scopes of one account, as the worker's connectors read the config.
 * per_scope = 0: one call with NULL. Otherwise one call per configured
 * scope, in config order, duplicates once:
 *   imap:  the strings of "folders";
 *   gmail: the strings of "scopes", then "label:<id>" for each of
 *          "label_ids", then "query".
 * NULL once when the config names none (the worker uses its default:
 * INBOX), more than LT_SCHED_SCOPES_MAX, or names them in a form the worker
 * refuses (it then reports the account's problem itself). Returns the
 * number of calls made. */
size_t lt_sched_scopes(const char *provider, json_object *config, int per_scope,
                       lt_sched_scope_fn fn, void *opaque);

/* ---- commands ---- */

/* A value carrier; strings borrowed. */
typedef struct {
    const char *tenant;
    const char *account_id;
    const char *provider; /* "gmail" | "imap" */
    const char *scope;    /* NULL = all scopes */
    const char *requested_by;
    const char *traceparent; /* NULL = none */
    const char *command_id;  /* NULL = a fresh random one */
} lt_sched_cmd_t;

#define LT_SCHED_COMMAND_ID_SIZE 64

/* Build one incremental command with c->command_id or a fresh one (the
 * rules of lt_command's builder: the worker's parser accepts it) and append it to `out` as one
 * line of JSON without the newline. command_id receives its id.
 * LT_ERR_INVALID when a value breaks the contract (reason in errstr),
 * LT_ERR_TOO_BIG when `out` is full. */
lt_err_t lt_sched_command(const lt_sched_cmd_t *c, lt_buf_t *out,
                          char command_id[LT_SCHED_COMMAND_ID_SIZE], char *errstr,
                          size_t errstr_size);

/* ---- the set of accounts in flight ---- */

typedef struct lt_sched_set_s lt_sched_set_t;

/* An empty set of (tenant, account) pairs holding at most max_entries. */
lt_sched_set_t *lt_sched_set_new(size_t max_entries);
void lt_sched_set_destroy(lt_sched_set_t *s);
/* Add a pair (copied); adding a present pair is a no-op. LT_ERR_TOO_BIG
 * beyond max_entries. */
lt_err_t lt_sched_set_add(lt_sched_set_t *s, const char *tenant, const char *account_id);
int lt_sched_set_has(const lt_sched_set_t *s, const char *tenant, const char *account_id);
size_t lt_sched_set_count(const lt_sched_set_t *s);
/* Remove every entry (keeps max_entries). */
void lt_sched_set_clear(lt_sched_set_t *s);

#endif
