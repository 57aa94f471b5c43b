/* lt_sync: an event produced inside the open transaction, and a message
 * that fails the same way on every attempt (published with parse_error, or
 * skipped and reported). */
#include "lt_sync_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lt_objkey.h"

/* --- messages that fail the same way on every attempt ----------------------
 * An error caused by the message itself (LT_ERR_INVALID: e.g. a field S3 or
 * the codec refuses; LT_ERR_TOO_BIG: e.g. an event over the Kafka limit)
 * would come back on every run and block the scope for ever. So the message
 * is published with what could be derived and payload.parse_error saying
 * what could not; when not even that can be published it is skipped and
 * reported (lt_sync_note_skipped: status event skipped/skipped_ids, a
 * metric, a log line). Anything else (network, S3 or Kafka down) still
 * fails the batch, which is redone. */
int lt_sync_per_message(lt_err_t err)
{
    return err == LT_ERR_INVALID || err == LT_ERR_TOO_BIG;
}

#define LT_SYNC_REASON_MAX 2000

/* Append a reason to *r (a capped "; "-separated list, printable ASCII). */
void lt_sync_reason_add(lt_buf_t **r, const char *fmt, ...)
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

void lt_sync_skip_message(lt_sync_t *s, const char *pmid, const char *why)
{
    lt_warn(&s->log, "message %s skipped, reported in the command result: %s", pmid, why);
    lt_sync_note_skipped(s, pmid);
}

/* Produce one encoded record (key account_id, headers traceparent and
 * lattice.event_id) inside the open transaction, begun if needed. */
lt_err_t lt_sync_produce_wire(lt_sync_t *s, const char *topic, const lt_buf_t *wire,
                              const char *event_id, char *errstr, size_t n)
{
    lt_err_t err = lt_sync_ensure_txn(s, errstr, n);
    if (err)
        return err;
    char tp[LT_TRACEPARENT_SIZE];
    lt_trace_t span;
    if (s->have_trace && !lt_trace_child(&s->trace, &span, NULL, 0))
        lt_trace_format(&span, tp);
    else if (!lt_trace_new(&span, NULL, 0))
        lt_trace_format(&span, tp);
    else
        tp[0] = 0;
    const char *acct = lt_account_id(s->account);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    if (tp[0])
        rd_kafka_header_add(hdrs, "traceparent", -1, tp, -1);
    rd_kafka_header_add(hdrs, "lattice.event_id", -1, event_id, -1);
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        s->env.producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(acct, strlen(acct)),
        RD_KAFKA_V_VALUE((void *)lt_buf_data(wire), lt_buf_len(wire)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(&s->ev_dr), RD_KAFKA_V_END);
    if (kerr) {
        rd_kafka_headers_destroy(hdrs);
        if (kerr == RD_KAFKA_RESP_ERR__FATAL)
            s->producer_unusable = 1;
        /* refused for its size: the same on every attempt */
        return lt_seterr(errstr, n,
                         kerr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? LT_ERR_TOO_BIG
                                                                      : LT_ERR_TEMPORARY,
                         "produce: event of %zu bytes: %s", lt_buf_len(wire),
                         rd_kafka_err2str(kerr));
    }
    rd_kafka_poll(s->env.producer, 0);
    s->uncommitted++;
    return LT_OK;
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
    err = lt_sync_produce_wire(s, s->env.raw_topic, wire, lt_mail_event_get_event_id(ev), errstr,
                               n);
    if (err)
        goto out;
    if (s->track_known)
        lt_known_delta_add(s->known, lt_mail_event_get_provider_message_id(ev));
    s->messages++;
    s->progress_done++;
    lt_sync_progress_tick(s);
    s->bytes += (int64_t)size;
out:
    lt_buf_destroy(wire);
    return err;
}

/* Produce ev with reason (NULL: fully derived) as its parse_error. An error
 * of the message itself: published again as the bare envelope (raw object,
 * no manifest) saying why; failing that, skipped and reported. */
lt_err_t lt_sync_publish(lt_sync_t *s, lt_mail_event_t *ev, uint64_t size, lt_buf_t *reason,
                         char *errstr, size_t n)
{
    lt_mail_event_set_parse_error(ev, reason ? lt_buf_str(reason) : NULL);
    lt_err_t err = lt_mail_event_derive_id(ev, errstr, n);
    if (!err)
        err = produce_event(s, ev, size, errstr, n);
    if (!lt_sync_per_message(err)) {
        if (!err && reason) {
            lt_series_inc(s->env.metrics->messages_partial);
            lt_warn(&s->log, "message %s published, not fully derived: %s",
                    lt_mail_event_get_provider_message_id(ev), lt_buf_str(reason));
        }
        return err;
    }
    lt_buf_t *why = NULL;
    lt_sync_reason_add(&why, "event not publishable as derived: %s", errstr);
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
    } else if (lt_sync_per_message(err)) {
        lt_sync_skip_message(s, lt_mail_event_get_provider_message_id(ev), errstr);
        err = LT_OK;
    }
    lt_buf_destroy(why);
    return err;
}
