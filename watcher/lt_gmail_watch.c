#include "lt_gmail_watch.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_log.h"
#include "lt_secret.h"

#define SECRET_MAX 4096
#define RETRY_MIN_MS ((int64_t)60 * 1000)
#define RETRY_MAX_MS ((int64_t)3600 * 1000)
#define EARLY_MAX_MS ((int64_t)3600 * 1000) /* renew at least this long before expiration */

static const char *const k_system_labels[] = {
    "INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "CHAT",
    "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES",
    "CATEGORY_FORUMS", NULL,
};

typedef struct {
    char tenant[129], account_id[129];
    char user[321];
    char client_id[512];
    char *client_secret, *refresh_token;
    char **labels; /* ids or names; NULL with nlabels 0: every change */
    size_t nlabels;
    uint8_t fingerprint[32];
    int busy; /* a Gmail call in flight (the mutex not held) */
    int gone; /* released while busy: freed by the caller that set busy */
    int64_t backoff_ms;
    lt_gmail_watch_info_t info;
} acct_t;

struct lt_gmail_watch_s {
    char *topic;
    int64_t renew_ms;
    lt_gmail_opts_t client;
    char *api_url, *token_url, *ca_file, *secrets_dir;
    pthread_mutex_t mu;
    acct_t **a;
    size_t n;
};

static void acct_free(acct_t *a)
{
    if (!a)
        return;
    if (a->client_secret) {
        lt_secret_wipe(a->client_secret, strlen(a->client_secret));
        free(a->client_secret);
    }
    if (a->refresh_token) {
        lt_secret_wipe(a->refresh_token, strlen(a->refresh_token));
        free(a->refresh_token);
    }
    for (size_t i = 0; i < a->nlabels; i++)
        free(a->labels[i]);
    free(a->labels);
    free(a);
}

static char *dup_or_null(const char *s)
{
    return s && *s ? lt_xstrdup(s) : NULL;
}

lt_gmail_watch_t *lt_gmail_watch_new(const lt_gmail_watch_opts_t *o, char *errstr, size_t n)
{
    if (!o->topic || strncmp(o->topic, "projects/", 9) || !strstr(o->topic, "/topics/")) {
        lt_seterr(errstr, n, LT_ERR_INVALID,
                  "gmail watch: the topic must be projects/PROJECT/topics/TOPIC");
        return NULL;
    }
    lt_gmail_watch_t *w = lt_xcalloc(1, sizeof(*w));
    w->topic = lt_xstrdup(o->topic);
    w->renew_ms = (int64_t)(o->renew_s > 0 ? o->renew_s : 86400) * 1000;
    w->client = o->client;
    w->api_url = dup_or_null(o->client.api_url);
    w->token_url = dup_or_null(o->client.token_url);
    w->ca_file = dup_or_null(o->client.ca_file);
    w->secrets_dir = dup_or_null(o->secrets_dir);
    w->client.api_url = w->api_url;
    w->client.token_url = w->token_url;
    w->client.ca_file = w->ca_file;
    w->client.log = NULL;
    if (w->client.max_inflight < 1)
        w->client.max_inflight = 1;
    pthread_mutex_init(&w->mu, NULL);
    return w;
}

void lt_gmail_watch_destroy(lt_gmail_watch_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        acct_free(w->a[i]);
    free(w->a);
    free(w->topic);
    free(w->api_url);
    free(w->token_url);
    free(w->ca_file);
    free(w->secrets_dir);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static ssize_t find(lt_gmail_watch_t *w, const char *tenant, const char *account_id)
{
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->a[i]->tenant, tenant) && !strcmp(w->a[i]->account_id, account_id))
            return (ssize_t)i;
    return -1;
}

static void add_label(acct_t *a, const char *l)
{
    for (size_t i = 0; i < a->nlabels; i++)
        if (!strcmp(a->labels[i], l))
            return;
    a->labels = lt_xrealloc(a->labels, (a->nlabels + 1) * sizeof(char *));
    a->labels[a->nlabels++] = lt_xstrdup(l);
}

/* A scope's label ("label:X", "in:X"; system labels in upper case), or 0
 * for a search query. */
static int scope_label(const char *scope, char *out, size_t cap)
{
    const char *v = NULL;
    int in = 0;
    if (!strncasecmp(scope, "label:", 6))
        v = scope + 6;
    else if (!strncasecmp(scope, "in:", 3)) {
        v = scope + 3;
        in = 1;
    }
    if (!v || !*v || strlen(v) >= cap)
        return 0;
    char up[LT_GMAIL_ID_MAX + 1];
    size_t i;
    for (i = 0; v[i] && i < LT_GMAIL_ID_MAX; i++)
        up[i] = (char)toupper((unsigned char)(v[i] == '-' ? '_' : v[i]));
    up[i] = 0;
    for (size_t k = 0; k_system_labels[k]; k++)
        if (!strcmp(up, k_system_labels[k])) {
            snprintf(out, cap, "%s", up);
            return 1;
        }
    if (in || !lt_gmail_id_valid(v, strlen(v)))
        return 0;
    snprintf(out, cap, "%s", v);
    return 1;
}

/* The labels to watch: NULL list (all changes) when any scope is a query. */
static lt_err_t conf_labels(json_object *cfg, acct_t *a, char *errstr, size_t n)
{
    json_object *v;
    int all = 0;
    if (json_object_object_get_ex(cfg, "label_ids", &v)) {
        if (!json_object_is_type(v, json_type_array) || !json_object_array_length(v))
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: \"label_ids\" must be a non-empty array");
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object *e = json_object_array_get_idx(v, i);
            char l[LT_GMAIL_ID_MAX + 8];
            if (!json_object_is_type(e, json_type_string))
                return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: label_ids[%zu]", i);
            snprintf(l, sizeof(l), "label:%s", json_object_get_string(e));
            char lab[LT_GMAIL_ID_MAX + 1];
            if (scope_label(l, lab, sizeof(lab)))
                add_label(a, lab);
            else
                all = 1;
        }
    }
    if (json_object_object_get_ex(cfg, "scopes", &v)) {
        if (!json_object_is_type(v, json_type_array) || !json_object_array_length(v))
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: \"scopes\" must be a non-empty array");
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object *e = json_object_array_get_idx(v, i);
            char lab[LT_GMAIL_ID_MAX + 1];
            if (!json_object_is_type(e, json_type_string))
                return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: scopes[%zu]", i);
            if (scope_label(json_object_get_string(e), lab, sizeof(lab)))
                add_label(a, lab);
            else
                all = 1;
        }
    }
    if (json_object_object_get_ex(cfg, "query", &v))
        all = 1;
    if (!all && !a->nlabels)
        add_label(a, "INBOX");
    if (all) { /* a search scope can match any change: watch them all */
        for (size_t i = 0; i < a->nlabels; i++)
            free(a->labels[i]);
        free(a->labels);
        a->labels = NULL;
        a->nlabels = 0;
    }
    return LT_OK;
}

static lt_err_t conf_parse(lt_gmail_watch_t *w, const lt_account_t *acc, acct_t *a, char *errstr,
                           size_t n)
{
    json_object *cfg = lt_account_config(acc), *v;
    lt_err_t err;
    if (strcmp(lt_account_provider(acc), "gmail"))
        return lt_seterr(errstr, n, LT_ERR_FINAL, "not a Gmail account");
    snprintf(a->tenant, sizeof(a->tenant), "%s", lt_account_tenant(acc));
    snprintf(a->account_id, sizeof(a->account_id), "%s", lt_account_id(acc));
    snprintf(a->user, sizeof(a->user), "me");
    if (json_object_object_get_ex(cfg, "user", &v)) {
        if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v) ||
            json_object_get_string_len(v) >= (int)sizeof(a->user))
            return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: \"user\" must be a string");
        snprintf(a->user, sizeof(a->user), "%s", json_object_get_string(v));
    }
    lt_secret_ns_t ns = {lt_account_tenant(acc), w->secrets_dir};
    if (json_object_object_get_ex(cfg, "client_id", &v)) {
        if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: \"client_id\" must be a non-empty string");
        snprintf(a->client_id, sizeof(a->client_id), "%s", json_object_get_string(v));
    } else if ((err = lt_secret_resolve(&ns, cfg, "client_id", a->client_id, sizeof(a->client_id),
                                        errstr, n))) {
        return err;
    }
    if ((err = conf_labels(cfg, a, errstr, n)))
        return err;
    char *buf = lt_xmalloc(SECRET_MAX);
    if ((err = lt_secret_resolve(&ns, cfg, "client_secret", buf, SECRET_MAX, errstr, n)))
        goto out;
    a->client_secret = lt_xstrdup(buf);
    if ((err = lt_secret_resolve(&ns, cfg, "refresh_token", buf, SECRET_MAX, errstr, n)))
        goto out;
    a->refresh_token = lt_xstrdup(buf);
    /* what a change of makes the account due again */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        abort();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    const char *parts[] = {a->user, a->client_id, a->client_secret, a->refresh_token};
    for (size_t i = 0; i < 4; i++)
        EVP_DigestUpdate(md, parts[i], strlen(parts[i]) + 1);
    for (size_t i = 0; i < a->nlabels; i++)
        EVP_DigestUpdate(md, a->labels[i], strlen(a->labels[i]) + 1);
    EVP_DigestFinal_ex(md, a->fingerprint, NULL);
    EVP_MD_CTX_free(md);
out:
    lt_secret_wipe(buf, SECRET_MAX);
    free(buf);
    return err;
}

lt_err_t lt_gmail_watch_set(lt_gmail_watch_t *w, const lt_account_t *acc, char *errstr, size_t n)
{
    acct_t *a = lt_xcalloc(1, sizeof(*a));
    lt_err_t err = conf_parse(w, acc, a, errstr, n);
    if (err) {
        acct_free(a);
        return err;
    }
    snprintf(a->info.email, sizeof(a->info.email), "%s", a->user);
    if (!strchr(a->user, '@'))
        lt_warn(NULL,
                "gmail watch: account %s/%s has user \"%s\": its notifications (which name "
                "the address) cannot be matched; set config \"user\" to the address",
                a->tenant, a->account_id, a->user);
    pthread_mutex_lock(&w->mu);
    ssize_t i = find(w, a->tenant, a->account_id);
    if (i >= 0 && !memcmp(w->a[i]->fingerprint, a->fingerprint, sizeof(a->fingerprint))) {
        pthread_mutex_unlock(&w->mu); /* unchanged: keeps its schedule */
        acct_free(a);
        return LT_OK;
    }
    a->info.next_ms = 0; /* due now */
    if (i >= 0) {
        acct_t *old = w->a[i];
        a->info.expiration_ms = old->info.expiration_ms;
        a->info.history_id = old->info.history_id;
        a->info.watch_calls = old->info.watch_calls;
        a->info.failures = old->info.failures;
        if (old->busy)
            old->gone = 1;
        else
            acct_free(old);
        w->a[i] = a;
    } else {
        w->a = lt_xrealloc(w->a, (w->n + 1) * sizeof(*w->a));
        w->a[w->n++] = a;
    }
    pthread_mutex_unlock(&w->mu);
    return LT_OK;
}

static lt_gmail_t *client_of(lt_gmail_watch_t *w, const acct_t *a)
{
    lt_gmail_opts_t o = w->client;
    o.user = a->user;
    o.client_id = a->client_id;
    o.client_secret = a->client_secret;
    o.refresh_token = a->refresh_token;
    return lt_gmail_new(&o);
}

/* Take an account out of the table (called with mu held). */
static acct_t *unlink_at(lt_gmail_watch_t *w, size_t i)
{
    acct_t *a = w->a[i];
    w->a[i] = w->a[--w->n];
    return a;
}

lt_err_t lt_gmail_watch_release(lt_gmail_watch_t *w, const char *tenant, const char *account_id,
                                int stop, char *errstr, size_t n)
{
    pthread_mutex_lock(&w->mu);
    ssize_t i = find(w, tenant, account_id);
    if (i < 0) {
        pthread_mutex_unlock(&w->mu);
        return lt_seterr(errstr, n, LT_ERR_NOT_FOUND, "gmail watch: %s/%s is not watched", tenant,
                         account_id);
    }
    acct_t *a = unlink_at(w, (size_t)i);
    int busy = a->busy;
    if (busy)
        a->gone = 1; /* the renewing thread frees it */
    lt_err_t err = LT_OK;
    lt_gmail_t *c = stop && !busy ? client_of(w, a) : NULL;
    pthread_mutex_unlock(&w->mu);
    if (c) {
        err = lt_gmail_stop(c, errstr, n);
        if (err)
            lt_warn(NULL, "gmail watch: users.stop of %s/%s failed (%s): its watch lapses by "
                    "itself",
                    tenant, account_id, errstr);
        else
            lt_info(NULL, "gmail watch: %s/%s stopped", tenant, account_id);
        lt_gmail_destroy(c);
    } else if (stop && busy) {
        lt_warn(NULL, "gmail watch: %s/%s released during its renewal: no users.stop", tenant,
                account_id);
    }
    if (!busy)
        acct_free(a);
    return err;
}

static int64_t next_after_success(lt_gmail_watch_t *w, int64_t now, int64_t expiration)
{
    int64_t next = now + w->renew_ms;
    int64_t left = expiration - now;
    int64_t early = left / 2 < EARLY_MAX_MS ? left / 2 : EARLY_MAX_MS;
    if (next > expiration - early)
        next = expiration - early;
    return next > now ? next : now + 1000;
}

int lt_gmail_watch_run_due(lt_gmail_watch_t *w, int64_t now_ms)
{
    int done = 0;
    if (!now_ms)
        now_ms = lt_wall_ms();
    for (;;) {
        pthread_mutex_lock(&w->mu);
        acct_t *a = NULL;
        for (size_t i = 0; i < w->n; i++)
            if (!w->a[i]->busy && w->a[i]->info.next_ms <= now_ms) {
                a = w->a[i];
                break;
            }
        if (!a) {
            pthread_mutex_unlock(&w->mu);
            return done;
        }
        a->busy = 1;
        lt_gmail_t *c = client_of(w, a);
        pthread_mutex_unlock(&w->mu);

        /* the account's fields are stable while busy (set replaces, never edits) */
        char errstr[256] = "";
        lt_err_t err = LT_OK;
        const char **ids = a->nlabels ? lt_xcalloc(a->nlabels, sizeof(char *)) : NULL;
        char (*resolved)[LT_GMAIL_ID_MAX + 1] =
            a->nlabels ? lt_xcalloc(a->nlabels, sizeof(*resolved)) : NULL;
        for (size_t k = 0; k < a->nlabels && !err; k++) {
            int system = 0;
            for (size_t s = 0; k_system_labels[s]; s++)
                system |= !strcmp(a->labels[k], k_system_labels[s]);
            if (system || !strncmp(a->labels[k], "Label_", 6))
                ids[k] = a->labels[k];
            else if (!(err = lt_gmail_label_id(c, a->labels[k], resolved[k], errstr,
                                               sizeof(errstr))))
                ids[k] = resolved[k];
        }
        lt_gmail_watch_reply_t r;
        if (!err)
            err = lt_gmail_watch(c, w->topic, ids, a->nlabels, 0, &r, errstr, sizeof(errstr));
        free(ids);
        free(resolved);
        lt_gmail_destroy(c);
        int64_t now = lt_wall_ms();

        pthread_mutex_lock(&w->mu);
        a->busy = 0;
        if (a->gone) {
            pthread_mutex_unlock(&w->mu);
            acct_free(a);
            continue;
        }
        if (!err) {
            done++;
            a->info.watch_calls++;
            a->info.expiration_ms = r.expiration_ms;
            a->info.history_id = r.history_id;
            a->info.last_error[0] = 0;
            a->backoff_ms = 0;
            a->info.next_ms = next_after_success(w, now, r.expiration_ms);
            lt_info(NULL, "gmail watch: %s/%s watched until %lld, next renewal in %lld s",
                    a->tenant, a->account_id, (long long)r.expiration_ms,
                    (long long)((a->info.next_ms - now) / 1000));
        } else {
            a->info.failures++;
            snprintf(a->info.last_error, sizeof(a->info.last_error), "%s", errstr);
            a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : RETRY_MIN_MS;
            if (a->backoff_ms > RETRY_MAX_MS)
                a->backoff_ms = RETRY_MAX_MS;
            int64_t next = now + a->backoff_ms;
            /* a live watch is retried well before it lapses */
            if (a->info.expiration_ms > now && next > a->info.expiration_ms - RETRY_MIN_MS)
                next = a->info.expiration_ms - RETRY_MIN_MS > now
                           ? a->info.expiration_ms - RETRY_MIN_MS
                           : now + RETRY_MIN_MS / 4;
            a->info.next_ms = next;
            lt_warn(NULL, "gmail watch: users.watch of %s/%s failed (%s: %s); again in %lld s",
                    a->tenant, a->account_id, lt_err_name(err), errstr,
                    (long long)((next - now) / 1000));
        }
        pthread_mutex_unlock(&w->mu);
    }
}

int64_t lt_gmail_watch_next_due_ms(lt_gmail_watch_t *w, int64_t now_ms)
{
    if (!now_ms)
        now_ms = lt_wall_ms();
    int64_t best = -1;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n; i++) {
        if (w->a[i]->busy)
            continue;
        int64_t d = w->a[i]->info.next_ms - now_ms;
        if (d < 0)
            d = 0;
        if (best < 0 || d < best)
            best = d;
    }
    pthread_mutex_unlock(&w->mu);
    return best;
}

lt_err_t lt_gmail_watch_lookup(lt_gmail_watch_t *w, const char *email, char tenant[129],
                               char account_id[129])
{
    lt_err_t err = LT_ERR_NOT_FOUND;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n; i++)
        if (!strcasecmp(w->a[i]->user, email)) {
            snprintf(tenant, 129, "%s", w->a[i]->tenant);
            snprintf(account_id, 129, "%s", w->a[i]->account_id);
            err = LT_OK;
            break;
        }
    pthread_mutex_unlock(&w->mu);
    return err;
}

lt_err_t lt_gmail_watch_info(lt_gmail_watch_t *w, const char *tenant, const char *account_id,
                             lt_gmail_watch_info_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&w->mu);
    ssize_t i = find(w, tenant, account_id);
    if (i >= 0) {
        *out = w->a[i]->info;
        out->active = out->expiration_ms > lt_wall_ms();
    }
    pthread_mutex_unlock(&w->mu);
    return i >= 0 ? LT_OK : LT_ERR_NOT_FOUND;
}

size_t lt_gmail_watch_count(lt_gmail_watch_t *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->n;
    pthread_mutex_unlock(&w->mu);
    return n;
}
