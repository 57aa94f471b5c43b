#include "lt_sched_plan.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_accounts.h"
#include "lt_command.h"

/* ---- command line ---- */

/* "--name value" or "--name=value": *value set, *i advanced. 1 when argv[*i]
 * is this option, 0 when not, -1 when its value is missing. */
static int opt_value(int argc, char *const *argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != 0)
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

lt_err_t lt_sched_args_parse(int argc, char *const *argv, lt_sched_args_t *out, char *errstr,
                             size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    int seen_interval = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            out->help = 1;
        } else if (!strcmp(a, "--version")) {
            out->version = 1;
        } else if (!strcmp(a, "--once")) {
            if (out->once)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "--once given twice");
            out->once = 1;
        } else if (!strcmp(a, "--dry-run")) {
            if (out->dry_run)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "--dry-run given twice");
            out->dry_run = 1;
        } else if ((r = opt_value(argc, argv, &i, "--interval", &v)) != 0) {
            if (r < 0)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "--interval needs SECONDS");
            if (seen_interval++)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "--interval given twice");
            char *end = NULL;
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno || !*v || *end || x < 1 || x > LT_SCHED_INTERVAL_MAX)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                 "--interval \"%s\": expected whole seconds, 1..%d", v,
                                 LT_SCHED_INTERVAL_MAX);
            out->interval_s = (int)x;
        } else if ((r = opt_value(argc, argv, &i, "--provider", &v)) != 0) {
            if (r < 0)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                 "--provider needs gmail or imap");
            if (out->provider)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "--provider given twice");
            if (strcmp(v, "gmail") && strcmp(v, "imap"))
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                 "--provider \"%s\": expected gmail or imap", v);
            out->provider = v;
        } else if ((r = opt_value(argc, argv, &i, "--tenant", &v)) != 0) {
            if (r < 0)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "--tenant needs a tenant id");
            if (out->tenant)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "--tenant given twice");
            if (!lt_account_id_valid(v))
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                 "--tenant: not a tenant id (1-128 of A-Z a-z 0-9 . _ : -)");
            out->tenant = v;
        } else {
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "unknown argument \"%s\"", a);
        }
    }
    if (out->once && out->interval_s)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "--once and --interval exclude each other");
    return LT_OK;
}

/* ---- scopes ---- */

typedef struct {
    char *v[LT_SCHED_SCOPES_MAX];
    size_t n;
    int bad; /* a list the worker refuses, or too many */
} scope_list_t;

/* prefix NULL: an IMAP folder, "INBOX" in any case spelled "INBOX" (the
 * worker's watermark is per folder name, lt_command_imap_mailbox). */
static void scope_add(scope_list_t *l, const char *prefix, const char *v)
{
    if (!prefix) {
        v = lt_command_imap_mailbox(v);
        prefix = "";
    }
    char *s = lt_xmalloc(strlen(prefix) + strlen(v) + 1);
    strcpy(s, prefix);
    strcat(s, v);
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->v[i], s)) {
            free(s);
            return;
        }
    }
    if (l->n == LT_SCHED_SCOPES_MAX) {
        free(s);
        l->bad = 1;
        return;
    }
    l->v[l->n++] = s;
}

/* Config key `key`: a non-empty array of non-empty strings, each added
 * with `prefix`; absent: nothing; anything else marks the list bad. */
static void scope_list(scope_list_t *l, json_object *config, const char *key, const char *prefix)
{
    json_object *list;
    if (!json_object_object_get_ex(config, key, &list))
        return;
    if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0) {
        l->bad = 1;
        return;
    }
    for (size_t i = 0; i < json_object_array_length(list) && !l->bad; i++) {
        json_object *e = json_object_array_get_idx(list, i);
        if (!json_object_is_type(e, json_type_string) || json_object_get_string_len(e) == 0)
            l->bad = 1;
        else
            scope_add(l, prefix, json_object_get_string(e));
    }
}

size_t lt_sched_scopes(const char *provider, json_object *config, int per_scope,
                       lt_sched_scope_fn fn, void *opaque)
{
    scope_list_t l;
    size_t calls = 0;
    memset(&l, 0, sizeof(l));
    if (per_scope && provider && config && json_object_is_type(config, json_type_object)) {
        if (!strcmp(provider, "imap")) {
            scope_list(&l, config, "folders", NULL); /* INBOX in one spelling */
        } else if (!strcmp(provider, "gmail")) {
            /* As the Gmail connector reads them (worker/lt_sync_gmail.c):
             * "scopes" as given, "label_ids" as label:<id>, "query". */
            json_object *q;
            scope_list(&l, config, "scopes", "");
            scope_list(&l, config, "label_ids", "label:");
            if (json_object_object_get_ex(config, "query", &q)) {
                if (json_object_is_type(q, json_type_string) && json_object_get_string_len(q))
                    scope_add(&l, "", json_object_get_string(q));
                else
                    l.bad = 1;
            }
        }
    }
    if (l.bad || l.n == 0) { /* the worker's defaults, or its own error report */
        fn(NULL, opaque);
        calls = 1;
    } else {
        for (size_t i = 0; i < l.n; i++) {
            calls++;
            if (fn(l.v[i], opaque))
                break;
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    return calls;
}

/* ---- commands ---- */

lt_err_t lt_sched_command(const lt_sched_cmd_t *c, lt_buf_t *out,
                          char command_id[LT_SCHED_COMMAND_ID_SIZE], char *errstr,
                          size_t errstr_size)
{
    lt_provider_t p;
    command_id[0] = 0;
    if (!c->provider || !c->tenant || !c->account_id || !c->requested_by)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "command: tenant, account, provider and requested_by are required");
    if (!strcmp(c->provider, "gmail"))
        p = LT_PROVIDER_GMAIL;
    else if (!strcmp(c->provider, "imap"))
        p = LT_PROVIDER_IMAP;
    else
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "provider: \"%s\" is not gmail or imap", c->provider);
    lt_command_spec_t spec = {
        .tenant_id = c->tenant,
        .account_id = c->account_id,
        .provider = p,
        .scope = c->scope,
        .requested_by = c->requested_by,
        .traceparent = c->traceparent,
        .command_id = c->command_id,
    };
    /* Written directly: the same bytes and checks as building the command
     * and serializing it, without a JSON tree and a parse per command. */
    return lt_command_write_incremental(&spec, out, command_id, LT_SCHED_COMMAND_ID_SIZE, errstr,
                                        errstr_size);
}

/* ---- the set ---- */

struct lt_sched_set_s {
    char **slots; /* "tenant\0account\0" or NULL; open addressing */
    size_t cap;   /* a power of two */
    size_t count;
    size_t max_entries;
};

static uint64_t pair_hash(const char *tenant, const char *account)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = tenant; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL; /* separator: not a valid id byte */
    for (const char *p = account; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return h;
}

static int pair_eq(const char *slot, const char *tenant, const char *account)
{
    return !strcmp(slot, tenant) && !strcmp(slot + strlen(slot) + 1, account);
}

/* The slot of the pair, or the empty slot where it would go. */
static size_t find(const lt_sched_set_t *s, const char *tenant, const char *account)
{
    size_t mask = s->cap - 1, i = (size_t)pair_hash(tenant, account) & mask;
    while (s->slots[i] && !pair_eq(s->slots[i], tenant, account))
        i = (i + 1) & mask;
    return i;
}

lt_sched_set_t *lt_sched_set_new(size_t max_entries)
{
    lt_sched_set_t *s = lt_xcalloc(1, sizeof(*s));
    s->cap = 64;
    s->slots = lt_xcalloc(s->cap, sizeof(char *));
    s->max_entries = max_entries;
    return s;
}

void lt_sched_set_clear(lt_sched_set_t *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i]);
        s->slots[i] = NULL;
    }
    s->count = 0;
}

void lt_sched_set_destroy(lt_sched_set_t *s)
{
    if (!s)
        return;
    lt_sched_set_clear(s);
    free(s->slots);
    free(s);
}

static void grow(lt_sched_set_t *s)
{
    char **old = s->slots;
    size_t oldcap = s->cap;
    s->cap *= 2;
    s->slots = lt_xcalloc(s->cap, sizeof(char *));
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i])
            continue;
        const char *t = old[i], *a = old[i] + strlen(old[i]) + 1;
        s->slots[find(s, t, a)] = old[i];
    }
    free(old);
}

lt_err_t lt_sched_set_add(lt_sched_set_t *s, const char *tenant, const char *account_id)
{
    size_t i = find(s, tenant, account_id);
    if (s->slots[i])
        return LT_OK;
    if (s->count >= s->max_entries)
        return LT_ERR_TOO_BIG;
    if (2 * (s->count + 1) > s->cap) {
        grow(s);
        i = find(s, tenant, account_id);
    }
    size_t lt = strlen(tenant), la = strlen(account_id);
    char *e = lt_xmalloc(lt + la + 2);
    memcpy(e, tenant, lt + 1);
    memcpy(e + lt + 1, account_id, la + 1);
    s->slots[i] = e;
    s->count++;
    return LT_OK;
}

int lt_sched_set_has(const lt_sched_set_t *s, const char *tenant, const char *account_id)
{
    return s->slots[find(s, tenant, account_id)] != NULL;
}

size_t lt_sched_set_count(const lt_sched_set_t *s)
{
    return s->count;
}
