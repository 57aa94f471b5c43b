#include "lt_sync_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "lt_clock.h"
#include "lt_mime.h"
#include "lt_objkey.h"

static const lt_sync_metrics_t k_no_metrics;

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
    s->started_ms = s->progress_last_ms = lt_now_ms();
    s->timing.t0 = lt_now_s();
    s->skipped_ids = lt_buf_new(LT_SYNC_SKIPPED_IDS_MAX);
    s->expunged_ids = lt_buf_new(LT_SYNC_SKIPPED_IDS_MAX);
    s->known = lt_known_delta_new();
    if (traceparent && !lt_trace_parse(traceparent, strlen(traceparent), &s->trace, NULL, 0))
        s->have_trace = 1;
    return s;
}

void lt_sync_message_reset(lt_sync_t *s)
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
    s->no_room = 0;
    s->no_room_why[0] = 0;
}

void lt_sync_destroy(lt_sync_t *s)
{
    if (!s)
        return;
    lt_sync_message_reset(s);
    lt_sync_abort(s);
    lt_sync_up_destroy(s);
    const lt_sync_timing_t *t = &s->timing;
    if (t->checkpoints) {
        double all = lt_now_s() - t->t0;
        double rest = all - t->slot_wait - t->up_wait - t->flush - t->pending - t->commit - t->apply;
        lt_info(&s->log,
                "timing: %.2f s, %d checkpoint(s); waiting for upload slots %.2f s, for a "
                "batch's last uploads %.2f s; Kafka flush %.2f s, pending row %.2f s, Kafka "
                "commit %.2f s, watermark %.2f s; the rest (fetch, parse, heartbeats) %.2f s",
                all, t->checkpoints, t->slot_wait, t->up_wait, t->flush, t->pending, t->commit,
                t->apply, rest);
    }
    lt_buf_destroy(s->mem);
    lt_buf_destroy(s->skipped_ids);
    lt_buf_destroy(s->expunged_ids);
    lt_known_delta_destroy(s->known);
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
uint64_t lt_sync_max_message_bytes(const lt_sync_t *s)
{
    return s->env.max_message_bytes;
}

lt_err_t lt_sync_message_begin(lt_sync_t *s, const char *provider_message_id,
                               const char *thread_id, const char *mailbox,
                               int64_t received_at_ms, char *errstr, size_t errstr_size)
{
    if (s->in_message)
        lt_sync_message_reset(s);
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

/* A write to the spill file failed with errno e. The file is removed at
 * once (its space is wanted). For want of space (ENOSPC, EDQUOT): when the
 * message is larger than the whole file system of LATTICE_TMP_DIR, no retry
 * can ever hold it: its remaining bytes are only counted and it is skipped,
 * reported, at its end (lt_sync_message_end); else the file system is full
 * for now and the failure is temporary (the batch is fetched again). */
static lt_err_t spill_failed(lt_sync_t *s, int e, char *errstr, size_t n)
{
    const char *dir = s->env.tmp_dir ? s->env.tmp_dir : "/tmp";
    uint64_t cap = 0;
    struct statvfs v;
    memset(&v, 0, sizeof(v));
    if (fstatvfs(s->fd, &v) == 0) /* what the worker could use were it empty */
        cap = ((uint64_t)v.f_bavail + v.f_blocks - v.f_bfree) * (uint64_t)v.f_frsize;
    close(s->fd);
    unlink(s->path);
    s->fd = -1;
    if (e != ENOSPC && e != EDQUOT)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "LATTICE_TMP_DIR %s: write %s: %s", dir,
                         s->path, strerror(e));
    lt_series_inc(s->env.metrics->tmp_full);
    if (cap && s->size > cap) {
        s->no_room = 1;
        snprintf(s->no_room_why, sizeof(s->no_room_why),
                 "message larger than the whole file system of LATTICE_TMP_DIR %s (%llu bytes; "
                 "%llu bytes of the message so far): raise its size, then backfill",
                 dir, (unsigned long long)cap, (unsigned long long)s->size);
        lt_warn(&s->log, "message %s: %s (%s)", s->pmid, s->no_room_why, strerror(e));
        return LT_OK;
    }
    return lt_seterr(errstr, n, LT_ERR_TEMPORARY,
                     "LATTICE_TMP_DIR %s is full: write %s: %s (%llu of its %llu bytes free; "
                     "message %s of at least %llu bytes retried)",
                     dir, s->path, strerror(e), (unsigned long long)v.f_bavail * v.f_frsize,
                     (unsigned long long)cap, s->pmid, (unsigned long long)s->size);
}

static lt_err_t write_all(lt_sync_t *s, const uint8_t *p, size_t left, char *errstr, size_t n)
{
    while (left) {
        ssize_t w = write(s->fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return spill_failed(s, errno, errstr, n);
        }
        p += w;
        left -= (size_t)w;
    }
    return LT_OK;
}

static lt_err_t spill(lt_sync_t *s, char *errstr, size_t n)
{
    const char *dir = s->env.tmp_dir ? s->env.tmp_dir : "/tmp";
    snprintf(s->path, sizeof(s->path), "%s/%sXXXXXX", dir,
             s->env.spill_prefix ? s->env.spill_prefix : "lattice-msg-");
    s->fd = mkstemp(s->path);
    if (s->fd < 0)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "LATTICE_TMP_DIR %s: temp file: %s", dir,
                         strerror(errno));
    lt_err_t err = write_all(s, lt_buf_data(s->mem), lt_buf_len(s->mem), errstr, n);
    lt_buf_reset(s->mem);
    return err;
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
    if (s->no_room)
        return LT_OK;
    if (s->fd < 0 && lt_buf_append(s->mem, data, len) == LT_OK)
        return LT_OK;
    if (s->fd < 0) {
        lt_err_t err = spill(s, errstr, errstr_size);
        if (err || s->no_room)
            return err;
    }
    return write_all(s, data, len, errstr, errstr_size);
}

void lt_sync_message_abandon(lt_sync_t *s)
{
    lt_sync_message_reset(s);
}

/* Attachment i as a range of the raw object (LT_SYNC_ATT_RANGES): its
 * manifest entry, no object. 0 if it has no such range. */
int lt_sync_attachment_ranged(const lt_sync_t *s, lt_mime_t *m, size_t i, uint64_t *offset,
                              uint64_t *length, const char **encoding)
{
    return s->env.attachments == LT_SYNC_ATT_RANGES &&
           lt_mime_attachment_range(m, i, offset, length, encoding) == LT_OK;
}

static lt_err_t store_attachments(lt_sync_t *s, lt_mime_t *m, lt_mail_event_t *ev,
                                  const char *provider, const char *raw_uri, lt_buf_t **reason,
                                  char *errstr, size_t n)
{
    lt_err_t err = LT_OK;
    lt_buf_t *content = NULL;
    size_t count = lt_mime_attachment_count(m);
    for (size_t i = 0; i < count; i++) {
        const char *aid = lt_mime_attachment_id(m, i);
        const char *fname = lt_mime_attachment_filename(m, i);
        const char *ctype = lt_mime_attachment_content_type(m, i);
        char key[LT_OBJKEY_MAX + 1], uri[LT_OBJKEY_URI_MAX + 1], sha[LT_S3_SHA256_HEX];
        uint64_t off, len;
        const char *enc;
        if (lt_sync_attachment_ranged(s, m, i, &off, &len, &enc)) {
            lt_mail_event_add_attachment(ev, aid, fname, ctype,
                                         (int64_t)lt_mime_attachment_size(m, i),
                                         lt_mime_attachment_sha256(m, i), raw_uri);
            lt_mail_event_set_attachment_range(ev, lt_mail_event_attachment_count(ev) - 1,
                                               (int64_t)off, (int64_t)len, enc);
            lt_series_inc(s->env.metrics->attachments_ranged);
            continue;
        }
        if (!content)
            content = lt_buf_new(s->env.max_message_bytes);
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
        if (err && lt_sync_per_message(err)) { /* this attachment only: left out, said why */
            lt_sync_reason_add(reason, "attachment %s not stored: %s", aid, errstr);
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
    if (s->no_room) { /* nothing kept: reported, never published in part */
        lt_series_inc(s->env.metrics->messages);
        lt_series_add(s->env.metrics->message_bytes, (double)s->size);
        lt_sync_skip_message(s, s->pmid, s->no_room_why);
        lt_sync_message_reset(s);
        return LT_OK;
    }
    if (s->fd < 0 && s->env.s3_parallel > 1)
        return lt_sync_message_end_parallel(s, errstr, errstr_size);
    /* in order: a deferred checkpoint, then what is still being stored */
    if ((err = lt_sync_checkpoint_flush(s, errstr, errstr_size)) ||
        (err = lt_sync_up_collect(s, 1, 0, errstr, errstr_size))) {
        lt_sync_message_reset(s);
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
    lim.no_text = 1; /* the worker needs headers and attachments, not the text */
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
            lt_sync_reason_add(&reason,
                               "an attachment's declared Content-Type is not a media type; "
                               "stored as application/octet-stream");
        /* 3. the attachments */
        err = store_attachments(s, m, ev, provider, uri, &reason, errstr, errstr_size);
        if (err)
            goto out;
    } else {
        /* Unparseable MIME: the raw message is stored and published all the
         * same (nothing is lost); the manifest stays empty, parse_error says why. */
        lt_warn(&s->log, "message %s: MIME not parsed (%s); published without manifest",
                s->pmid, mime_err);
        lt_sync_reason_add(&reason, "MIME: %s", mime_err);
    }

    /* 4. produce inside the transaction */
    err = lt_sync_publish(s, ev, s->size, reason, errstr, errstr_size);
    goto out;
raw_failed:
    if (lt_sync_per_message(err)) { /* no raw object: nothing to publish */
        lt_sync_skip_message(s, s->pmid, errstr);
        err = LT_OK;
    }
out:
    lt_buf_destroy(reason);
    lt_mail_event_destroy(ev);
    lt_mime_destroy(m);
    lt_sync_message_reset(s);
    return err;
}
