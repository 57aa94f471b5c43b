/* libFuzzer target: every lt_gmail_json parser on arbitrary bytes. A
 * failure always says why and leaves nothing allocated; whatever parses
 * holds only URL-safe ids (they are pasted into request URLs). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_gmail_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_page(lt_err_t r, lt_gmail_page_t *p, const char *err)
{
    if (r != LT_OK) {
        if (p->refs || p->next_page_token || !err[0])
            abort();
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (!lt_gmail_id_valid(p->refs[i].id, strlen(p->refs[i].id)))
            abort();
        if (p->refs[i].thread_id[0] &&
            !lt_gmail_id_valid(p->refs[i].thread_id, strlen(p->refs[i].thread_id)))
            abort();
        for (size_t k = 0; k < i; k++) /* history: each message once */
            if (p->history_id && !strcmp(p->refs[k].id, p->refs[i].id))
                abort();
    }
    lt_gmail_page_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char err[256] = "";
    lt_gmail_token_t tok;
    if (lt_gmail_parse_token(s, size, &tok, err, sizeof(err)) == LT_OK) {
        if (!tok.access_token[0] || tok.expires_in_s < 0)
            abort();
    } else if (!err[0]) {
        abort();
    }
    err[0] = 0;
    lt_err_t r = lt_gmail_token_error(400, s, size, err, sizeof(err));
    if (r == LT_OK || !err[0])
        abort();

    uint64_t h;
    err[0] = 0;
    if (lt_gmail_parse_profile(s, size, &h, err, sizeof(err)) != LT_OK && !err[0])
        abort();

    lt_gmail_watch_reply_t wr;
    err[0] = 0;
    r = lt_gmail_parse_watch(s, size, &wr, err, sizeof(err));
    if (r == LT_OK ? (!wr.history_id || wr.expiration_ms <= 0) : !err[0])
        abort();

    lt_gmail_page_t p;
    err[0] = 0;
    r = lt_gmail_parse_list(s, size, &p, err, sizeof(err));
    if (r == LT_OK && p.result_size_estimate < -1)
        abort();
    check_page(r, &p, err);
    err[0] = 0;
    r = lt_gmail_parse_history(s, size, "INBOX", &p, err, sizeof(err));
    if (r == LT_OK && (p.last_record_id > p.history_id || p.result_size_estimate != -1))
        abort();
    check_page(r, &p, err);

    char id[LT_GMAIL_ID_MAX + 1];
    err[0] = 0;
    if (lt_gmail_parse_labels_find(s, size, "Receipts", id, err, sizeof(err)) == LT_OK &&
        !lt_gmail_id_valid(id, strlen(id)))
        abort();

    lt_buf_t *raw = lt_buf_new(1 << 20);
    lt_gmail_message_t m;
    err[0] = 0;
    r = lt_gmail_parse_message(s, size, &m, raw, err, sizeof(err));
    if (r == LT_OK && (!lt_gmail_id_valid(m.id, strlen(m.id)) || m.internal_date_ms < 0))
        abort();
    if (r != LT_OK && !err[0])
        abort();
    lt_buf_reset(raw);
    lt_gmail_b64url_decode(s, size, raw, err, sizeof(err));
    lt_buf_destroy(raw);

    lt_gmail_verdict_t v;
    lt_gmail_classify(429, s, size, &v);
    if (v.action != LT_GMAIL_RETRY)
        abort();
    lt_gmail_classify(403, s, size, &v);
    if (v.action != LT_GMAIL_RETRY && v.action != LT_GMAIL_FAIL)
        abort();
    return 0;
}
