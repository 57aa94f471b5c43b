/* libFuzzer target: lt_command_parse on arbitrary bytes. A command that
 * parses must serialize, parse again, and serialize to the same text, and
 * its key check must accept its own account_id; an incremental one (whole
 * seconds) must come out of lt_command_write_incremental as the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_command.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    lt_command_t *c = NULL, *again = NULL;
    lt_err_t r = lt_command_parse((const char *)data, size, &c, err, sizeof(err));
    if (r != LT_OK) {
        if (c || !err[0])
            abort(); /* a rejection always says why and returns nothing */
        return 0;
    }
    lt_buf_t *a = lt_buf_new(4 * LT_COMMAND_MAX_SIZE), *b = lt_buf_new(4 * LT_COMMAND_MAX_SIZE);
    if (lt_command_to_json(c, a) != LT_OK)
        abort();
    if (lt_command_parse(lt_buf_str(a), lt_buf_len(a), &again, err, sizeof(err)) != LT_OK)
        abort();
    if (lt_command_to_json(again, b) != LT_OK || strcmp(lt_buf_str(a), lt_buf_str(b)))
        abort();
    const char *at = lt_command_requested_at(c);
    if (lt_command_kind(c) == LT_SYNC_INCREMENTAL && strlen(at) == 20 &&
        lt_command_requested_at_unix(c) > 0) {
        lt_command_spec_t spec = {
            .command_id = lt_command_id(c),
            .tenant_id = lt_command_tenant_id(c),
            .account_id = lt_command_account_id(c),
            .provider = lt_command_provider(c),
            .scope = lt_command_scope(c),
            .requested_by = lt_command_requested_by(c),
            .requested_at = lt_command_requested_at_unix(c),
            .traceparent = lt_command_traceparent(c),
        };
        lt_buf_t *w = lt_buf_new(4 * LT_COMMAND_MAX_SIZE);
        if (lt_command_write_incremental(&spec, w, NULL, 0, err, sizeof(err)) != LT_OK ||
            strcmp(lt_buf_str(a), lt_buf_str(w)))
            abort();
        lt_buf_destroy(w);
    }
    const char *acct = lt_command_account_id(c);
    if (lt_command_check_key(c, acct, strlen(acct), err, sizeof(err)) != LT_OK)
        abort();
    lt_command_destroy(again);
    lt_command_destroy(c);
    lt_buf_destroy(a);
    lt_buf_destroy(b);
    return 0;
}
