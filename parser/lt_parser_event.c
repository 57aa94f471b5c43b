#include "lt_parser_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_mailrow.h"
#include "lt_objkey.h"

static void copy_id(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
}

/* 1 if `uri` parses and its key lies under `prefix`; else 0 with the
 * problem in why (bucket_out: the URI's bucket). */
static int own_key(const char *uri, const char *prefix, char *bucket_out, char *why, size_t n)
{
    char key[LT_OBJKEY_MAX + 1], e[256];
    if (lt_objkey_uri_parse(uri, bucket_out, LT_OBJKEY_BUCKET_MAX + 1, key, sizeof(key), e,
                            sizeof(e))) {
        lt_seterr(why, n, LT_ERR_INVALID, "%s", e);
        return 0;
    }
    if (strncmp(key, prefix, strlen(prefix))) {
        lt_seterr(why, n, LT_ERR_INVALID, "key outside the event's own folder %s: %s", prefix, key);
        return 0;
    }
    return 1;
}

lt_err_t lt_parser_event_check_keys(const lt_mail_event_t *ev, const char *bucket, char *reason,
                                    size_t reason_size)
{
    char prefix[LT_OBJKEY_MAX + 1], b[LT_OBJKEY_BUCKET_MAX + 1], why[900];
    if (reason && reason_size)
        reason[0] = 0;
    const char *provider = lt_provider_name(lt_mail_event_get_provider(ev));
    if (lt_objkey_message_prefix(
            &(lt_objkey_msg_t){.tenant = lt_mail_event_get_tenant_id(ev),
                               .account_id = lt_mail_event_get_account_id(ev),
                               .provider = provider ? provider : "",
                               .provider_message_id = lt_mail_event_get_provider_message_id(ev)},
            prefix, sizeof(prefix), why, sizeof(why)))
        return lt_seterr(reason, reason_size, LT_ERR_INVALID, "event ids name no object folder: %s",
                         why);
    if (!own_key(lt_mail_event_get_raw_object_uri(ev), prefix, b, why, sizeof(why)))
        return lt_seterr(reason, reason_size, LT_ERR_INVALID, "raw_object_uri: %s", why);
    const char *ref = lt_mail_event_get_attachments_manifest_ref(ev);
    if (ref) {
        if (!own_key(ref, prefix, b, why, sizeof(why)))
            return lt_seterr(reason, reason_size, LT_ERR_INVALID, "attachments_manifest_ref: %s",
                             why);
        if (strcmp(b, bucket))
            return lt_seterr(reason, reason_size, LT_ERR_INVALID,
                             "attachments_manifest_ref: bucket %s is not the raw bucket %s", b,
                             bucket);
    }
    size_t na = lt_mail_event_attachment_count(ev);
    for (size_t i = 0; i < na; i++) {
        lt_mail_attachment_t a = {0};
        lt_mail_event_get_attachment(ev, i, &a);
        const char *aid = a.attachment_id, *uri = a.object_uri;
        if (!own_key(uri, prefix, b, why, sizeof(why)))
            return lt_seterr(reason, reason_size, LT_ERR_INVALID, "attachment %s object_uri: %s",
                             aid ? aid : "?", why);
        if (strcmp(b, bucket))
            return lt_seterr(reason, reason_size, LT_ERR_INVALID,
                             "attachment %s object_uri: bucket %s is not the raw bucket %s",
                             aid ? aid : "?", b, bucket);
    }
    return LT_OK;
}

/* The .eml of ev parsed into *m, or a reason in out (parse error) / a
 * RETRY verdict. */
static void fetch_and_parse(lt_parser_event_ctx_t *c, const lt_mail_event_t *ev, lt_mime_t **m,
                            lt_parser_outcome_t *out)
{
    char bucket[LT_OBJKEY_BUCKET_MAX + 1], key[LT_OBJKEY_MAX + 1];
    char e[900];
    lt_err_t err = lt_objkey_uri_parse(lt_mail_event_get_raw_object_uri(ev), bucket, sizeof(bucket),
                                       key, sizeof(key), e, sizeof(e));
    if (err) {
        out->err_class = LT_ERR_INVALID;
        snprintf(out->reason, sizeof(out->reason), "raw_object_uri: %s", e);
        return;
    }
    if (strcmp(bucket, c->bucket)) {
        out->err_class = LT_ERR_FINAL;
        snprintf(out->reason, sizeof(out->reason),
                 "raw message is in bucket %s; this parser reads bucket %s", bucket, c->bucket);
        return;
    }
    int64_t declared = lt_mail_event_get_raw_size_bytes(ev);
    if (declared > 0 && (uint64_t)declared > c->max_message_bytes) {
        out->err_class = LT_ERR_TOO_BIG;
        snprintf(out->reason, sizeof(out->reason),
                 "raw message of %lld bytes is over the %llu-byte cap", (long long)declared,
                 (unsigned long long)c->max_message_bytes);
        return;
    }
    err = lt_s3_get(c->s3, key, c->raw, e, sizeof(e));
    if (!err)
        out->raw_bytes = lt_buf_len(c->raw);
    if (err == LT_ERR_TEMPORARY) {
        out->verdict = LT_PARSED_RETRY;
        out->err_class = err;
        snprintf(out->reason, sizeof(out->reason), "%s", e);
        return;
    }
    if (err) {
        out->err_class = err;
        snprintf(out->reason, sizeof(out->reason), "raw message: %s", e);
        return;
    }
    err = lt_mime_parse_mem(lt_buf_data(c->raw), lt_buf_len(c->raw), &c->limits, m, e, sizeof(e));
    if (err) {
        out->err_class = err;
        snprintf(out->reason, sizeof(out->reason), "MIME: %s", e);
    }
}

/* An event whose manifest was cut to fit Kafka references the whole one:
 * read it into ev (so the row lists every attachment). Failing that, the
 * inline part stays and the reason goes into out (parse error), or a RETRY
 * verdict for a temporary failure. */
static void load_manifest(lt_parser_event_ctx_t *c, lt_mail_event_t *ev, lt_parser_outcome_t *out)
{
    const char *ref = lt_mail_event_get_attachments_manifest_ref(ev);
    if (!ref)
        return;
    char bucket[LT_OBJKEY_BUCKET_MAX + 1], key[LT_OBJKEY_MAX + 1];
    char e[900];
    lt_err_t err = lt_objkey_uri_parse(ref, bucket, sizeof(bucket), key, sizeof(key), e, sizeof(e));
    if (!err && strcmp(bucket, c->bucket))
        err = lt_seterr(e, sizeof(e), LT_ERR_FINAL, "in bucket %s; this parser reads bucket %s",
                        bucket, c->bucket);
    if (!err)
        err = lt_s3_get(c->s3, key, c->raw, e, sizeof(e));
    if (err == LT_ERR_TEMPORARY) {
        out->verdict = LT_PARSED_RETRY;
        out->err_class = err;
        snprintf(out->reason, sizeof(out->reason), "attachments manifest: %s", e);
        return;
    }
    if (!err)
        err = lt_mail_event_manifest_from_json(ev, lt_buf_str(c->raw), lt_buf_len(c->raw), e,
                                               sizeof(e));
    if (err) {
        out->err_class = err;
        snprintf(out->reason, sizeof(out->reason), "attachments manifest: %s", e);
    }
}

void lt_parser_outcome_clear(lt_parser_outcome_t *out)
{
    free(out->key_tenant);
    free(out->key_account);
    free(out->key_message);
    lt_change_event_destroy(out->change);
    out->key_tenant = out->key_account = out->key_message = NULL;
    out->change = NULL;
}

/* The writer schema of a record from the registry, by the id in its header.
 * LT_OK; or a verdict in out (DLQ for an empty value, RETRY when the
 * registry cannot answer) and LT_ERR_FINAL; or another error with the
 * reason in e (the record is not decodable; *missing: the id is unknown). */
static lt_err_t writer_schema(lt_parser_event_ctx_t *c, const void *value, size_t len,
                              lt_parser_outcome_t *out, int *missing, char *e, size_t en)
{
    int32_t schema_id = 0;
    *missing = 0;
    if (!value || !len) {
        out->verdict = LT_PARSED_DLQ;
        out->err_class = LT_ERR_INVALID;
        out->dlq_reason = "empty";
        snprintf(out->reason, sizeof(out->reason), "empty record value");
        return LT_ERR_FINAL;
    }
    lt_err_t err = lt_mail_event_peek_schema_id(value, len, &schema_id, e, en);
    if (err)
        return err;
    err = lt_registry_get_schema(c->registry, schema_id, c->schema, e, en);
    *missing = err != LT_OK;
    if (err && err != LT_ERR_NOT_FOUND && err != LT_ERR_TOO_BIG) {
        /* the registry, not the record: try again later */
        out->verdict = LT_PARSED_RETRY;
        out->err_class = err;
        snprintf(out->reason, sizeof(out->reason), "schema id %d: %s", (int)schema_id, e);
        return LT_ERR_FINAL;
    }
    return err;
}

/* Years 1..9999 in epoch milliseconds (what the emails table holds). */
#define MS_MIN (-62135596800000LL)
#define MS_MAX (253402300799999LL)

void lt_parser_change(lt_parser_event_ctx_t *c, const void *value, size_t len,
                      lt_parser_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    char e[900];
    int missing = 0;
    lt_change_event_t *ev = NULL;
    lt_err_t err = writer_schema(c, value, len, out, &missing, e, sizeof(e));
    if (err == LT_ERR_FINAL && out->reason[0])
        return;
    if (!err)
        err = lt_change_event_decode(c->change_codec, value, len, lt_buf_str(c->schema), &ev, e,
                                     sizeof(e));
    if (err) {
        out->verdict = LT_PARSED_DLQ;
        out->err_class = err;
        out->dlq_reason = missing ? "unknown_schema" : "undecodable";
        snprintf(out->reason, sizeof(out->reason), "undecodable mail.change.v1 record: %s", e);
        return;
    }
    copy_id(out->tenant, sizeof(out->tenant), lt_change_event_get_tenant_id(ev));
    copy_id(out->account, sizeof(out->account), lt_change_event_get_account_id(ev));
    copy_id(out->event_id, sizeof(out->event_id), lt_change_event_get_event_id(ev));
    int64_t t = lt_change_event_get_event_time(ev);
    if (t < MS_MIN || t > MS_MAX) {
        out->verdict = LT_PARSED_DLQ;
        out->err_class = LT_ERR_INVALID;
        out->dlq_reason = "no_row";
        snprintf(out->reason, sizeof(out->reason), "no change: event_time %lld ms out of range",
                 (long long)t);
        lt_change_event_destroy(ev);
        return;
    }
    out->verdict = LT_PARSED_CHANGE;
    out->change = ev;
}

void lt_parser_event(lt_parser_event_ctx_t *c, const void *value, size_t len, int32_t partition,
                     int64_t offset, lt_buf_t *row, lt_parser_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    lt_buf_reset(row);
    char e[900];
    lt_mail_event_t *ev = NULL;
    lt_mime_t *m = NULL;
    int schema_missing = 0;

    /* 1. decode: the writer schema from the registry, by the header's id */
    lt_err_t err = writer_schema(c, value, len, out, &schema_missing, e, sizeof(e));
    if (err == LT_ERR_FINAL && out->reason[0])
        return;
    if (!err)
        err = lt_mail_event_decode(c->codec, value, len, lt_buf_str(c->schema), &ev, e, sizeof(e));
    if (err) {
        out->verdict = LT_PARSED_DLQ;
        out->err_class = err;
        out->dlq_reason = schema_missing ? "unknown_schema" : "undecodable";
        snprintf(out->reason, sizeof(out->reason), "undecodable mail.raw.v1 record: %s", e);
        return;
    }
    copy_id(out->tenant, sizeof(out->tenant), lt_mail_event_get_tenant_id(ev));
    copy_id(out->account, sizeof(out->account), lt_mail_event_get_account_id(ev));
    copy_id(out->event_id, sizeof(out->event_id), lt_mail_event_get_event_id(ev));

    /* 2. only objects of its own: never another tenant's mail as this
     * tenant's row (the raw message, the inline manifest, the reference to
     * the whole manifest) */
    err = lt_parser_event_check_keys(ev, c->bucket, out->reason, sizeof(out->reason));
    if (err) {
        out->verdict = LT_PARSED_DLQ;
        out->err_class = err;
        out->dlq_reason = "foreign_object";
        goto out;
    }

    /* 3. the whole manifest when the event carries part of it; its entries
     * must be the event's own too */
    if (lt_mail_event_get_attachments_manifest_ref(ev)) {
        load_manifest(c, ev, out);
        if (out->verdict == LT_PARSED_RETRY)
            goto out;
        /* a failed load keeps its reason in out (a parse error) */
        char why[sizeof(out->reason) - 32];
        err = lt_parser_event_check_keys(ev, c->bucket, why, sizeof(why));
        if (err) {
            snprintf(out->reason, sizeof(out->reason), "attachments manifest: %s", why);
            out->verdict = LT_PARSED_DLQ;
            out->err_class = err;
            out->dlq_reason = "foreign_object";
            goto out;
        }
    }

    fetch_and_parse(c, ev, &m, out);
    if (out->verdict == LT_PARSED_RETRY)
        goto out;
    /* what the worker could not derive (an attachment left out, a manifest
     * dropped, a content type replaced) marks the row too, unless this
     * parse found a reason of its own */
    const char *worker_error = lt_mail_event_get_parse_error(ev);
    if (!out->reason[0] && worker_error) {
        out->err_class = LT_ERR_INVALID;
        snprintf(out->reason, sizeof(out->reason), "ingest: %s", worker_error);
    }
    out->parse_error = out->reason[0] != 0;

    /* 4. the row */
    lt_mailrow_source_t src = {partition, offset, out->parse_error ? out->reason : NULL,
                               out->parse_error ? lt_err_name(out->err_class) : NULL};
    err = lt_mailrow_json(ev, m, &src, row, e, sizeof(e));
    if (err) {
        out->verdict = LT_PARSED_DLQ;
        out->err_class = err;
        out->dlq_reason = "no_row";
        snprintf(out->reason, sizeof(out->reason), "no row: %s", e);
        goto out;
    }
    out->verdict = LT_PARSED_ROW;
    out->key_tenant = lt_xstrdup(lt_mail_event_get_tenant_id(ev));
    out->key_account = lt_xstrdup(lt_mail_event_get_account_id(ev));
    out->key_message = lt_xstrdup(lt_mail_event_get_provider_message_id(ev));
out:
    lt_mime_destroy(m);
    lt_mail_event_destroy(ev);
}
