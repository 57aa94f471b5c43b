/* libFuzzer target: the scheduler's planning over an arbitrary account
 * config (config_json comes from the database, written by people and
 * tools). For both providers, per scope and per account: lt_sched_scopes
 * makes at least one call, each scope at most once; every scope becomes a
 * command the worker's parser accepts with that scope, or is refused with
 * LT_ERR_INVALID and a reason (a scope the contract forbids). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_command.h"
#include "lt_sched_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const char *provider;
    const char *seen[LT_SCHED_SCOPES_MAX + 1];
    size_t n;
} ctx_t;

static int on_scope(const char *scope, void *opaque)
{
    ctx_t *c = opaque;
    for (size_t i = 0; i < c->n; i++)
        if ((scope == NULL) != (c->seen[i] == NULL) || (scope && !strcmp(scope, c->seen[i])))
            abort(); /* a scope twice, or "all" mixed with scopes */
    if (c->n > LT_SCHED_SCOPES_MAX)
        abort();
    c->seen[c->n++] = scope;

    char id[LT_SCHED_COMMAND_ID_SIZE], err[512] = "";
    lt_buf_t *b = lt_buf_new(LT_COMMAND_MAX_SIZE);
    lt_sched_cmd_t cmd = {"fuzz", "acct", c->provider, scope, "scheduler", NULL, NULL};
    lt_err_t e = lt_sched_command(&cmd, b, id, err, sizeof(err));
    if (e == LT_OK) {
        lt_command_t *parsed = NULL;
        if (lt_command_parse(lt_buf_str(b), lt_buf_len(b), &parsed, err, sizeof(err)) != LT_OK)
            abort();
        const char *ps = lt_command_scope(parsed);
        if ((ps == NULL) != (scope == NULL) || (ps && strcmp(ps, scope)))
            abort();
        if (strcmp(lt_command_id(parsed), id))
            abort();
        lt_command_destroy(parsed);
    } else if (e != LT_ERR_INVALID || !err[0] || !scope) {
        abort(); /* only a scope can make a command invalid, and it says why */
    }
    lt_buf_destroy(b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    json_tokener *tok = json_tokener_new();
    json_object *config = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    json_tokener_free(tok);
    static const char *const providers[] = {"imap", "gmail"};
    for (int p = 0; p < 2; p++) {
        for (int per_scope = 0; per_scope < 2; per_scope++) {
            ctx_t c;
            memset(&c, 0, sizeof(c));
            c.provider = providers[p];
            size_t calls = lt_sched_scopes(c.provider, config, per_scope, on_scope, &c);
            if (calls == 0 || calls != c.n || (!per_scope && (calls != 1 || c.seen[0])))
                abort();
        }
    }
    json_object_put(config);
    return 0;
}
