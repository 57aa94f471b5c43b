#include "lt_sync.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_mime.h"
#include "lt_objkey.h"
#include "lt_trace.h"

/* Ids of skipped messages kept for the command result (the count is exact). */
#define LT_SYNC_SKIPPED_IDS_MAX ((size_t)16 << 10)
/* Messages up to this size are kept in memory; larger ones spill to a file. */
#define LT_SYNC_MEM_MAX ((size_t)8 << 20)

/* Delivery-report state: the producer's dr_msg_cb (lt_sync_dr_cb) writes
 * into the struct given as the message opaque. */
typedef struct {
    int64_t delivered;
    int64_t failed;
    rd_kafka_resp_err_t first_err;
    int32_t partition;
    int64_t offset;
} lt_dr_t;

struct lt_sync_s {
    lt_sync_env_t env;
    const lt_account_t *account;
    const lt_command_t *cmd;
    lt_log_ctx_t log;
    char scope[1024];
    lt_trace_t trace;
    int have_trace;

    /* the message in progress */
    int in_message;
    char pmid[1024];
    char *thread_id;
    char *mailbox;
    int64_t received_at;
    lt_buf_t *mem;
    int fd; /* spill file, -1 none */
    char path[512];
    uint64_t size;

    /* the open transaction */
    int txn_open;
    int64_t uncommitted;
    int in_doubt; /* a batch's fate or watermark is left to recovery */
    int producer_unusable; /* the producer can start no new transaction */
    lt_dr_t ev_dr;
    lt_dr_t marker_dr;

    int64_t messages;
    int64_t bytes;

    /* progress (lt_sync_set_total); monotonic ms */
    int64_t progress_done;
    int64_t progress_total; /* -1 unknown */
    int64_t progress_d0;    /* done when the total was first known */
    int64_t progress_t0;    /* and when (0: not yet) */
    int64_t started_ms;
    int64_t progress_last_ms;
    int64_t skipped;
    lt_buf_t *skipped_ids; /* comma-separated, capped */
    int64_t expunged;
    lt_buf_t *expunged_ids; /* comma-separated, capped */
    /* the counts as of the last commit: an abort goes back to them, since
     * the command redoes everything after it (no message counted twice) */
    struct {
        int64_t messages, bytes, skipped, expunged;
        size_t skipped_ids_len, expunged_ids_len;
    } durable;

    /* results of the scopes run so far (lt_sync_scope_done) */
    lt_sync_scope_t *scopes;
    size_t nscopes;
    int64_t scope_messages0; /* messages when the current scope started */

    struct uploader_s *up; /* parallel uploads, NULL until the first */
};

void lt_sync_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    lt_dr_t *d = m->_private;
    if (!d)
        return;
    if (m->err) {
        if (!d->failed)
            d->first_err = m->err;
        d->failed++;
    } else {
        d->delivered++;
        d->partition = m->partition;
        d->offset = m->offset;
    }
}

static const lt_sync_metrics_t k_no_metrics;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void up_destroy(lt_sync_t *s);
static void up_discard(lt_sync_t *s);
static lt_err_t up_collect(lt_sync_t *s, int all, size_t room, char *errstr, size_t n);

lt_sync_t *lt_sync_new(const lt_sync_env_t *env, const lt_account_t *account,
                       const lt_command_t *cmd, const char *traceparent, const lt_log_ctx_t *log)
{
    lt_sync_t *s = lt_xcalloc(1, sizeof(*s));
    s->env = *env;
    s->account = account;
    s->cmd = cmd;
    if (log)
        s->log = *log;
    s->fd = -1;
    s->mem = lt_buf_new(LT_SYNC_MEM_MAX);
    if (!s->env.metrics)
        s->env.metrics = &k_no_metrics;
    s->progress_total = -1;
    s->started_ms = s->progress_last_ms = mono_ms();
    s->skipped_ids = lt_buf_new(LT_SYNC_SKIPPED_IDS_MAX);
    s->expunged_ids = lt_buf_new(LT_SYNC_SKIPPED_IDS_MAX);
    if (traceparent && !lt_trace_parse(traceparent, strlen(traceparent), &s->trace, NULL, 0))
        s->have_trace = 1;
    return s;
}

static void message_reset(lt_sync_t *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        unlink(s->path);
        s->fd = -1;
    }
    lt_buf_reset(s->mem);
    free(s->thread_id);
    free(s->mailbox);
    s->thread_id = s->mailbox = NULL;
    s->in_message = 0;
    s->size = 0;
}

void lt_sync_abort(lt_sync_t *s)
{
    up_discard(s); /* their events were never produced */
    if (s->txn_open) {
        /* A producer to be replaced is not asked: the new one's
         * init_transactions() aborts the open transaction. */
        rd_kafka_error_t *e =
            s->producer_unusable
                ? NULL
                : rd_kafka_abort_transaction(s->env.producer, s->env.txn_timeout_ms);
        if (e) {
            /* until an abort succeeds the producer begins no transaction */
            lt_warn(&s->log, "abort_transaction: %s; the producer is replaced",
                    rd_kafka_error_string(e));
            s->producer_unusable = 1;
            rd_kafka_error_destroy(e);
        }
        s->txn_open = 0;
        lt_series_add(s->env.metrics->events_aborted, (double)s->uncommitted);
        s->uncommitted = 0;
    }
    /* what was published or skipped since the last commit is done again */
    if (s->messages > s->durable.messages || s->skipped > s->durable.skipped)
        lt_info(&s->log, "batch aborted: %lld event(s) and %lld skipped message(s) since the "
                "last checkpoint are not counted; they are done again",
                (long long)(s->messages - s->durable.messages),
                (long long)(s->skipped - s->durable.skipped));
    s->progress_done -= (s->messages - s->durable.messages) + (s->skipped - s->durable.skipped) +
                        (s->expunged - s->durable.expunged);
    if (s->progress_done < 0)
        s->progress_done = 0;
    s->messages = s->durable.messages;
    s->bytes = s->durable.bytes;
    s->skipped = s->durable.skipped;
    lt_buf_truncate(s->skipped_ids, s->durable.skipped_ids_len);
    s->expunged = s->durable.expunged;
    lt_buf_truncate(s->expunged_ids, s->durable.expunged_ids_len);
}

/* Everything counted so far is durable (committed, or needs no commit). */
static void counts_durable(lt_sync_t *s)
{
    s->durable.messages = s->messages;
    s->durable.bytes = s->bytes;
    s->durable.skipped = s->skipped;
    s->durable.skipped_ids_len = lt_buf_len(s->skipped_ids);
    s->durable.expunged = s->expunged;
    s->durable.expunged_ids_len = lt_buf_len(s->expunged_ids);
}

void lt_sync_destroy(lt_sync_t *s)
{
    if (!s)
        return;
    message_reset(s);
    lt_sync_abort(s);
    up_destroy(s);
    lt_buf_destroy(s->mem);
    lt_buf_destroy(s->skipped_ids);
    lt_buf_destroy(s->expunged_ids);
    for (size_t i = 0; i < s->nscopes; i++) {
        free(s->scopes[i].scope);
        free(s->scopes[i].error);
    }
    free(s->scopes);
    free(s);
}

const lt_account_t *lt_sync_account(const lt_sync_t *s)
{
    return s->account;
}
const lt_command_t *lt_sync_command(const lt_sync_t *s)
{
    return s->cmd;
}
lt_db_t *lt_sync_db(const lt_sync_t *s)
{
    return s->env.db;
}
const lt_log_ctx_t *lt_sync_log(const lt_sync_t *s)
{
    return &s->log;
}
int lt_sync_batch_messages(const lt_sync_t *s)
{
    return s->env.batch_messages;
}
int lt_sync_cancelled(const lt_sync_t *s)
{
    return s->env.cancel && *s->env.cancel;
}
void lt_sync_set_scope(lt_sync_t *s, const char *scope)
{
    snprintf(s->scope, sizeof(s->scope), "%s", scope ? scope : "");
    s->log.scope = s->scope;
    s->scope_messages0 = s->messages;
}
int64_t lt_sync_messages(const lt_sync_t *s)
{
    return s->messages;
}
int64_t lt_sync_bytes(const lt_sync_t *s)
{
    return s->bytes;
}
int64_t lt_sync_uncommitted(const lt_sync_t *s)
{
    return s->uncommitted;
}
int lt_sync_in_doubt(const lt_sync_t *s)
{
    return s->in_doubt;
}
int lt_sync_producer_unusable(const lt_sync_t *s)
{
    return s->producer_unusable;
}

void lt_sync_progress_get(const lt_sync_t *s, lt_sync_progress_t *p)
{
    int64_t now = mono_ms();
    p->done = s->progress_done;
    p->total = s->progress_total;
    p->elapsed_ms = now - s->started_ms;
    p->rate = 0;
    p->eta_s = -1;
    if (s->progress_t0 && now > s->progress_t0) {
        p->rate = (double)(s->progress_done - s->progress_d0) * 1000.0 /
                  (double)(now - s->progress_t0);
        if (p->rate > 0 && p->total >= p->done)
            p->eta_s = (int64_t)((double)(p->total - p->done) / p->rate + 0.5);
    }
}

/* Report when a total is known and the interval has passed. */
static void progress_tick(lt_sync_t *s)
{
    if (!s->env.progress || s->progress_total < 0)
        return;
    int64_t now = mono_ms();
    if (now - s->progress_last_ms < s->env.progress_interval_ms)
        return;
    s->progress_last_ms = now;
    lt_sync_progress_t p;
    lt_sync_progress_get(s, &p);
    s->env.progress(s->env.progress_opaque, s, &p);
}

void lt_sync_set_total(lt_sync_t *s, int64_t total)
{
    s->progress_total = total < 0 ? -1 : total;
    if (total >= 0 && !s->progress_t0) {
        s->progress_t0 = mono_ms();
        s->progress_d0 = s->progress_done;
    }
    progress_tick(s);
}

void lt_sync_progress_resume(lt_sync_t *s, int64_t done)
{
    if (done > 0)
        s->progress_done += done;
}

int64_t lt_sync_progress_done(const lt_sync_t *s)
{
    return s->progress_done;
}

int64_t lt_sync_progress_total(const lt_sync_t *s)
{
    return s->progress_total;
}
uint64_t lt_sync_max_message_bytes(const lt_sync_t *s)
{
    return s->env.max_message_bytes;
}
void lt_sync_note_skipped(lt_sync_t *s, const char *provider_message_id)
{
    lt_series_inc(s->env.metrics->messages_skipped);
    s->skipped++;
    s->progress_done++; /* handled, for the progress report */
    /* ids beyond the cap are only counted */
    (void)lt_buf_appendf(s->skipped_ids, "%s%s", lt_buf_len(s->skipped_ids) ? "," : "",
                         provider_message_id);
}
int64_t lt_sync_skipped(const lt_sync_t *s)
{
    return s->skipped;
}
const char *lt_sync_skipped_ids(const lt_sync_t *s)
{
    return lt_buf_str(s->skipped_ids);
}
void lt_sync_note_expunged(lt_sync_t *s, const char *provider_message_id)
{
    s->expunged++;
    s->progress_done++;
    (void)lt_buf_appendf(s->expunged_ids, "%s%s", lt_buf_len(s->expunged_ids) ? "," : "",
                         provider_message_id);
}
int64_t lt_sync_expunged(const lt_sync_t *s)
{
    return s->expunged;
}
const char *lt_sync_expunged_ids(const lt_sync_t *s)
{
    return lt_buf_str(s->expunged_ids);
}

const char *lt_sync_scope_result_name(lt_sync_scope_result_t r)
{
    return r == LT_SYNC_SCOPE_OK ? "ok" : r == LT_SYNC_SCOPE_MISSING ? "missing" : "failed";
}

void lt_sync_scope_done(lt_sync_t *s, const char *scope, lt_sync_scope_result_t result,
                        lt_err_t err, const char *error)
{
    s->scopes = lt_xrealloc(s->scopes, (s->nscopes + 1) * sizeof(*s->scopes));
    lt_sync_scope_t *r = &s->scopes[s->nscopes++];
    r->scope = lt_xstrdup(scope);
    r->result = result;
    r->err = result == LT_SYNC_SCOPE_OK ? LT_OK : err;
    r->error = result != LT_SYNC_SCOPE_OK && error && *error ? lt_xstrdup(error) : NULL;
    r->messages = s->messages > s->scope_messages0 ? s->messages - s->scope_messages0 : 0;
    s->scope_messages0 = s->messages;
}

const lt_sync_scope_t *lt_sync_scopes(const lt_sync_t *s, size_t *n)
{
    *n = s->nscopes;
    return s->scopes;
}

size_t lt_sync_scopes_ok(const lt_sync_t *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->nscopes; i++)
        k += s->scopes[i].result == LT_SYNC_SCOPE_OK;
    return k;
}

lt_err_t lt_sync_scopes_result(const lt_sync_t *s, char *errstr, size_t errstr_size)
{
    size_t failed = 0;
    lt_err_t err = LT_OK;
    const lt_sync_scope_t *first = NULL;
    for (size_t i = 0; i < s->nscopes; i++) {
        const lt_sync_scope_t *r = &s->scopes[i];
        if (r->result == LT_SYNC_SCOPE_OK)
            continue;
        failed++;
        if (!first)
            first = r;
        if (r->err == LT_ERR_TEMPORARY)
            err = LT_ERR_TEMPORARY;
        else if (!err)
            err = r->err ? r->err : LT_ERR_FINAL;
    }
    if (!failed)
        return LT_OK;
    if (s->nscopes == 1)
        return lt_seterr(errstr, errstr_size, err, "%s", first->error ? first->error : "failed");
    lt_buf_t *b = lt_buf_new(errstr_size ? errstr_size : 1);
    lt_buf_appendf(b, "%zu of %zu scopes not synced:", failed, s->nscopes);
    for (size_t i = 0; i < s->nscopes; i++) {
        const lt_sync_scope_t *r = &s->scopes[i];
        if (r->result != LT_SYNC_SCOPE_OK)
            (void)lt_buf_appendf(b, " %s %s (%s: %s);", r->scope,
                                 lt_sync_scope_result_name(r->result), lt_err_name(r->err),
                                 r->error ? r->error : "");
    }
    lt_seterr(errstr, errstr_size, err, "%s", lt_buf_str(b));
    lt_buf_destroy(b);
    return err;
}

/* A fatal error (fenced, ...) leaves the producer unusable for good; the
 * slot replaces it, so for the command it is temporary: the retry runs on
 * the new producer. */
static lt_err_t kafka_err(lt_sync_t *s, rd_kafka_error_t *e, const char *what, char *errstr,
                          size_t n)
{
    lt_err_t code = LT_ERR_TEMPORARY;
    if (rd_kafka_error_is_fatal(e))
        s->producer_unusable = 1;
    lt_seterr(errstr, n, code, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return code;
}

static lt_err_t ensure_txn(lt_sync_t *s, char *errstr, size_t n)
{
    if (s->txn_open)
        return LT_OK;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(s->env.producer);
    if (e) {
        /* begin fails only in a state no later call leaves (a commit or
         * abort left unfinished, a fatal error): a new producer is needed */
        s->producer_unusable = 1;
        return kafka_err(s, e, "begin_transaction", errstr, n);
    }
    s->txn_open = 1;
    memset(&s->ev_dr, 0, sizeof(s->ev_dr));
    memset(&s->marker_dr, 0, sizeof(s->marker_dr));
    return LT_OK;
}

lt_err_t lt_sync_message_begin(lt_sync_t *s, const char *provider_message_id,
                               const char *thread_id, const char *mailbox,
                               int64_t received_at_ms, char *errstr, size_t errstr_size)
{
    if (s->in_message)
        message_reset(s);
    if (snprintf(s->pmid, sizeof(s->pmid), "%s", provider_message_id) >= (int)sizeof(s->pmid))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "provider message id too long");
    s->thread_id = thread_id ? lt_xstrdup(thread_id) : NULL;
    s->mailbox = mailbox ? lt_xstrdup(mailbox) : NULL;
    s->received_at = received_at_ms;
    s->in_message = 1;
    return LT_OK;
}

void lt_sync_spill_prefix(const char *worker_id, char *out, size_t out_size)
{
    char id[200];
    size_t i = 0;
    for (; worker_id && worker_id[i] && i < sizeof(id) - 1; i++) {
        char c = worker_id[i];
        id[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-')
                    ? c
                    : '_';
    }
    id[i] = 0;
    snprintf(out, out_size, "lattice-%s-msg-", id);
}

int lt_sync_spill_cleanup(const char *tmp_dir, const char *prefix, char *errstr,
                          size_t errstr_size)
{
    const char *dir = tmp_dir ? tmp_dir : "/tmp";
    DIR *d = opendir(dir);
    if (!d) {
        lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "spill directory %s: %s", dir,
                  strerror(errno));
        return -1;
    }
    size_t plen = strlen(prefix);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (strncmp(name, prefix, plen) || strlen(name + plen) != 6)
            continue;
        int ok = 1; /* mkstemp's six characters: [A-Za-z0-9] */
        for (const char *c = name + plen; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
                ok = 0;
        char path[4096];
        if (ok && snprintf(path, sizeof(path), "%s/%s", dir, name) < (int)sizeof(path) &&
            !unlink(path))
            n++;
    }
    closedir(d);
    return n;
}

static lt_err_t spill(lt_sync_t *s, char *errstr, size_t n)
{
    snprintf(s->path, sizeof(s->path), "%s/%sXXXXXX", s->env.tmp_dir ? s->env.tmp_dir : "/tmp",
             s->env.spill_prefix ? s->env.spill_prefix : "lattice-msg-");
    s->fd = mkstemp(s->path);
    if (s->fd < 0)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "temp file in %s: %s", s->env.tmp_dir,
                         strerror(errno));
    const uint8_t *p = lt_buf_data(s->mem);
    size_t left = lt_buf_len(s->mem);
    while (left) {
        ssize_t w = write(s->fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "write %s: %s", s->path,
                             strerror(errno));
        }
        p += w;
        left -= (size_t)w;
    }
    lt_buf_reset(s->mem);
    return LT_OK;
}

lt_err_t lt_sync_message_write(lt_sync_t *s, const void *data, size_t len, char *errstr,
                               size_t errstr_size)
{
    if (!s->in_message)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "write outside a message");
    if (s->size + len > s->env.max_message_bytes)
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                         "message %s is larger than LATTICE_MAX_MESSAGE_BYTES (%llu)", s->pmid,
                         (unsigned long long)s->env.max_message_bytes);
    s->size += len;
    if (s->fd < 0 && lt_buf_append(s->mem, data, len) == LT_OK)
        return LT_OK;
    if (s->fd < 0) {
        lt_err_t err = spill(s, errstr, errstr_size);
        if (err)
            return err;
    }
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(s->fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "write %s: %s", s->path,
                             strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return LT_OK;
}

void lt_sync_message_abandon(lt_sync_t *s)
{
    message_reset(s);
}

/* --- messages that fail the same way on every attempt ----------------------
 * An error caused by the message itself (LT_ERR_INVALID: e.g. a field S3 or
 * the codec refuses; LT_ERR_TOO_BIG: e.g. an event over the Kafka limit)
 * would come back on every run and block the scope for ever. So the message
 * is published with what could be derived and payload.parse_error saying
 * what could not; when not even that can be published it is skipped and
 * reported (lt_sync_note_skipped: status event skipped/skipped_ids, a
 * metric, a log line). Anything else (network, S3 or Kafka down) still
 * fails the batch, which is redone. */
static int per_message(lt_err_t err)
{
    return err == LT_ERR_INVALID || err == LT_ERR_TOO_BIG;
}

#define LT_SYNC_REASON_MAX 2000

/* Append a reason to *r (a capped "; "-separated list, printable ASCII). */
static void reason_add(lt_buf_t **r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason_add(lt_buf_t **r, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    for (char *p = tmp; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    if (!*r)
        *r = lt_buf_new(LT_SYNC_REASON_MAX);
    (void)lt_buf_appendf(*r, "%s%s", lt_buf_len(*r) ? "; " : "", tmp);
}

static void skip_message(lt_sync_t *s, const char *pmid, const char *why)
{
    lt_warn(&s->log, "message %s skipped, reported in the command result: %s", pmid, why);
    lt_sync_note_skipped(s, pmid);
}

static lt_err_t store_attachments(lt_sync_t *s, lt_mime_t *m, lt_mail_event_t *ev,
                                  const char *provider, lt_buf_t **reason, char *errstr, size_t n)
{
    lt_err_t err = LT_OK;
    lt_buf_t *content = lt_buf_new(s->env.max_message_bytes);
    size_t count = lt_mime_attachment_count(m);
    for (size_t i = 0; i < count; i++) {
        const char *aid = lt_mime_attachment_id(m, i);
        const char *fname = lt_mime_attachment_filename(m, i);
        const char *ctype = lt_mime_attachment_content_type(m, i);
        char key[LT_OBJKEY_MAX + 1], uri[LT_OBJKEY_URI_MAX + 1], sha[LT_S3_SHA256_HEX];
        err = lt_objkey_attachment(&(lt_objkey_msg_t){.tenant = lt_account_tenant(s->account),
                                                      .account_id = lt_account_id(s->account),
                                                      .provider = provider,
                                                      .provider_message_id = s->pmid},
                                   aid, fname, key, sizeof(key), errstr, n);
        if (err)
            goto out;
        lt_buf_reset(content);
        err = lt_mime_attachment_read(m, i, content, errstr, n);
        if (!err)
            err = lt_s3_put(
                s->env.s3,
                &(lt_s3_object_t){.key = key,
                                  .content_type = ctype ? ctype : "application/octet-stream"},
                lt_buf_data(content), lt_buf_len(content), sha, errstr, n);
        if (err && per_message(err)) { /* this attachment only: left out, said why */
            reason_add(reason, "attachment %s not stored: %s", aid, errstr);
            err = LT_OK;
            continue;
        }
        if (err)
            goto out;
        lt_s3_uri(s->env.s3, key, uri, sizeof(uri));
        lt_mail_event_add_attachment(ev, aid, fname, ctype ? ctype : "application/octet-stream",
                                     (int64_t)lt_buf_len(content), sha, uri);
        lt_series_inc(s->env.metrics->objects_attachment);
        lt_series_add(s->env.metrics->object_bytes_attachment, (double)lt_buf_len(content));
    }
out:
    lt_buf_destroy(content);
    return err;
}

/* ev encodes to more than the bound: store its whole manifest as an object,
 * reference it, keep the longest prefix of the manifest that fits. */
static lt_err_t bound_event(lt_sync_t *s, lt_mail_event_t *ev, size_t bound, char *errstr,
                            size_t n)
{
    char key[LT_OBJKEY_MAX + 1], uri[LT_OBJKEY_URI_MAX + 1];
    size_t natt = lt_mail_event_attachment_count(ev), kept = 0;
    lt_buf_t *json = lt_buf_new((size_t)1 << 30);
    lt_err_t err = lt_objkey_manifest(
        &(lt_objkey_msg_t){.tenant = lt_account_tenant(s->account),
                           .account_id = lt_account_id(s->account),
                           .provider = lt_account_provider(s->account),
                           .provider_message_id = lt_mail_event_get_provider_message_id(ev)},
        key, sizeof(key), errstr, n);
    if (!err && natt && (err = lt_mail_event_manifest_to_json(ev, json)))
        lt_seterr(errstr, n, err, "manifest JSON of %zu attachments", natt);
    if (!err && natt)
        err =
            lt_s3_put(s->env.s3, &(lt_s3_object_t){.key = key, .content_type = "application/json"},
                      lt_buf_data(json), lt_buf_len(json), NULL, errstr, n);
    if (!err && natt) {
        lt_s3_uri(s->env.s3, key, uri, sizeof(uri));
        lt_mail_event_set_attachments_manifest_ref(ev, uri);
        lt_series_inc(s->env.metrics->objects_manifest);
    }
    if (!err)
        err = lt_mail_event_fit(s->env.codec, ev, bound, &kept, errstr, n);
    if (!err && natt)
        lt_info(&s->log, "message %s: event over %zu bytes; %zu of %zu manifest entries inline, "
                "the whole manifest in %s",
                lt_mail_event_get_provider_message_id(ev), bound, kept, natt, key);
    lt_buf_destroy(json);
    return err;
}

/* Encode ev (bounded: bound_event) and produce it inside the open
 * transaction (begun if needed). */
static lt_err_t produce_event(lt_sync_t *s, lt_mail_event_t *ev, uint64_t size, char *errstr,
                              size_t n)
{
    lt_err_t err;
    size_t bound = s->env.event_max_bytes ? s->env.event_max_bytes
                                          : LT_MAIL_EVENT_DEFAULT_MAX_BYTES;
    lt_buf_t *wire = lt_buf_new(bound);
    err = lt_mail_event_encode(s->env.codec, ev, s->env.schema_id, wire, errstr, n);
    if (err == LT_ERR_TOO_BIG) {
        err = bound_event(s, ev, bound, errstr, n);
        if (!err)
            err = lt_mail_event_encode(s->env.codec, ev, s->env.schema_id, wire, errstr, n);
    }
    if (err)
        goto out;
    err = ensure_txn(s, errstr, n);
    if (err)
        goto out;
    char tp[LT_TRACEPARENT_SIZE];
    lt_trace_t span;
    if (s->have_trace && !lt_trace_child(&s->trace, &span, NULL, 0))
        lt_trace_format(&span, tp);
    else if (!lt_trace_new(&span, NULL, 0))
        lt_trace_format(&span, tp);
    else
        tp[0] = 0;
    const char *acct = lt_account_id(s->account);
    const char *evid = lt_mail_event_get_event_id(ev);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    if (tp[0])
        rd_kafka_header_add(hdrs, "traceparent", -1, tp, -1);
    rd_kafka_header_add(hdrs, "lattice.event_id", -1, evid, -1);
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        s->env.producer, RD_KAFKA_V_TOPIC(s->env.raw_topic),
        RD_KAFKA_V_KEY(acct, strlen(acct)),
        RD_KAFKA_V_VALUE((void *)lt_buf_data(wire), lt_buf_len(wire)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(&s->ev_dr), RD_KAFKA_V_END);
    if (kerr) {
        rd_kafka_headers_destroy(hdrs);
        if (kerr == RD_KAFKA_RESP_ERR__FATAL)
            s->producer_unusable = 1;
        /* refused for its size: the same on every attempt */
        err = lt_seterr(errstr, n,
                        kerr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? LT_ERR_TOO_BIG
                                                                     : LT_ERR_TEMPORARY,
                        "produce: event of %zu bytes: %s", lt_buf_len(wire),
                        rd_kafka_err2str(kerr));
        goto out;
    }
    rd_kafka_poll(s->env.producer, 0);
    s->uncommitted++;
    s->messages++;
    s->progress_done++;
    progress_tick(s);
    s->bytes += (int64_t)size;
out:
    lt_buf_destroy(wire);
    return err;
}

/* Produce ev with reason (NULL: fully derived) as its parse_error. An error
 * of the message itself: published again as the bare envelope (raw object,
 * no manifest) saying why; failing that, skipped and reported. */
static lt_err_t publish(lt_sync_t *s, lt_mail_event_t *ev, uint64_t size, lt_buf_t *reason,
                        char *errstr, size_t n)
{
    lt_mail_event_set_parse_error(ev, reason ? lt_buf_str(reason) : NULL);
    lt_err_t err = lt_mail_event_derive_id(ev, errstr, n);
    if (!err)
        err = produce_event(s, ev, size, errstr, n);
    if (!per_message(err)) {
        if (!err && reason) {
            lt_series_inc(s->env.metrics->messages_partial);
            lt_warn(&s->log, "message %s published, not fully derived: %s",
                    lt_mail_event_get_provider_message_id(ev), lt_buf_str(reason));
        }
        return err;
    }
    lt_buf_t *why = NULL;
    reason_add(&why, "event not publishable as derived: %s", errstr);
    lt_mail_event_truncate_attachments(ev, 0);
    lt_mail_event_set_attachments_manifest_ref(ev, NULL);
    lt_mail_event_set_attachments_manifest_truncated(ev, 0);
    lt_mail_event_set_rfc822_message_id(ev, NULL);
    lt_mail_event_set_parse_error(ev, lt_buf_str(why));
    err = produce_event(s, ev, size, errstr, n);
    if (!err) {
        lt_series_inc(s->env.metrics->messages_partial);
        lt_warn(&s->log, "message %s published without manifest: %s",
                lt_mail_event_get_provider_message_id(ev), lt_buf_str(why));
    } else if (per_message(err)) {
        skip_message(s, lt_mail_event_get_provider_message_id(ev), errstr);
        err = LT_OK;
    }
    lt_buf_destroy(why);
    return err;
}

/* --- parallel uploads ------------------------------------------------------
 * With s3_parallel > 1, a message held in memory is parsed here, then its
 * objects (.eml and attachments) are stored by s3_parallel threads, each
 * with its own S3 connection, while the connector reads the next messages.
 * Events are produced in message order, each only once all its objects are
 * stored; lt_sync_checkpoint() produces every pending event before its
 * marker, and an abort drops the pending ones (their objects may exist:
 * keys are deterministic, a retry overwrites them). So the delivery
 * protocol is unchanged: no event without its objects, no watermark
 * without its events. An upload error is returned by a later
 * lt_sync_message_end() or by lt_sync_checkpoint(). */
#define UP_MAX_BYTES ((size_t)64 << 20) /* held by pending messages */
#define UP_JOBS_PER_THREAD 4

typedef struct {
    char key[LT_OBJKEY_MAX + 1];
    lt_buf_t *data; /* freed once stored */
    uint64_t len;
    char *ctype;
    char *aid, *fname; /* attachments */
    char sha[LT_S3_SHA256_HEX];
    int state; /* 0 queued, 1 storing, 2 done */
    lt_err_t err; /* storing it failed */
} up_obj_t;

typedef struct up_job_s {
    struct up_job_s *next;
    char pmid[1024];
    char *thread_id, *mailbox, *rfc822_id;
    int64_t received_at;
    uint64_t size;
    up_obj_t *obj; /* [0] the .eml */
    size_t nobj, ndone;
    lt_err_t err; /* of the .eml, or one that fails the batch */
    char errstr[512];
    lt_buf_t *reason; /* what could not be derived (parse_error), NULL: none */
} up_job_t;

typedef struct {
    struct uploader_s *u;
    lt_s3_t *s3;
    pthread_t thread;
} up_thread_t;

typedef struct uploader_s {
    pthread_mutex_t mu;
    pthread_cond_t work; /* an object queued, or stop */
    pthread_cond_t done; /* an object stored (or failed) */
    up_job_t *head, *tail;
    size_t njobs;
    size_t bytes; /* not yet stored */
    int stop;
    int nthreads;
    up_thread_t *t;
} uploader_t;

static void job_free(up_job_t *j)
{
    for (size_t i = 0; i < j->nobj; i++) {
        lt_buf_destroy(j->obj[i].data);
        free(j->obj[i].ctype);
        free(j->obj[i].aid);
        free(j->obj[i].fname);
    }
    free(j->obj);
    lt_buf_destroy(j->reason);
    free(j->thread_id);
    free(j->mailbox);
    free(j->rfc822_id);
    free(j);
}

static void *up_main(void *arg)
{
    up_thread_t *t = arg;
    uploader_t *u = t->u;
    pthread_mutex_lock(&u->mu);
    for (;;) {
        up_job_t *j = NULL;
        up_obj_t *o = NULL;
        for (j = u->head; j && !o; j = o ? j : j->next)
            for (size_t i = 0; i < j->nobj && !o; i++)
                if (j->obj[i].state == 0)
                    o = &j->obj[i];
        if (!o) {
            if (u->stop)
                break;
            pthread_cond_wait(&u->work, &u->mu);
            continue;
        }
        o->state = 1;
        pthread_mutex_unlock(&u->mu);
        char e[512] = "";
        lt_err_t err = lt_s3_put(t->s3, &(lt_s3_object_t){.key = o->key, .content_type = o->ctype},
                                 lt_buf_data(o->data), lt_buf_len(o->data), o->sha, e, sizeof(e));
        lt_buf_destroy(o->data);
        o->data = NULL;
        pthread_mutex_lock(&u->mu);
        o->state = 2;
        o->err = err;
        j->ndone++;
        u->bytes -= o->len;
        if (err && per_message(err) && o != j->obj) /* an attachment: left out, said why */
            reason_add(&j->reason, "attachment %s not stored: %s", o->aid, e);
        else if (err && !j->err) {
            j->err = err;
            snprintf(j->errstr, sizeof(j->errstr), "%s", e);
        }
        pthread_cond_broadcast(&u->done);
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

static uploader_t *up_get(lt_sync_t *s)
{
    if (s->up)
        return s->up;
    uploader_t *u = lt_xcalloc(1, sizeof(*u));
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->work, NULL);
    pthread_cond_init(&u->done, NULL);
    u->t = lt_xcalloc((size_t)s->env.s3_parallel, sizeof(up_thread_t));
    for (int i = 0; i < s->env.s3_parallel; i++) {
        up_thread_t *t = &u->t[u->nthreads];
        t->u = u;
        t->s3 = lt_s3_dup(s->env.s3);
        if (!t->s3 || pthread_create(&t->thread, NULL, up_main, t)) {
            lt_s3_destroy(t->s3);
            break;
        }
        u->nthreads++;
    }
    s->up = u;
    return u;
}

/* Drop the pending messages: queued objects are not stored, the ones being
 * stored are waited for. */
static void up_discard(lt_sync_t *s)
{
    uploader_t *u = s->up;
    if (!u)
        return;
    pthread_mutex_lock(&u->mu);
    int busy;
    do {
        busy = 0;
        for (up_job_t *j = u->head; j; j = j->next)
            for (size_t i = 0; i < j->nobj; i++) {
                if (j->obj[i].state == 0) {
                    j->obj[i].state = 2;
                    j->ndone++;
                    u->bytes -= j->obj[i].len;
                } else if (j->obj[i].state == 1) {
                    busy = 1;
                }
            }
        if (busy)
            pthread_cond_wait(&u->done, &u->mu);
    } while (busy);
    up_job_t *j = u->head;
    u->head = u->tail = NULL;
    u->njobs = 0;
    pthread_mutex_unlock(&u->mu);
    while (j) {
        up_job_t *next = j->next;
        job_free(j);
        j = next;
    }
}

static void up_destroy(lt_sync_t *s)
{
    uploader_t *u = s->up;
    if (!u)
        return;
    up_discard(s);
    pthread_mutex_lock(&u->mu);
    u->stop = 1;
    pthread_cond_broadcast(&u->work);
    pthread_mutex_unlock(&u->mu);
    for (int i = 0; i < u->nthreads; i++) {
        pthread_join(u->t[i].thread, NULL);
        lt_s3_destroy(u->t[i].s3);
    }
    free(u->t);
    pthread_cond_destroy(&u->work);
    pthread_cond_destroy(&u->done);
    pthread_mutex_destroy(&u->mu);
    free(u);
    s->up = NULL;
}

/* The event of a message whose objects are all stored. */
static lt_err_t up_publish(lt_sync_t *s, up_job_t *j, char *errstr, size_t n)
{
    lt_provider_t prov;
    char uri[LT_OBJKEY_URI_MAX + 1];
    if (lt_provider_parse(lt_account_provider(s->account), &prov))
        return lt_seterr(errstr, n, LT_ERR_FINAL, "unknown provider %s",
                         lt_account_provider(s->account));
    lt_series_inc(s->env.metrics->messages);
    lt_series_add(s->env.metrics->message_bytes, (double)j->size);
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_event_time(ev, (int64_t)time(NULL) * 1000);
    lt_mail_event_set_tenant_id(ev, lt_account_tenant(s->account));
    lt_mail_event_set_provider(ev, prov);
    lt_mail_event_set_account_id(ev, lt_account_id(s->account));
    lt_mail_event_set_mailbox(ev, j->mailbox);
    lt_mail_event_set_provider_message_id(ev, j->pmid);
    lt_mail_event_set_provider_thread_id(ev, j->thread_id);
    lt_mail_event_set_received_at(ev, j->received_at);
    lt_s3_uri(s->env.s3, j->obj[0].key, uri, sizeof(uri));
    lt_mail_event_set_raw_object_uri(ev, uri);
    lt_mail_event_set_raw_size_bytes(ev, (int64_t)j->size);
    lt_mail_event_set_raw_sha256(ev, j->obj[0].sha);
    lt_mail_event_set_data_classification(ev, lt_account_classification(s->account));
    lt_mail_event_set_rfc822_message_id(ev, j->rfc822_id);
    lt_series_inc(s->env.metrics->objects_message);
    lt_series_add(s->env.metrics->object_bytes_message, (double)j->size);
    for (size_t i = 1; i < j->nobj; i++) {
        up_obj_t *o = &j->obj[i];
        if (o->err)
            continue;
        lt_s3_uri(s->env.s3, o->key, uri, sizeof(uri));
        lt_mail_event_add_attachment(ev, o->aid, o->fname, o->ctype, (int64_t)o->len, o->sha,
                                     uri);
        lt_series_inc(s->env.metrics->objects_attachment);
        lt_series_add(s->env.metrics->object_bytes_attachment, (double)o->len);
    }
    lt_err_t err = publish(s, ev, j->size, j->reason, errstr, n);
    lt_mail_event_destroy(ev);
    return err;
}

/* Produce the events of the finished messages at the head of the queue.
 * all: wait for every pending message; else wait only while the queue is
 * over its caps with `room` more bytes. */
static lt_err_t up_collect(lt_sync_t *s, int all, size_t room, char *errstr, size_t n)
{
    uploader_t *u = s->up;
    if (!u)
        return LT_OK;
    for (;;) {
        pthread_mutex_lock(&u->mu);
        up_job_t *j = u->head;
        if (!j) {
            pthread_mutex_unlock(&u->mu);
            return LT_OK;
        }
        while (j->ndone < j->nobj &&
               (all || u->njobs >= (size_t)u->nthreads * UP_JOBS_PER_THREAD ||
                u->bytes + room > UP_MAX_BYTES))
            pthread_cond_wait(&u->done, &u->mu);
        if (j->ndone < j->nobj) {
            pthread_mutex_unlock(&u->mu);
            return LT_OK;
        }
        u->head = j->next;
        if (!u->head)
            u->tail = NULL;
        u->njobs--;
        pthread_mutex_unlock(&u->mu);
        lt_err_t err = j->err;
        if (err && per_message(err)) { /* no raw object: nothing to publish */
            skip_message(s, j->pmid, j->errstr);
            err = LT_OK;
        } else if (err) {
            lt_seterr(errstr, n, err, "%s", j->errstr);
        } else {
            err = up_publish(s, j, errstr, n);
        }
        job_free(j);
        if (err)
            return err;
    }
}

static lt_err_t message_end_parallel(lt_sync_t *s, char *errstr, size_t n)
{
    lt_err_t err;
    lt_mime_t *m = NULL;
    const char *provider = lt_account_provider(s->account);
    char mime_err[256];
    uploader_t *u = up_get(s);
    up_job_t *j = lt_xcalloc(1, sizeof(*j));
    snprintf(j->pmid, sizeof(j->pmid), "%s", s->pmid);
    j->thread_id = s->thread_id ? lt_xstrdup(s->thread_id) : NULL;
    j->mailbox = s->mailbox ? lt_xstrdup(s->mailbox) : NULL;
    j->received_at = s->received_at;
    j->size = s->size;

    lt_mime_limits_t lim;
    lt_mime_limits_default(&lim);
    lim.max_input = s->env.max_message_bytes;
    lt_err_t merr = lt_mime_parse_mem(lt_buf_data(s->mem), lt_buf_len(s->mem), &lim, &m,
                                      mime_err, sizeof(mime_err));
    size_t natt = merr == LT_OK ? lt_mime_attachment_count(m) : 0;
    j->obj = lt_xcalloc(natt + 1, sizeof(up_obj_t));
    j->nobj = natt + 1;
    err = lt_objkey_message(&(lt_objkey_msg_t){.tenant = lt_account_tenant(s->account),
                                               .account_id = lt_account_id(s->account),
                                               .provider = provider,
                                               .provider_message_id = s->pmid},
                            j->obj[0].key, sizeof(j->obj[0].key), errstr, n);
    if (err)
        goto out;
    if (merr == LT_OK) {
        const char *mid = lt_mime_message_id(m);
        j->rfc822_id = mid ? lt_xstrdup(mid) : NULL;
        if (lt_mime_flags(m) & LT_MIME_F_CTYPE_REPLACED)
            reason_add(&j->reason, "an attachment's declared Content-Type is not a media type; "
                                   "stored as application/octet-stream");
    } else {
        /* Unparseable MIME: the raw message is stored and published all the
         * same (nothing is lost); the manifest stays empty, parse_error says why. */
        lt_warn(&s->log, "message %s: MIME not parsed (%s); published without manifest",
                s->pmid, mime_err);
        reason_add(&j->reason, "MIME: %s", mime_err);
    }
    j->nobj = 1;
    for (size_t i = 0; i < natt; i++) {
        up_obj_t *o = &j->obj[j->nobj++];
        const char *fname = lt_mime_attachment_filename(m, i);
        const char *ctype = lt_mime_attachment_content_type(m, i);
        o->aid = lt_xstrdup(lt_mime_attachment_id(m, i));
        o->fname = fname ? lt_xstrdup(fname) : NULL;
        o->ctype = lt_xstrdup(ctype ? ctype : "application/octet-stream");
        err = lt_objkey_attachment(&(lt_objkey_msg_t){.tenant = lt_account_tenant(s->account),
                                                      .account_id = lt_account_id(s->account),
                                                      .provider = provider,
                                                      .provider_message_id = s->pmid},
                                   o->aid, fname, o->key, sizeof(o->key), errstr, n);
        if (!err) {
            o->data = lt_buf_new(s->env.max_message_bytes);
            err = lt_mime_attachment_read(m, i, o->data, errstr, n);
        }
        if (err && per_message(err)) { /* this attachment only: left out, said why */
            reason_add(&j->reason, "attachment %s not stored: %s", o->aid, errstr);
            lt_buf_destroy(o->data);
            free(o->ctype);
            free(o->aid);
            free(o->fname);
            memset(o, 0, sizeof(*o));
            j->nobj--;
            err = LT_OK;
            continue;
        }
        if (err)
            goto out;
        o->len = lt_buf_len(o->data);
    }
    /* the .eml: take the buffer over */
    j->obj[0].data = s->mem;
    j->obj[0].len = lt_buf_len(s->mem);
    j->obj[0].ctype = lt_xstrdup("message/rfc822");
    s->mem = lt_buf_new(LT_SYNC_MEM_MAX);
    size_t bytes = 0;
    for (size_t i = 0; i < j->nobj; i++)
        bytes += j->obj[i].len;

    /* room: publish finished messages, wait while over the caps */
    err = up_collect(s, 0, bytes, errstr, n);
    if (err)
        goto out;
    pthread_mutex_lock(&u->mu);
    if (u->tail)
        u->tail->next = j;
    else
        u->head = j;
    u->tail = j;
    u->njobs++;
    u->bytes += bytes;
    pthread_cond_broadcast(&u->work);
    pthread_mutex_unlock(&u->mu);
    j = NULL;
    if (u->nthreads == 0) /* no thread could start: store it now, in order */
        err = lt_seterr(errstr, n, LT_ERR_TEMPORARY, "S3 upload threads could not start");
out:
    if (j)
        job_free(j);
    lt_mime_destroy(m);
    message_reset(s);
    return err;
}

lt_err_t lt_sync_message_end(lt_sync_t *s, char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    lt_mime_t *m = NULL;
    lt_mail_event_t *ev = NULL;
    const char *provider = lt_account_provider(s->account);
    lt_provider_t prov;
    char key[LT_OBJKEY_MAX + 1], uri[LT_OBJKEY_URI_MAX + 1], sha[LT_S3_SHA256_HEX];
    char mime_err[256];
    lt_buf_t *reason = NULL; /* what could not be derived */

    if (!s->in_message)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "end outside a message");
    if (s->fd < 0 && s->env.s3_parallel > 1)
        return message_end_parallel(s, errstr, errstr_size);
    /* in order: what is still being stored goes first */
    if ((err = up_collect(s, 1, 0, errstr, errstr_size))) {
        message_reset(s);
        return err;
    }
    lt_series_inc(s->env.metrics->messages);
    lt_series_add(s->env.metrics->message_bytes, (double)s->size);
    if ((err = lt_provider_parse(provider, &prov)))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "unknown provider %s", provider);
    err = lt_objkey_message(&(lt_objkey_msg_t){.tenant = lt_account_tenant(s->account),
                                               .account_id = lt_account_id(s->account),
                                               .provider = provider,
                                               .provider_message_id = s->pmid},
                            key, sizeof(key), errstr, errstr_size);
    if (err)
        goto out;

    /* 1. the raw message */
    lt_mime_limits_t lim;
    lt_mime_limits_default(&lim);
    lim.max_input = s->env.max_message_bytes;
    lt_err_t merr;
    if (s->fd >= 0) {
        uint64_t sz = 0;
        if (lseek(s->fd, 0, SEEK_SET) < 0) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "seek: %s", strerror(errno));
            goto out;
        }
        err = lt_s3_put_file(s->env.s3,
                             &(lt_s3_object_t){.key = key, .content_type = "message/rfc822"}, s->fd,
                             sha, &sz, errstr, errstr_size);
        if (err)
            goto raw_failed;
        merr = lt_mime_parse_file(s->path, &lim, &m, mime_err, sizeof(mime_err));
    } else {
        err = lt_s3_put(s->env.s3, &(lt_s3_object_t){.key = key, .content_type = "message/rfc822"},
                        lt_buf_data(s->mem), lt_buf_len(s->mem), sha, errstr, errstr_size);
        if (err)
            goto raw_failed;
        merr = lt_mime_parse_mem(lt_buf_data(s->mem), lt_buf_len(s->mem), &lim, &m, mime_err,
                                 sizeof(mime_err));
    }
    lt_s3_uri(s->env.s3, key, uri, sizeof(uri));
    lt_series_inc(s->env.metrics->objects_message);
    lt_series_add(s->env.metrics->object_bytes_message, (double)s->size);

    /* 2. the event */
    ev = lt_mail_event_new();
    lt_mail_event_set_event_time(ev, (int64_t)time(NULL) * 1000);
    lt_mail_event_set_tenant_id(ev, lt_account_tenant(s->account));
    lt_mail_event_set_provider(ev, prov);
    lt_mail_event_set_account_id(ev, lt_account_id(s->account));
    lt_mail_event_set_mailbox(ev, s->mailbox);
    lt_mail_event_set_provider_message_id(ev, s->pmid);
    lt_mail_event_set_provider_thread_id(ev, s->thread_id);
    lt_mail_event_set_received_at(ev, s->received_at);
    lt_mail_event_set_raw_object_uri(ev, uri);
    lt_mail_event_set_raw_size_bytes(ev, (int64_t)s->size);
    lt_mail_event_set_raw_sha256(ev, sha);
    lt_mail_event_set_data_classification(ev, lt_account_classification(s->account));
    if (merr == LT_OK) {
        lt_mail_event_set_rfc822_message_id(ev, lt_mime_message_id(m));
        if (lt_mime_flags(m) & LT_MIME_F_CTYPE_REPLACED)
            reason_add(&reason, "an attachment's declared Content-Type is not a media type; "
                                "stored as application/octet-stream");
        /* 3. the attachments */
        err = store_attachments(s, m, ev, provider, &reason, errstr, errstr_size);
        if (err)
            goto out;
    } else {
        /* Unparseable MIME: the raw message is stored and published all the
         * same (nothing is lost); the manifest stays empty, parse_error says why. */
        lt_warn(&s->log, "message %s: MIME not parsed (%s); published without manifest",
                s->pmid, mime_err);
        reason_add(&reason, "MIME: %s", mime_err);
    }

    /* 4. produce inside the transaction */
    err = publish(s, ev, s->size, reason, errstr, errstr_size);
    goto out;
raw_failed:
    if (per_message(err)) { /* no raw object: nothing to publish */
        skip_message(s, s->pmid, errstr);
        err = LT_OK;
    }
out:
    lt_buf_destroy(reason);
    lt_mail_event_destroy(ev);
    lt_mime_destroy(m);
    message_reset(s);
    return err;
}

/* --- delivery protocol ------------------------------------------------- */

static lt_err_t produce_marker(lt_sync_t *s, const char *scope, const char *wm_json, char *errstr,
                               size_t n)
{
    char key[600];
    snprintf(key, sizeof(key), "%s/%s/%s", lt_account_tenant(s->account),
             lt_account_id(s->account), scope);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "tenant_id", json_object_new_string(lt_account_tenant(s->account)));
    json_object_object_add(o, "account_id", json_object_new_string(lt_account_id(s->account)));
    json_object_object_add(o, "scope", json_object_new_string(scope));
    json_object_object_add(o, "provider",
                           json_object_new_string(lt_account_provider(s->account)));
    json_object_object_add(o, "command_id", json_object_new_string(lt_command_id(s->cmd)));
    json_object_object_add(o, "events", json_object_new_int64(s->uncommitted));
    if (wm_json)
        json_object_object_add(o, "watermark", json_tokener_parse(wm_json));
    const char *v = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        s->env.producer, RD_KAFKA_V_TOPIC(s->env.checkpoint_topic),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)v, strlen(v)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&s->marker_dr),
        RD_KAFKA_V_END);
    json_object_put(o);
    if (kerr == RD_KAFKA_RESP_ERR__FATAL)
        s->producer_unusable = 1;
    if (kerr)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "produce marker: %s",
                         rd_kafka_err2str(kerr));
    return LT_OK;
}

lt_err_t lt_sync_checkpoint(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                            int resync, char *errstr, size_t errstr_size)
{
    return lt_sync_checkpoint_cursor(s, scope, wm, resync, LT_CURSOR_NONE, NULL, errstr,
                                     errstr_size);
}

lt_err_t lt_sync_checkpoint_cursor(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                                   int resync, lt_cursor_home_t home, const char *cursor,
                                   char *errstr, size_t errstr_size)
{
    lt_err_t err;
    if (cursor && strlen(cursor) >= LT_WATERMARK_CURSOR_MAX)
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "sync cursor too long (%zu bytes)",
                         strlen(cursor));
    const char *tenant = lt_account_tenant(s->account);
    const char *acct = lt_account_id(s->account);
    const char *provider = lt_account_provider(s->account);
    char wm_json[LT_WATERMARK_JSON_MAX];
    if (wm && (err = lt_watermark_to_json(provider, wm, wm_json, errstr, errstr_size)))
        return err;
    /* messages still being stored: their events first (or the batch fails) */
    if ((err = up_collect(s, 1, 0, errstr, errstr_size))) {
        lt_sync_abort(s);
        return err;
    }

    if (!s->txn_open) {
        /* No event to protect: the watermark may move on its own. */
        err = LT_OK;
        if (wm) {
            int stored = 0;
            err = lt_watermark_set(s->env.db, &(lt_watermark_key_t){tenant, acct, scope, provider},
                                   wm, resync, &stored, errstr, errstr_size);
        }
        /* (after the watermark: a full sync's final cursor is deleted once
         * its watermark is stored; a crash between redoes nothing) */
        if (!err && home)
            err = lt_watermark_cursor_set(s->env.db,
                                          &(lt_watermark_key_t){tenant, acct, scope, provider},
                                          home, lt_command_id(s->cmd), cursor, errstr, errstr_size);
        if (!err)
            counts_durable(s); /* skipped ones only: the connector moves past them */
        return err;
    }

    /* (b) marker, flush, learn its position */
    err = produce_marker(s, scope, wm ? wm_json : NULL, errstr, errstr_size);
    if (err)
        goto abort;
    rd_kafka_resp_err_t ferr = rd_kafka_flush(s->env.producer, s->env.txn_timeout_ms);
    if (ferr) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "flush: %s",
                        rd_kafka_err2str(ferr));
        goto abort;
    }
    if (s->ev_dr.failed || s->marker_dr.failed || s->marker_dr.delivered != 1) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "%lld event(s) not delivered: %s", (long long)s->ev_dr.failed,
                        rd_kafka_err2str(s->ev_dr.failed ? s->ev_dr.first_err
                                                         : s->marker_dr.first_err));
        goto abort;
    }

    /* (c) the in-doubt record */
    lt_watermark_pending_t p;
    memset(&p, 0, sizeof(p));
    int pending = wm || home;
    if (pending) {
        if (wm)
            p.wm = *wm;
        p.no_wm = !wm;
        p.resync = resync;
        p.cursor_home = home;
        if (home && cursor)
            snprintf(p.cursor, sizeof(p.cursor), "%s", cursor);
        snprintf(p.command_id, sizeof(p.command_id), "%s", lt_command_id(s->cmd));
        snprintf(p.marker_topic, sizeof(p.marker_topic), "%s", s->env.checkpoint_topic);
        p.marker_partition = s->marker_dr.partition;
        p.marker_offset = s->marker_dr.offset;
        err = lt_watermark_pending_put(s->env.db,
                                       &(lt_watermark_key_t){tenant, acct, scope, provider}, &p,
                                       errstr, errstr_size);
        if (err)
            goto abort;
    }

    /* (d) commit */
    rd_kafka_error_t *e;
    for (int tries = 1;; tries++) {
        /* retriable (e.g. a timeout): librdkafka wants the same call again;
         * until it succeeds the producer accepts no new transaction */
        e = rd_kafka_commit_transaction(s->env.producer, s->env.txn_timeout_ms);
        if (!e || !rd_kafka_error_is_retriable(e) || tries == 3)
            break;
        lt_warn(&s->log, "commit_transaction: %s; retrying", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    if (e) {
        int abortable = rd_kafka_error_txn_requires_abort(e) && !rd_kafka_error_is_fatal(e);
        err = kafka_err(s, e, "commit_transaction", errstr, errstr_size);
        if (!abortable) {
            /* Outcome unknown (e.g. a timeout), or a fatal error (fenced):
             * leave the pending row for recovery, which reads the marker to
             * decide. The producer stays in its commit, or is dead, and
             * begins no transaction: it is replaced, and the new one's
             * init_transactions() (same transactional.id) completes or
             * aborts this transaction. */
            s->txn_open = 0;
            s->in_doubt = 1;
            s->producer_unusable = 1;
            return LT_ERR_TEMPORARY;
        }
        lt_sync_abort(s);
        if (pending) {
            char e2[256];
            if (lt_watermark_pending_discard(s->env.db,
                                             &(lt_watermark_key_t){tenant, acct, scope, provider},
                                             &p, e2, sizeof(e2)))
                lt_warn(&s->log, "discard pending after abort: %s", e2);
        }
        return err;
    }
    s->txn_open = 0;
    lt_series_add(s->env.metrics->events, (double)s->uncommitted);
    s->uncommitted = 0;
    counts_durable(s);

    /* (e) apply */
    if (pending) {
        int stored = 0;
        err = lt_watermark_pending_apply(s->env.db,
                                         &(lt_watermark_key_t){tenant, acct, scope, provider}, &p,
                                         &stored, errstr, errstr_size);
        if (err) {
            s->in_doubt = 1; /* committed: recovery applies it, nobody redoes it */
            return err;
        }
    }
    return LT_OK;
abort:
    lt_sync_abort(s);
    return err;
}

/* --- recovery ----------------------------------------------------------- */

/* In-doubt rows are collected first (the list callback must not use the
 * connection), then resolved one by one. */
typedef struct {
    char scope[1024];
    char provider[16];
    lt_watermark_pending_t p;
} pending_row_t;

typedef struct {
    pending_row_t *rows;
    int n, alloc;
} pending_list_t;
/* 1: committed, 0: aborted, -1: not decided yet / error */
static int marker_visible(lt_sync_t *s, const char *topic, int32_t partition, int64_t offset,
                          int timeout_ms, char *errstr, size_t n)
{
    rd_kafka_t *rk = s->env.marker_reader;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, topic, partition)->offset = offset;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (kerr) {
        lt_seterr(errstr, n, LT_ERR_TEMPORARY, "assign marker partition: %s",
                  rd_kafka_err2str(kerr));
        return -1;
    }
    int verdict = -1;
    int64_t deadline = (int64_t)time(NULL) * 1000 + timeout_ms;
    while ((int64_t)time(NULL) * 1000 < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* End of the stable part of the log: beyond the marker means
             * its transaction was aborted; at or before it, undecided. */
            if (m->offset > offset)
                verdict = 0;
        } else if (m->err) {
            lt_seterr(errstr, n, LT_ERR_TEMPORARY, "read marker: %s",
                      rd_kafka_message_errstr(m));
        } else {
            verdict = m->offset == offset ? 1 : 0;
        }
        rd_kafka_message_destroy(m);
        if (verdict >= 0)
            break;
    }
    rd_kafka_assign(rk, NULL);
    if (verdict < 0 && errstr && !*errstr)
        lt_seterr(errstr, n, LT_ERR_TEMPORARY,
                  "transaction of marker %s[%d]@%lld not decided after %d ms", topic, partition,
                  (long long)offset, timeout_ms);
    return verdict;
}

static int collect_pending(const char *scope, const char *provider,
                           const lt_watermark_pending_t *p, void *opaque)
{
    pending_list_t *l = opaque;
    if (l->n == l->alloc) {
        l->alloc = l->alloc ? l->alloc * 2 : 4;
        l->rows = lt_xrealloc(l->rows, (size_t)l->alloc * sizeof(pending_row_t));
    }
    pending_row_t *r = &l->rows[l->n++];
    snprintf(r->scope, sizeof(r->scope), "%s", scope);
    snprintf(r->provider, sizeof(r->provider), "%s", provider);
    r->p = *p;
    return 0;
}

lt_err_t lt_sync_recover(lt_sync_t *s, char *errstr, size_t errstr_size)
{
    const char *tenant = lt_account_tenant(s->account);
    const char *acct = lt_account_id(s->account);
    pending_list_t l = {NULL, 0, 0};
    lt_err_t err =
        lt_watermark_pending_list(s->env.db, tenant, acct, collect_pending, &l, errstr, errstr_size);
    for (int i = 0; !err && i < l.n; i++) {
        pending_row_t *r = &l.rows[i];
        if (errstr && errstr_size)
            errstr[0] = 0;
        int v = marker_visible(s, r->p.marker_topic, r->p.marker_partition, r->p.marker_offset,
                               s->env.txn_timeout_ms + 10000, errstr, errstr_size);
        if (v < 0) {
            err = LT_ERR_TEMPORARY;
            break;
        }
        int stored = 0;
        err = v ? lt_watermark_pending_apply(
                      s->env.db, &(lt_watermark_key_t){tenant, acct, r->scope, r->provider}, &r->p,
                      &stored, errstr, errstr_size)
                : lt_watermark_pending_discard(
                      s->env.db, &(lt_watermark_key_t){tenant, acct, r->scope, r->provider}, &r->p,
                      errstr, errstr_size);
        if (!err)
            lt_info(&s->log, "recovered in-doubt batch of scope %s (command %s): %s", r->scope,
                    r->p.command_id, v ? "committed, watermark applied" : "aborted, discarded");
    }
    free(l.rows);
    return err;
}
