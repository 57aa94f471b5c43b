#include "lt_sync_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lt_clock.h"
#include "lt_mime.h"
#include "lt_objkey.h"

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
/* Adaptive pool: it starts with s3_parallel threads and grows by one (up to
 * s3_parallel_max) each time the reader must wait for a free slot while
 * every thread is inside a PUT and the fastest of the last UP_WINDOW PUTs
 * took UP_FAR_S or more. A store that far away is limited by round trips,
 * which more requests in flight hide (30 ms per PUT: 8 threads store at
 * most ~270 objects/s); a local store that is merely busy answers some PUTs
 * fast and is not given more load. Memory stays bounded by UP_MAX_BYTES
 * whatever the number of threads. */
#define UP_WINDOW 32
#define UP_FAR_S 0.004

typedef struct {
    char key[LT_OBJKEY_MAX + 1];
    lt_buf_t *data; /* freed once stored */
    uint64_t len;
    char *ctype;
    char *aid, *fname; /* attachments */
    char sha[LT_S3_SHA256_HEX];
    int state; /* 0 queued, 1 storing, 2 done */
    lt_err_t err; /* storing it failed */
    const char *enc; /* an attachment published as a range of the .eml: not stored */
    uint64_t off, enc_len;
} up_obj_t;

typedef struct up_job_s {
    struct up_job_s *next;
    uint64_t seq; /* 1, 2, ... in queue order */
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
    int nthreads, maxthreads;
    int busy;              /* threads inside a PUT */
    double win_min;        /* fastest PUT of the current window, seconds */
    double far_min;        /* of the last complete window; 0: none yet */
    unsigned win_n;        /* PUTs in the current window */
    const lt_s3_t *origin; /* duplicated for each new thread */
    up_thread_t *t;
    uint64_t last_seq; /* of the last job queued */
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
        u->busy++;
        pthread_mutex_unlock(&u->mu);
        char e[512] = "";
        double t0 = lt_now_s();
        lt_err_t err = lt_s3_put(t->s3, &(lt_s3_object_t){.key = o->key, .content_type = o->ctype},
                                 lt_buf_data(o->data), lt_buf_len(o->data), o->sha, e, sizeof(e));
        double took = lt_now_s() - t0;
        lt_buf_destroy(o->data);
        o->data = NULL;
        pthread_mutex_lock(&u->mu);
        u->busy--;
        if (!err && (u->win_n == 0 || took < u->win_min))
            u->win_min = took;
        if (!err && ++u->win_n == UP_WINDOW) {
            u->far_min = u->win_min;
            u->win_n = 0;
        }
        o->state = 2;
        o->err = err;
        j->ndone++;
        u->bytes -= o->len;
        if (err && lt_sync_per_message(err) && o != j->obj) /* an attachment: left out, said why */
            lt_sync_reason_add(&j->reason, "attachment %s not stored: %s", o->aid, e);
        else if (err && !j->err) {
            j->err = err;
            snprintf(j->errstr, sizeof(j->errstr), "%s", e);
        }
        pthread_cond_broadcast(&u->done);
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* Start one more upload thread (u->mu held, or before any thread runs).
 * 0 when none could start. */
static int up_add_thread(uploader_t *u)
{
    if (u->nthreads >= u->maxthreads)
        return 0;
    up_thread_t *t = &u->t[u->nthreads];
    t->u = u;
    t->s3 = lt_s3_dup(u->origin);
    if (!t->s3 || pthread_create(&t->thread, NULL, up_main, t)) {
        lt_s3_destroy(t->s3);
        t->s3 = NULL;
        return 0;
    }
    u->nthreads++;
    return 1;
}

static uploader_t *up_get(lt_sync_t *s)
{
    if (s->up)
        return s->up;
    uploader_t *u = lt_xcalloc(1, sizeof(*u));
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->work, NULL);
    pthread_cond_init(&u->done, NULL);
    u->maxthreads =
        s->env.s3_parallel_max > s->env.s3_parallel ? s->env.s3_parallel_max : s->env.s3_parallel;
    u->origin = s->env.s3;
    u->t = lt_xcalloc((size_t)u->maxthreads, sizeof(up_thread_t));
    for (int i = 0; i < s->env.s3_parallel; i++)
        if (!up_add_thread(u))
            break;
    s->up = u;
    return u;
}

/* Drop the pending messages: queued objects are not stored, the ones being
 * stored are waited for. */
void lt_sync_up_discard(lt_sync_t *s)
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

void lt_sync_up_destroy(lt_sync_t *s)
{
    uploader_t *u = s->up;
    if (!u)
        return;
    lt_sync_up_discard(s);
    pthread_mutex_lock(&u->mu);
    if (u->nthreads > s->env.s3_parallel)
        lt_info(&s->log, "S3 uploads: %d threads (grew from %d: fastest recent PUT %.0f ms)",
                u->nthreads, s->env.s3_parallel, u->far_min * 1000);
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
        if (o->enc) { /* a range of the .eml */
            lt_s3_uri(s->env.s3, j->obj[0].key, uri, sizeof(uri));
            lt_mail_event_add_attachment(ev, o->aid, o->fname, o->ctype, (int64_t)o->len, o->sha,
                                         uri);
            lt_mail_event_set_attachment_range(ev, lt_mail_event_attachment_count(ev) - 1,
                                               (int64_t)o->off, (int64_t)o->enc_len, o->enc);
            lt_series_inc(s->env.metrics->attachments_ranged);
            continue;
        }
        lt_s3_uri(s->env.s3, o->key, uri, sizeof(uri));
        lt_mail_event_add_attachment(ev, o->aid, o->fname, o->ctype, (int64_t)o->len, o->sha,
                                     uri);
        lt_series_inc(s->env.metrics->objects_attachment);
        lt_series_add(s->env.metrics->object_bytes_attachment, (double)o->len);
    }
    lt_err_t err = lt_sync_publish(s, ev, j->size, j->reason, errstr, n);
    lt_mail_event_destroy(ev);
    return err;
}

uint64_t lt_sync_up_last_seq(const lt_sync_t *s)
{
    uploader_t *u = s->up;
    if (!u)
        return 0;
    pthread_mutex_lock(&u->mu);
    uint64_t v = u->last_seq;
    pthread_mutex_unlock(&u->mu);
    return v;
}

/* Produce the events of the finished messages at the head of the queue.
 * all: wait for every pending message; else wait only while the queue is
 * over its caps with `room` more bytes. With a deferred checkpoint
 * (s->deferred) only the messages up to its fence are published: the
 * later ones are stored meanwhile, their events wait. */
lt_err_t lt_sync_up_collect(lt_sync_t *s, int all, size_t room, char *errstr, size_t n)
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
        int fenced = s->deferred.active && j->seq > s->deferred.fence;
        int over;
        while ((over = u->njobs >= (size_t)u->nthreads * UP_JOBS_PER_THREAD ||
                       u->bytes + room > UP_MAX_BYTES),
               j->ndone < j->nobj || fenced) {
            if (fenced) {
                /* behind the fence: wait only for memory (bytes not yet
                 * stored); finished jobs wait for the checkpoint */
                if (all || !over || u->bytes == 0 || u->bytes + room <= UP_MAX_BYTES)
                    break;
            } else if (!all && !over) {
                break;
            } else if (!all && u->bytes + room <= UP_MAX_BYTES && u->busy == u->nthreads &&
                       u->far_min >= UP_FAR_S && up_add_thread(u)) {
                /* Held back by the slots, not by memory: a distant store
                 * gets one more thread (and so more slots). */
                continue; /* it stops growing once a thread is idle */
            }
            pthread_cond_wait(&u->done, &u->mu);
        }
        if (fenced || j->ndone < j->nobj) {
            pthread_mutex_unlock(&u->mu);
            return LT_OK;
        }
        u->head = j->next;
        if (!u->head)
            u->tail = NULL;
        u->njobs--;
        pthread_mutex_unlock(&u->mu);
        lt_err_t err = j->err;
        if (err && lt_sync_per_message(err)) { /* no raw object: nothing to publish */
            lt_sync_skip_message(s, j->pmid, j->errstr);
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

lt_err_t lt_sync_message_end_parallel(lt_sync_t *s, char *errstr, size_t n)
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
    lim.no_text = 1; /* the worker needs headers and attachments, not the text */
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
            lt_sync_reason_add(&j->reason,
                               "an attachment's declared Content-Type is not a media type; "
                               "stored as application/octet-stream");
    } else {
        /* Unparseable MIME: the raw message is stored and published all the
         * same (nothing is lost); the manifest stays empty, parse_error says why. */
        lt_warn(&s->log, "message %s: MIME not parsed (%s); published without manifest",
                s->pmid, mime_err);
        lt_sync_reason_add(&j->reason, "MIME: %s", mime_err);
    }
    j->nobj = 1;
    for (size_t i = 0; i < natt; i++) {
        up_obj_t *o = &j->obj[j->nobj++];
        const char *fname = lt_mime_attachment_filename(m, i);
        const char *ctype = lt_mime_attachment_content_type(m, i);
        o->aid = lt_xstrdup(lt_mime_attachment_id(m, i));
        o->fname = fname ? lt_xstrdup(fname) : NULL;
        o->ctype = lt_xstrdup(ctype ? ctype : "application/octet-stream");
        if (lt_sync_attachment_ranged(s, m, i, &o->off, &o->enc_len, &o->enc)) {
            o->len = lt_mime_attachment_size(m, i); /* decoded size; nothing to store */
            snprintf(o->sha, sizeof(o->sha), "%s", lt_mime_attachment_sha256(m, i));
            o->state = 2;
            j->ndone++;
            continue;
        }
        err = lt_objkey_attachment(&(lt_objkey_msg_t){.tenant = lt_account_tenant(s->account),
                                                      .account_id = lt_account_id(s->account),
                                                      .provider = provider,
                                                      .provider_message_id = s->pmid},
                                   o->aid, fname, o->key, sizeof(o->key), errstr, n);
        if (!err) {
            o->data = lt_buf_new(s->env.max_message_bytes);
            err = lt_mime_attachment_read(m, i, o->data, errstr, n);
        }
        if (err && lt_sync_per_message(err)) { /* this attachment only: left out, said why */
            lt_sync_reason_add(&j->reason, "attachment %s not stored: %s", o->aid, errstr);
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
        if (!j->obj[i].enc)
            bytes += j->obj[i].len;

    /* room: publish finished messages, wait while over the caps */
    double t0 = lt_now_s();
    err = lt_sync_up_collect(s, 0, bytes, errstr, n);
    s->timing.slot_wait += lt_now_s() - t0;
    if (err)
        goto out;
    pthread_mutex_lock(&u->mu);
    j->seq = ++u->last_seq;
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
    lt_sync_message_reset(s);
    return err;
}
