#include "lt_gmail_json.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "lt_b64.h"

#define JSON_DEPTH 64

int lt_gmail_id_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > LT_GMAIL_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Parse the whole body as one JSON object (trailing whitespace allowed). */
static lt_err_t parse_object(const char *body, size_t len, const char *what, json_object **out,
                             char *errstr, size_t n)
{
    *out = NULL;
    if (!body || len == 0)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "%s: empty body", what);
    if (len > INT_MAX)
        return lt_seterr(errstr, n, LT_ERR_TOO_BIG, "%s: body too large", what);
    json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
    json_object *o = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!o || jerr != json_tokener_success) {
        json_object_put(o);
        if (jerr == json_tokener_continue)
            return lt_seterr(errstr, n, LT_ERR_TEMPORARY,
                             "%s: truncated JSON (%zu bytes, the document is not complete)", what,
                             len);
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "%s: malformed JSON at byte %zu: %s", what,
                         used, json_tokener_error_desc(jerr));
    }
    for (size_t i = used; i < len; i++) {
        if (!isspace((unsigned char)body[i])) {
            json_object_put(o);
            return lt_seterr(errstr, n, LT_ERR_TEMPORARY,
                             "%s: malformed JSON: garbage after the document at byte %zu", what, i);
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "%s: JSON is not an object", what);
    }
    *out = o;
    return LT_OK;
}

static const char *get_str(json_object *o, const char *key, size_t *len)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

int lt_gmail_json_uint64(json_object *v, uint64_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x == INT64_MAX) /* INT64_MAX: json-c's saturation of a larger number */
            return -1;
        *out = (uint64_t)x;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -1;
    const char *s = json_object_get_string(v);
    size_t l = (size_t)json_object_get_string_len(v);
    if (l == 0 || l > 20)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < l; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static int get_u64(json_object *o, const char *key, uint64_t *out)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? lt_gmail_json_uint64(v, out) : -1;
}

static int copy_id(json_object *o, const char *key, char out[LT_GMAIL_ID_MAX + 1])
{
    size_t l;
    const char *s = get_str(o, key, &l);
    if (!s || !lt_gmail_id_valid(s, l))
        return -1;
    memcpy(out, s, l);
    out[l] = 0;
    return 0;
}

/* --- token --------------------------------------------------------------- */

lt_err_t lt_gmail_parse_token(const char *body, size_t len, lt_gmail_token_t *out, char *errstr,
                              size_t errstr_size)
{
    json_object *o;
    lt_err_t err = parse_object(body, len, "token response", &o, errstr, errstr_size);
    if (err)
        return err;
    memset(out, 0, sizeof(*out));
    size_t l = 0;
    const char *t = get_str(o, "access_token", &l);
    if (!t || l == 0 || l > LT_GMAIL_TOKEN_MAX) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "token response: no usable \"access_token\"");
        goto out;
    }
    for (size_t i = 0; i < l; i++) {
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                            "token response: \"access_token\" has characters not allowed in a "
                            "header");
            goto out;
        }
    }
    memcpy(out->access_token, t, l);
    out->access_token[l] = 0;
    uint64_t e = 3600;
    json_object *v;
    if (json_object_object_get_ex(o, "expires_in", &v) && get_u64(o, "expires_in", &e)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "token response: \"expires_in\" is not a number");
        goto out;
    }
    out->expires_in_s = e > 86400 * 366 ? 86400 * 366 : (int64_t)e;
out:
    json_object_put(o);
    if (err)
        memset(out, 0, sizeof(*out));
    return err;
}

static void printable(char *dst, size_t dsz, const char *src, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; src && i < len && j + 1 < dsz; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (dsz)
        dst[j] = 0;
}

lt_err_t lt_gmail_token_error(long http_status, const char *body, size_t len, char *errstr,
                              size_t errstr_size)
{
    json_object *o = NULL;
    char e2[64];
    char code[64] = "", desc[200] = "";
    if (len && parse_object(body, len, "token error", &o, e2, sizeof(e2)) == LT_OK) {
        size_t l;
        const char *s = get_str(o, "error", &l);
        if (s)
            printable(code, sizeof(code), s, l);
        s = get_str(o, "error_description", &l);
        if (s)
            printable(desc, sizeof(desc), s, l);
    }
    json_object_put(o);
    lt_err_t cls;
    if (!strcmp(code, "invalid_grant") || !strcmp(code, "invalid_client") ||
        !strcmp(code, "unauthorized_client"))
        cls = LT_ERR_REAUTH;
    else if (http_status >= 500 || http_status == 429 || http_status == 408 || http_status == 0)
        cls = LT_ERR_TEMPORARY;
    else if (!code[0] && http_status != 400 && http_status != 401)
        cls = LT_ERR_TEMPORARY; /* not OAuth's answer (a proxy page): try again */
    else
        cls = LT_ERR_FINAL;
    return lt_seterr(errstr, errstr_size, cls, "token endpoint: HTTP %ld %s%s%s", http_status,
                     code[0] ? code : "(no OAuth error)", desc[0] ? ": " : "", desc);
}

/* --- profile, list, history, labels -------------------------------------- */

lt_err_t lt_gmail_parse_profile(const char *body, size_t len, uint64_t *history_id, char *errstr,
                                size_t errstr_size)
{
    json_object *o;
    lt_err_t err = parse_object(body, len, "getProfile", &o, errstr, errstr_size);
    if (err)
        return err;
    if (get_u64(o, "historyId", history_id) || *history_id == 0)
        err =
            lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "getProfile: no valid \"historyId\"");
    json_object_put(o);
    return err;
}

lt_err_t lt_gmail_parse_watch(const char *body, size_t len, lt_gmail_watch_reply_t *out,
                              char *errstr, size_t errstr_size)
{
    json_object *o;
    memset(out, 0, sizeof(*out));
    lt_err_t err = parse_object(body, len, "watch", &o, errstr, errstr_size);
    if (err)
        return err;
    uint64_t exp = 0;
    if (get_u64(o, "historyId", &out->history_id) || out->history_id == 0 ||
        get_u64(o, "expiration", &exp) || exp == 0 || exp > (uint64_t)INT64_MAX)
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "watch: no valid \"historyId\" and \"expiration\"");
    else
        out->expiration_ms = (int64_t)exp;
    json_object_put(o);
    return err;
}

void lt_gmail_page_free(lt_gmail_page_t *p)
{
    if (!p)
        return;
    free(p->refs);
    free(p->next_page_token);
    memset(p, 0, sizeof(*p));
}

static lt_err_t page_token(json_object *o, lt_gmail_page_t *out, const char *what, char *errstr,
                           size_t n)
{
    json_object *v;
    if (!json_object_object_get_ex(o, "nextPageToken", &v) ||
        json_object_is_type(v, json_type_null))
        return LT_OK;
    size_t l;
    const char *t = get_str(o, "nextPageToken", &l);
    if (!t || l > LT_GMAIL_TOKEN_MAX)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "%s: bad \"nextPageToken\"", what);
    if (l == 0)
        return LT_OK;
    for (size_t i = 0; i < l; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "%s: bad \"nextPageToken\"", what);
    out->next_page_token = lt_xstrdup(t);
    return LT_OK;
}

static void add_ref(lt_gmail_page_t *p, size_t *alloc, const lt_gmail_ref_t *r)
{
    if (p->n == *alloc) {
        *alloc = *alloc ? *alloc * 2 : 64;
        p->refs = lt_xrealloc(p->refs, *alloc * sizeof(*p->refs));
    }
    p->refs[p->n++] = *r;
}

lt_err_t lt_gmail_parse_list(const char *body, size_t len, lt_gmail_page_t *out, char *errstr,
                             size_t errstr_size)
{
    json_object *o, *msgs;
    memset(out, 0, sizeof(*out));
    out->result_size_estimate = -1;
    lt_err_t err = parse_object(body, len, "messages.list", &o, errstr, errstr_size);
    if (err)
        return err;
    size_t alloc = 0;
    uint64_t est;
    if (!get_u64(o, "resultSizeEstimate", &est) && est <= (uint64_t)INT64_MAX)
        out->result_size_estimate = (int64_t)est;
    if (json_object_object_get_ex(o, "messages", &msgs)) {
        if (!json_object_is_type(msgs, json_type_array)) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                            "messages.list: \"messages\" is not an array");
            goto out;
        }
        size_t cnt = json_object_array_length(msgs);
        for (size_t i = 0; i < cnt; i++) {
            json_object *m = json_object_array_get_idx(msgs, i);
            lt_gmail_ref_t r;
            memset(&r, 0, sizeof(r));
            if (!json_object_is_type(m, json_type_object) || copy_id(m, "id", r.id)) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                "messages.list: messages[%zu] has no valid \"id\"", i);
                goto out;
            }
            if (copy_id(m, "threadId", r.thread_id))
                r.thread_id[0] = 0;
            add_ref(out, &alloc, &r);
        }
    }
    err = page_token(o, out, "messages.list", errstr, errstr_size);
out:
    json_object_put(o);
    if (err)
        lt_gmail_page_free(out);
    return err;
}

static int page_has(const lt_gmail_page_t *p, const char *id)
{
    /* Pages are at most a few hundred entries: a linear scan is fine. */
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->refs[i].id, id))
            return 1;
    return 0;
}

static int labels_contain(json_object *labels, const char *label)
{
    if (!labels || !json_object_is_type(labels, json_type_array))
        return 0;
    size_t n = json_object_array_length(labels);
    for (size_t i = 0; i < n; i++) {
        json_object *l = json_object_array_get_idx(labels, i);
        if (json_object_is_type(l, json_type_string) && !strcmp(json_object_get_string(l), label))
            return 1;
    }
    return 0;
}

/* One entry of messagesAdded / labelsAdded. 1 taken, 0 skipped, -1 bad. */
static int history_entry(json_object *e, int label_change, const char *label, uint64_t rec_id,
                         lt_gmail_page_t *out, size_t *alloc)
{
    json_object *m, *labs = NULL;
    if (!json_object_is_type(e, json_type_object) || !json_object_object_get_ex(e, "message", &m) ||
        !json_object_is_type(m, json_type_object))
        return -1;
    lt_gmail_ref_t r;
    memset(&r, 0, sizeof(r));
    if (copy_id(m, "id", r.id))
        return -1;
    if (copy_id(m, "threadId", r.thread_id))
        r.thread_id[0] = 0;
    r.history_id = rec_id;
    if (label_change) {
        json_object_object_get_ex(e, "labelIds", &labs);
        if (!label || !labels_contain(labs, label))
            return 0;
    }
    if (page_has(out, r.id))
        return 0;
    add_ref(out, alloc, &r);
    return 1;
}

lt_err_t lt_gmail_parse_history(const char *body, size_t len, const char *label,
                                lt_gmail_page_t *out, char *errstr, size_t errstr_size)
{
    json_object *o, *hist;
    memset(out, 0, sizeof(*out));
    out->result_size_estimate = -1;
    lt_err_t err = parse_object(body, len, "history.list", &o, errstr, errstr_size);
    if (err)
        return err;
    size_t alloc = 0;
    if (get_u64(o, "historyId", &out->history_id) || out->history_id == 0) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "history.list: no valid \"historyId\"");
        goto out;
    }
    if (json_object_object_get_ex(o, "history", &hist)) {
        if (!json_object_is_type(hist, json_type_array)) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                            "history.list: \"history\" is not an array");
            goto out;
        }
        size_t cnt = json_object_array_length(hist);
        for (size_t i = 0; i < cnt; i++) {
            json_object *rec = json_object_array_get_idx(hist, i), *arr;
            uint64_t rid = 0;
            if (!json_object_is_type(rec, json_type_object) || get_u64(rec, "id", &rid)) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                "history.list: history[%zu] has no valid \"id\"", i);
                goto out;
            }
            if (rid < out->last_record_id) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                "history.list: record ids out of order at history[%zu]", i);
                goto out;
            }
            out->last_record_id = rid;
            static const char *const keys[2] = {"messagesAdded", "labelsAdded"};
            for (int k = 0; k < 2; k++) {
                if (!json_object_object_get_ex(rec, keys[k], &arr))
                    continue;
                if (!json_object_is_type(arr, json_type_array)) {
                    err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                    "history.list: history[%zu].%s is not an array", i, keys[k]);
                    goto out;
                }
                size_t m = json_object_array_length(arr);
                for (size_t j = 0; j < m; j++) {
                    if (history_entry(json_object_array_get_idx(arr, j), k == 1, label, rid, out,
                                      &alloc) < 0) {
                        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                        "history.list: history[%zu].%s[%zu] has no valid message",
                                        i, keys[k], j);
                        goto out;
                    }
                }
            }
        }
    }
    if (out->last_record_id > out->history_id) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "history.list: a record id is beyond the mailbox historyId");
        goto out;
    }
    err = page_token(o, out, "history.list", errstr, errstr_size);
out:
    json_object_put(o);
    if (err)
        lt_gmail_page_free(out);
    return err;
}

/* labelIds (an array of ids) joined by ',' into out (cap bytes); 0 ok
 * (absent: *present 0, out ""), 1 longer than cap (out "": a well-formed
 * list the caller cannot hold is no reason to refuse the answer), -1 bad. */
static int join_labels(json_object *m, const char *key, char *out, size_t cap, int *present)
{
    json_object *arr;
    size_t used = 0;
    out[0] = 0;
    *present = 0;
    if (!json_object_object_get_ex(m, key, &arr) || json_object_is_type(arr, json_type_null))
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return -1;
    *present = 1;
    int over = 0;
    for (size_t i = 0, n = json_object_array_length(arr); i < n; i++) {
        json_object *l = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(l, json_type_string))
            return -1;
        size_t len = (size_t)json_object_get_string_len(l);
        const char *v = json_object_get_string(l);
        if (!lt_gmail_id_valid(v, len))
            return -1;
        if (over || used + len + 2 > cap) {
            over = 1;
            continue;
        }
        if (used)
            out[used++] = ',';
        memcpy(out + used, v, len);
        used += len;
        out[used] = 0;
    }
    if (over)
        out[0] = 0;
    return over;
}

int lt_gmail_labels_have(const char *labels, const char *label)
{
    size_t l = strlen(label);
    if (!labels || !l)
        return 0;
    for (const char *p = labels; *p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n == l && !memcmp(p, label, l))
            return 1;
        if (!c)
            break;
        p = c + 1;
    }
    return 0;
}

void lt_gmail_hist_free(lt_gmail_hist_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        free(h->e[i].labels);
        free(h->e[i].changed);
    }
    free(h->e);
    lt_gmail_page_free(&h->page);
    memset(h, 0, sizeof(*h));
}

/* One entry of a record's messagesAdded / messagesDeleted / labelsAdded /
 * labelsRemoved. 0 ok, -1 bad. */
static int hist_entry_all(json_object *e, lt_gmail_hist_kind_t kind, uint64_t rec_id,
                          lt_gmail_hist_t *out, size_t *alloc)
{
    json_object *m;
    if (!json_object_is_type(e, json_type_object) || !json_object_object_get_ex(e, "message", &m) ||
        !json_object_is_type(m, json_type_object))
        return -1;
    lt_gmail_hist_entry_t x;
    memset(&x, 0, sizeof(x));
    x.kind = kind;
    if (copy_id(m, "id", x.ref.id))
        return -1;
    if (copy_id(m, "threadId", x.ref.thread_id))
        x.ref.thread_id[0] = 0;
    x.ref.history_id = rec_id;
    char buf[LT_GMAIL_LABELS_TEXT_MAX];
    int present, r = join_labels(m, "labelIds", buf, sizeof(buf), &present);
    if (r < 0)
        return -1;
    x.labels_over = r > 0;
    if (present && !r)
        x.labels = lt_xstrdup(buf);
    if (kind == LT_GMAIL_HIST_LABELS_ADDED || kind == LT_GMAIL_HIST_LABELS_REMOVED) {
        if ((r = join_labels(e, "labelIds", buf, sizeof(buf), &present)) < 0) {
            free(x.labels);
            return -1;
        }
        x.changed = lt_xstrdup(r ? "" : buf);
    }
    if (out->n == *alloc) {
        *alloc = *alloc ? *alloc * 2 : 64;
        out->e = lt_xrealloc(out->e, *alloc * sizeof(*out->e));
    }
    out->e[out->n++] = x;
    return 0;
}

lt_err_t lt_gmail_parse_history_all(const char *body, size_t len, lt_gmail_hist_t *out,
                                    char *errstr, size_t errstr_size)
{
    json_object *o, *hist;
    memset(out, 0, sizeof(*out));
    out->page.result_size_estimate = -1;
    lt_err_t err = parse_object(body, len, "history.list", &o, errstr, errstr_size);
    if (err)
        return err;
    size_t alloc = 0;
    if (get_u64(o, "historyId", &out->page.history_id) || out->page.history_id == 0) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "history.list: no valid \"historyId\"");
        goto out;
    }
    if (json_object_object_get_ex(o, "history", &hist)) {
        if (!json_object_is_type(hist, json_type_array)) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                            "history.list: \"history\" is not an array");
            goto out;
        }
        size_t cnt = json_object_array_length(hist);
        for (size_t i = 0; i < cnt; i++) {
            json_object *rec = json_object_array_get_idx(hist, i), *arr;
            uint64_t rid = 0;
            if (!json_object_is_type(rec, json_type_object) || get_u64(rec, "id", &rid)) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                "history.list: history[%zu] has no valid \"id\"", i);
                goto out;
            }
            if (rid < out->page.last_record_id) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                "history.list: record ids out of order at history[%zu]", i);
                goto out;
            }
            out->page.last_record_id = rid;
            static const char *const keys[4] = {"messagesAdded", "messagesDeleted", "labelsAdded",
                                                "labelsRemoved"};
            for (int k = 0; k < 4; k++) {
                if (!json_object_object_get_ex(rec, keys[k], &arr))
                    continue;
                if (!json_object_is_type(arr, json_type_array)) {
                    err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                    "history.list: history[%zu].%s is not an array", i, keys[k]);
                    goto out;
                }
                for (size_t j = 0, m = json_object_array_length(arr); j < m; j++) {
                    if (hist_entry_all(json_object_array_get_idx(arr, j), (lt_gmail_hist_kind_t)k,
                                       rid, out, &alloc)) {
                        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                        "history.list: history[%zu].%s[%zu] has no valid "
                                        "message or labelIds",
                                        i, keys[k], j);
                        goto out;
                    }
                }
            }
        }
    }
    if (out->page.last_record_id > out->page.history_id) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "history.list: a record id is beyond the mailbox historyId");
        goto out;
    }
    err = page_token(o, &out->page, "history.list", errstr, errstr_size);
out:
    json_object_put(o);
    if (err)
        lt_gmail_hist_free(out);
    return err;
}

lt_err_t lt_gmail_parse_labels_find(const char *body, size_t len, const char *name,
                                    char out_id[LT_GMAIL_ID_MAX + 1], char *errstr,
                                    size_t errstr_size)
{
    json_object *o, *labs;
    lt_err_t err = parse_object(body, len, "labels.list", &o, errstr, errstr_size);
    if (err)
        return err;
    err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "no label with id or name \"%s\"", name);
    if (json_object_object_get_ex(o, "labels", &labs) &&
        json_object_is_type(labs, json_type_array)) {
        size_t cnt = json_object_array_length(labs);
        for (size_t i = 0; i < cnt; i++) {
            json_object *l = json_object_array_get_idx(labs, i);
            if (!json_object_is_type(l, json_type_object))
                continue;
            const char *id = get_str(l, "id", NULL), *nm = get_str(l, "name", NULL);
            if (!id || !lt_gmail_id_valid(id, strlen(id)))
                continue;
            if (!strcmp(id, name) || (nm && !strcasecmp(nm, name))) {
                snprintf(out_id, LT_GMAIL_ID_MAX + 1, "%s", id);
                err = LT_OK;
                if (errstr && errstr_size)
                    errstr[0] = 0;
                break;
            }
        }
    }
    json_object_put(o);
    return err;
}

/* --- message ------------------------------------------------------------- */

lt_err_t lt_gmail_b64url_decode(const char *in, size_t len, lt_buf_t *out, char *errstr,
                                size_t errstr_size)
{
    uint8_t chunk[3 * 1024];
    size_t cn = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t quads = 0; /* significant characters */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = lt_b64_value(c, "-+", "_/");
        if (v < 0 || pad)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "base64url: bad character at offset %zu", i);
        quads++;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            chunk[cn++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
            if (cn == sizeof(chunk)) {
                if (lt_buf_append(out, chunk, cn))
                    return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                                     "decoded message is larger than the cap (%zu bytes)",
                                     lt_buf_cap(out));
                cn = 0;
            }
        }
    }
    if (quads % 4 == 1 || pad > 2 || (pad && (quads + (size_t)pad) % 4))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "base64url: bad length");
    if (cn && lt_buf_append(out, chunk, cn))
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                         "decoded message is larger than the cap (%zu bytes)", lt_buf_cap(out));
    return LT_OK;
}

lt_err_t lt_gmail_parse_message(const char *body, size_t len, lt_gmail_message_t *out,
                                lt_buf_t *raw, char *errstr, size_t errstr_size)
{
    json_object *o;
    memset(out, 0, sizeof(*out));
    lt_err_t err = parse_object(body, len, "messages.get", &o, errstr, errstr_size);
    if (err)
        return err;
    uint64_t u = 0;
    if (copy_id(o, "id", out->id)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "messages.get: no valid \"id\"");
        goto out;
    }
    if (copy_id(o, "threadId", out->thread_id))
        out->thread_id[0] = 0;
    if (!get_u64(o, "historyId", &u))
        out->history_id = u;
    json_object *v;
    if (json_object_object_get_ex(o, "internalDate", &v)) {
        if (get_u64(o, "internalDate", &u) || u > (uint64_t)INT64_MAX) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                            "messages.get %s: bad \"internalDate\"", out->id);
            goto out;
        }
        out->internal_date_ms = (int64_t)u;
    }
    int lr = join_labels(o, "labelIds", out->labels, sizeof(out->labels), &out->has_labels);
    out->labels_over = lr > 0;
    if (lr < 0) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "messages.get %s: bad \"labelIds\"",
                        out->id);
        goto out;
    }
    if (raw) {
        size_t l;
        const char *r = get_str(o, "raw", &l);
        if (!r) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                            "messages.get %s: no \"raw\" (format=raw expected)", out->id);
            goto out;
        }
        lt_buf_reset(raw);
        err = lt_gmail_b64url_decode(r, l, raw, errstr, errstr_size);
        if (err == LT_ERR_INVALID)
            err = LT_ERR_TEMPORARY; /* corrupted in transit: fetch again */
    }
out:
    json_object_put(o);
    return err;
}

/* --- errors -------------------------------------------------------------- */

void lt_gmail_classify(long http_status, const char *body, size_t len, lt_gmail_verdict_t *out)
{
    memset(out, 0, sizeof(*out));
    json_object *o = NULL, *e, *errs;
    char e2[64];
    if (len && parse_object(body, len, "error", &o, e2, sizeof(e2)) == LT_OK &&
        json_object_object_get_ex(o, "error", &e) && json_object_is_type(e, json_type_object)) {
        size_t l;
        const char *s = get_str(e, "message", &l);
        if (s)
            printable(out->message, sizeof(out->message), s, l);
        if (json_object_object_get_ex(e, "errors", &errs) &&
            json_object_is_type(errs, json_type_array) && json_object_array_length(errs) > 0) {
            json_object *first = json_object_array_get_idx(errs, 0);
            if (json_object_is_type(first, json_type_object) && (s = get_str(first, "reason", &l)))
                printable(out->reason, sizeof(out->reason), s, l);
        }
    }
    json_object_put(o);

    const char *r = out->reason;
    int rate_reason = !strcmp(r, "rateLimitExceeded") || !strcmp(r, "userRateLimitExceeded") ||
                      !strcmp(r, "quotaExceeded") || !strcmp(r, "dailyLimitExceeded");
    if (http_status == 429 || (http_status == 403 && rate_reason)) {
        out->action = LT_GMAIL_RETRY;
        out->quota = 1;
        /* userRateLimitExceeded: the user's per-minute limit; rateLimitExceeded: the
         * project's, except the per-user texts Google also sends with it ("User-rate
         * limit exceeded", "Too many concurrent requests for user": concurrency, not a
         * rate); a 429 without a reason: the user's */
        if (strstr(out->message, "concurrent"))
            out->quota_kind = 0;
        else if (!strcmp(r, "userRateLimitExceeded") || !r[0] ||
                 strstr(out->message, "User-rate") || strstr(out->message, "per user"))
            out->quota_kind = 1;
        else
            out->quota_kind = 2;
    } else if (http_status >= 500 || http_status == 408 || http_status == 0) {
        out->action = LT_GMAIL_RETRY;
    } else if (http_status == 401) {
        out->action = LT_GMAIL_REFRESH;
    } else if (http_status == 404) {
        out->action = LT_GMAIL_NOT_FOUND;
        out->err = LT_ERR_NOT_FOUND;
    } else if (http_status == 403) {
        /* forbidden, insufficientPermissions, domainPolicy...: a person must act */
        out->action = LT_GMAIL_FAIL;
        out->err = LT_ERR_REAUTH;
    } else if (http_status == 400) {
        out->action = LT_GMAIL_FAIL;
        out->err = LT_ERR_FINAL;
    } else {
        out->action = LT_GMAIL_FAIL;
        out->err = LT_ERR_FINAL;
    }
}
