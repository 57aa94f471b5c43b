/* lt_sync: the transaction of a batch and the delivery protocol
 * (docs/delivery-protocol.md): marker record, pending watermark, Kafka
 * commit, watermark applied; an abort takes the batch's counts back. */
#include "lt_sync_internal.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_clock.h"

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

void lt_sync_abort(lt_sync_t *s)
{
    s->deferred.active = 0; /* its batch goes with the rest */
    lt_sync_up_discard(s);  /* their events were never produced */
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
        lt_series_add(s->env.metrics->events_aborted,
                      (double)(s->uncommitted - lt_sync_changes_open(s)));
        s->uncommitted = 0;
    }
    lt_sync_changes_aborted(s);
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

lt_err_t lt_sync_ensure_txn(lt_sync_t *s, char *errstr, size_t n)
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

static lt_err_t checkpoint_do(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                              int resync, lt_cursor_home_t home, const char *cursor,
                              char *errstr, size_t errstr_size);

lt_err_t lt_sync_checkpoint_cursor(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                                   int resync, lt_cursor_home_t home, const char *cursor,
                                   char *errstr, size_t errstr_size)
{
    lt_err_t err = lt_sync_checkpoint_flush(s, errstr, errstr_size);
    if (!err)
        err = checkpoint_do(s, scope, wm, resync, home, cursor, errstr, errstr_size);
    return err;
}

lt_err_t lt_sync_checkpoint_defer(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                                  int resync, lt_cursor_home_t home, const char *cursor,
                                  char *errstr, size_t errstr_size)
{
    lt_err_t err = lt_sync_checkpoint_flush(s, errstr, errstr_size);
    if (err)
        return err;
    if (strlen(scope) >= sizeof(s->deferred.scope) ||
        (cursor && strlen(cursor) >= LT_WATERMARK_CURSOR_MAX))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "deferred checkpoint: scope or "
                                                            "cursor too long");
    snprintf(s->deferred.scope, sizeof(s->deferred.scope), "%s", scope);
    s->deferred.have_wm = wm != NULL;
    if (wm)
        s->deferred.wm = *wm;
    s->deferred.resync = resync;
    s->deferred.home = home;
    s->deferred.have_cursor = cursor != NULL;
    snprintf(s->deferred.cursor, sizeof(s->deferred.cursor), "%s", cursor ? cursor : "");
    s->deferred.fence = lt_sync_up_last_seq(s);
    s->deferred.active = 1;
    return LT_OK;
}

lt_err_t lt_sync_checkpoint_flush(lt_sync_t *s, char *errstr, size_t errstr_size)
{
    if (!s->deferred.active)
        return LT_OK;
    /* (the fence holds while it runs: it publishes up to it; a failure
     * aborts, which drops the fence) */
    lt_err_t err = checkpoint_do(s, s->deferred.scope, s->deferred.have_wm ? &s->deferred.wm : NULL,
                                 s->deferred.resync, s->deferred.home,
                                 s->deferred.have_cursor ? s->deferred.cursor : NULL, errstr,
                                 errstr_size);
    s->deferred.active = 0;
    return err;
}

int lt_sync_checkpoint_pending(const lt_sync_t *s)
{
    return s->deferred.active;
}

int64_t lt_sync_checkpoints_ok(const lt_sync_t *s)
{
    return s->checkpoints_ok;
}

static lt_err_t checkpoint_do(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
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
    lt_sync_timing_t *tm = &s->timing;
    double t0 = lt_now_s(), t1;
    tm->checkpoints++;
    err = lt_sync_up_collect(s, 1, 0, errstr, errstr_size);
    tm->up_wait += (t1 = lt_now_s()) - t0;
    if (err) {
        lt_sync_abort(s);
        return err;
    }

    if (!s->txn_open) {
        /* No event to protect: the watermark may move on its own. */
        err = LT_OK;
        if (lt_known_delta_count(s->known)) {
            err = lt_known_apply_now(s->env.db,
                                     &(lt_watermark_key_t){tenant, acct, scope, provider},
                                     s->known, errstr, errstr_size);
            lt_known_delta_reset(s->known);
        }
        if (!err && wm) {
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
        if (!err) {
            counts_durable(s); /* skipped ones only: the connector moves past them */
            s->checkpoints_ok++;
        }
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
    tm->flush += (t0 = lt_now_s()) - t1;

    /* (c) the in-doubt record */
    lt_watermark_pending_t p;
    memset(&p, 0, sizeof(p));
    int pending = wm || home;
    if (pending) {
        /* the batch's known-set changes wait with its pending row: one
         * Postgres transaction, one round trip (pipelined) */
        err = lt_db_begin_pipelined(s->env.db, errstr, errstr_size);
        if (err)
            goto abort;
        err = lt_known_stage(s->env.db, &(lt_watermark_key_t){tenant, acct, scope, provider},
                             s->known, errstr, errstr_size);
        if (err) {
            lt_db_rollback(s->env.db);
            goto abort;
        }
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
        if (!err)
            err = lt_db_commit(s->env.db, errstr, errstr_size);
        if (err) {
            lt_db_rollback(s->env.db);
            goto abort;
        }
    }

    tm->pending += (t1 = lt_now_s()) - t0;

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
            lt_sync_changes_aborted(s); /* staged with the pending row, for recovery */
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
    tm->commit += (t0 = lt_now_s()) - t1;
    s->txn_open = 0;
    lt_series_add(s->env.metrics->events, (double)(s->uncommitted - lt_sync_changes_open(s)));
    s->uncommitted = 0;
    counts_durable(s);
    if (!pending && lt_known_delta_count(s->known)) {
        /* no pending row to carry them (a batch that moves neither a
         * watermark nor a cursor): applied right after the commit */
        err = lt_known_apply_now(s->env.db, &(lt_watermark_key_t){tenant, acct, scope, provider},
                                 s->known, errstr, errstr_size);
        if (err)
            lt_warn(&s->log, "known messages of %s not updated after a commit: %s", scope,
                    errstr);
        err = LT_OK;
    }
    lt_sync_changes_committed(s);

    /* (e) apply */
    if (pending) {
        err = lt_watermark_pending_apply(s->env.db,
                                         &(lt_watermark_key_t){tenant, acct, scope, provider}, &p,
                                         NULL, errstr, errstr_size);
        if (err) {
            s->in_doubt = 1; /* committed: recovery applies it, nobody redoes it */
            return err;
        }
    }
    tm->apply += lt_now_s() - t0;
    s->checkpoints_ok++;
    return LT_OK;
abort:
    lt_sync_abort(s);
    return err;
}
