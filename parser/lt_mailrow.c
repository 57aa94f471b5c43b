#include "lt_mailrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_emails.h"
#include "lt_objkey.h"

typedef struct {
    char bucket[LT_OBJKEY_BUCKET_MAX + 1];
    char key[LT_OBJKEY_MAX + 1];
} objref_t;

/* Bucket and key of an s3:// URI; a URI this project would not read keeps
 * its text as the key and an empty bucket (the row still records it). */
static void split_uri(const char *uri, objref_t *o)
{
    if (uri &&
        !lt_objkey_uri_parse(uri, o->bucket, sizeof(o->bucket), o->key, sizeof(o->key), NULL, 0))
        return;
    o->bucket[0] = 0;
    snprintf(o->key, sizeof(o->key), "%s", uri ? uri : "");
}

/* The mailboxes of one field as a new array of borrowed strings. */
static const char **emails_of(const lt_mime_t *m, lt_mime_field_t f, size_t *n)
{
    *n = m ? lt_mime_addr_count(m, f) : 0;
    if (!*n)
        return NULL;
    const char **v = lt_xcalloc(*n, sizeof(*v));
    for (size_t i = 0; i < *n; i++)
        v[i] = lt_mime_addr_email(m, f, i);
    return v;
}

lt_err_t lt_mailrow_json(const lt_mail_event_t *ev, const lt_mime_t *m,
                         const lt_mailrow_source_t *src, lt_buf_t *out, char *errstr,
                         size_t errstr_size)
{
    objref_t raw;
    split_uri(lt_mail_event_get_raw_object_uri(ev), &raw);
    size_t na = lt_mail_event_attachment_count(ev);
    lt_email_attachment_t *att = na ? lt_xcalloc(na, sizeof(*att)) : NULL;
    objref_t *refs = na ? lt_xcalloc(na, sizeof(*refs)) : NULL;
    for (size_t i = 0; i < na; i++) {
        lt_mail_attachment_t a = {0};
        lt_mail_event_get_attachment(ev, i, &a);
        att[i].attachment_id = a.attachment_id;
        att[i].filename = a.filename;
        att[i].content_type = a.content_type;
        att[i].size_bytes = a.size_bytes;
        att[i].sha256 = a.sha256_hex;
        split_uri(a.object_uri, &refs[i]);
        att[i].object_key = refs[i].key;
        att[i].encoded_offset = a.encoded_offset;
        att[i].encoded_length = a.encoded_length;
        att[i].transfer_encoding = a.transfer_encoding;
    }

    lt_email_row_t r = {0};
    r.tenant_id = lt_mail_event_get_tenant_id(ev);
    r.account_id = lt_mail_event_get_account_id(ev);
    r.provider_message_id = lt_mail_event_get_provider_message_id(ev);
    r.event_id = lt_mail_event_get_event_id(ev);
    r.provider = lt_provider_name(lt_mail_event_get_provider(ev));
    if (!r.provider)
        r.provider = "?"; /* decode refuses it; the emails CHECK would too */
    r.mailbox = lt_mail_event_get_mailbox(ev);
    r.thread_id = lt_mail_event_get_provider_thread_id(ev);
    r.received_at_ms = lt_mail_event_get_received_at(ev);
    r.message_id = lt_mail_event_get_rfc822_message_id(ev);
    r.attachments = att;
    r.n_attachments = na;
    r.raw_bucket = raw.bucket;
    r.raw_object_key = raw.key;
    r.raw_size_bytes = lt_mail_event_get_raw_size_bytes(ev);
    r.raw_sha256 = lt_mail_event_get_raw_sha256(ev);
    r.data_classification = lt_mail_event_get_data_classification(ev);
    r.kafka_partition = src->kafka_partition;
    r.kafka_offset = src->kafka_offset;
    r.event_time_ms = lt_mail_event_get_event_time(ev);
    r.parse_error = src->parse_error;
    r.parse_error_class = src->parse_error ? src->parse_error_class : NULL;

    char *date_raw = NULL;
    const char **to = NULL, **cc = NULL;
    if (m) {
        if (lt_mime_message_id(m))
            r.message_id = lt_mime_message_id(m);
        r.subject = lt_mime_subject(m);
        r.from_display = lt_mime_addr_display(m, LT_MIME_FROM);
        r.from_email =
            lt_mime_addr_count(m, LT_MIME_FROM) ? lt_mime_addr_email(m, LT_MIME_FROM, 0) : NULL;
        to = emails_of(m, LT_MIME_TO, &r.n_to);
        cc = emails_of(m, LT_MIME_CC, &r.n_cc);
        r.to_addrs = to;
        r.cc_addrs = cc;
        r.to_display = lt_mime_addr_display(m, LT_MIME_TO);
        r.cc_display = lt_mime_addr_display(m, LT_MIME_CC);
        r.date_ms = lt_mime_date_ms(m);
        r.has_date = r.date_ms != 0;
        date_raw = lt_mime_header_dup(m, "Date");
        r.date_raw = date_raw;
        r.body_text = lt_mime_text(m, &r.body_len);
        r.body_source = lt_mime_text_source(m);
        r.body_truncated = (lt_mime_flags(m) & LT_MIME_F_TEXT_TRUNCATED) != 0;
    }
    lt_err_t err = lt_emails_row_json(&r, out, errstr, errstr_size);
    free(date_raw);
    free(to);
    free(cc);
    free(att);
    free(refs);
    return err;
}
