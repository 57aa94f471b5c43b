/* lt_parser_event_check_keys: an event may only name objects under its own
 * message folder (tenant, account, provider, message id), so an event of
 * one tenant can never turn another tenant's .eml or attachments into its
 * rows. Table of forged locations: other tenant, account, provider or
 * message, ids that are prefixes of each other, escaped segments, "..",
 * unparseable URIs, attachments in another bucket. */
#include <stdio.h>
#include <string.h>

#include "lt_event.h"
#include "lt_objkey.h"
#include "lt_parser_event.h"
#include "lt_test.h"

#define BUCKET "lattice-mail"

/* s3://BUCKET/<message key of the ids> */
static void raw_uri(const char *bucket, const char *tenant, const char *account,
                    const char *provider, const char *pmid, char *out, size_t n)
{
    char key[LT_OBJKEY_MAX + 1], err[256];
    CHECK_INT(lt_objkey_message(&(lt_objkey_msg_t){tenant, account, provider, pmid}, key,
                                sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_objkey_uri_format(bucket, key, out, n), LT_OK);
}

static void att_uri(const char *bucket, const char *tenant, const char *account,
                    const char *provider, const char *pmid, const char *aid, const char *fname,
                    char *out, size_t n)
{
    char key[LT_OBJKEY_MAX + 1], err[256];
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){tenant, account, provider, pmid}, aid, fname,
                                   key, sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_objkey_uri_format(bucket, key, out, n), LT_OK);
}

static lt_mail_event_t *event(const char *tenant, const char *account, lt_provider_t provider,
                              const char *pmid, const char *uri)
{
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_tenant_id(ev, tenant);
    lt_mail_event_set_account_id(ev, account);
    lt_mail_event_set_provider(ev, provider);
    lt_mail_event_set_provider_message_id(ev, pmid);
    lt_mail_event_set_raw_object_uri(ev, uri);
    return ev;
}

/* The check's verdict on an event of (tenant B, acct, imap, pmid) whose
 * raw_object_uri is `uri`; the reason must name the raw URI when refused. */
static lt_err_t raw_verdict(const char *tenant, const char *account, lt_provider_t provider,
                            const char *pmid, const char *uri)
{
    char reason[1024] = "";
    lt_mail_event_t *ev = event(tenant, account, provider, pmid, uri);
    lt_err_t err = lt_parser_event_check_keys(ev, BUCKET, reason, sizeof(reason));
    if (err)
        CHECK_MSG(strstr(reason, "raw_object_uri") != NULL, "reason: %s", reason);
    else
        CHECK_STR(reason, "");
    lt_mail_event_destroy(ev);
    return err;
}

#define PMID "INBOX;UIDVALIDITY=7;UID=3"

static void test_raw(void)
{
    char uri[LT_OBJKEY_URI_MAX + 1];

    /* its own object: fine */
    raw_uri(BUCKET, "tenantB", "acct", "imap", PMID, uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, PMID, uri), LT_OK);

    /* another tenant's .eml, same account and message ids */
    raw_uri(BUCKET, "tenantA", "acct", "imap", PMID, uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, PMID, uri), LT_ERR_INVALID);

    /* ids that are prefixes of each other, both ways */
    raw_uri(BUCKET, "tenantA2", "acct", "imap", PMID, uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantA", "acct", LT_PROVIDER_IMAP, PMID, uri), LT_ERR_INVALID);
    raw_uri(BUCKET, "tenantA", "acct", "imap", PMID, uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantA2", "acct", LT_PROVIDER_IMAP, PMID, uri), LT_ERR_INVALID);
    raw_uri(BUCKET, "tenantA", "acct10", "imap", "m", uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantA", "acct1", LT_PROVIDER_IMAP, "m", uri), LT_ERR_INVALID);
    raw_uri(BUCKET, "tenantA", "acct", "imap", "m10", uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantA", "acct", LT_PROVIDER_IMAP, "m1", uri), LT_ERR_INVALID);

    /* same tenant, another account / provider / message */
    raw_uri(BUCKET, "tenantA", "other", "imap", PMID, uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantA", "acct", LT_PROVIDER_IMAP, PMID, uri), LT_ERR_INVALID);
    raw_uri(BUCKET, "tenantA", "acct", "gmail", PMID, uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantA", "acct", LT_PROVIDER_IMAP, PMID, uri), LT_ERR_INVALID);
    raw_uri(BUCKET, "tenantA", "acct", "imap", "INBOX;UIDVALIDITY=7;UID=4", uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantA", "acct", LT_PROVIDER_IMAP, PMID, uri), LT_ERR_INVALID);

    /* an id with a '/' is compared escaped: "A/account/x" is not tenant A */
    CHECK_INT(raw_verdict("tenantA/account/acct", "x", LT_PROVIDER_IMAP, PMID,
                          "s3://" BUCKET "/tenant/tenantA/account/acct/provider/imap/message/"
                          "INBOX%3BUIDVALIDITY%3D7%3BUID%3D3/message.eml"),
              LT_ERR_INVALID);
    /* ... and its escaped spelling in the key is not decoded into a match */
    CHECK_INT(raw_verdict("tenantA", "acct", LT_PROVIDER_IMAP, "m",
                          "s3://" BUCKET "/tenant/tenant%41/account/acct/provider/imap/message/m/"
                          "message.eml"),
              LT_ERR_INVALID);
    /* "%2E%2E" inside the own folder is a literal name there (S3 keys are
     * sent %-encoded once), not a way out */
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m",
                          "s3://" BUCKET "/tenant/tenantB/account/acct/provider/imap/message/m/"
                          "%2E%2E/%2E%2E/message.eml"),
              LT_OK);

    /* ".." segments climbing out of the own folder, or staying in it */
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m",
                          "s3://" BUCKET "/tenant/tenantB/account/acct/provider/imap/message/m/"
                          "../../../../../../tenantA/account/acct/provider/imap/message/m/"
                          "message.eml"),
              LT_ERR_INVALID);
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m",
                          "s3://" BUCKET "/tenant/tenantB/account/acct/provider/imap/message/m/"
                          "./message.eml"),
              LT_ERR_INVALID);
    /* no key, the folder itself, a key beside it */
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m", "s3://" BUCKET "/"),
              LT_ERR_INVALID);
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m",
                          "s3://" BUCKET "/tenant/tenantB/account/acct/provider/imap/message/m"),
              LT_ERR_INVALID);
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m",
                          "s3://" BUCKET "/tenant/tenantB/account/acct/provider/imap/message/"
                          "m.eml"),
              LT_ERR_INVALID);
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m", "not a uri"), LT_ERR_INVALID);
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m",
                          "s3://" BUCKET "//tenant/tenantB/account/acct/provider/imap/message/m/"
                          "message.eml"),
              LT_ERR_INVALID);

    /* its own key in another bucket: passes here (the fetch refuses it and
     * stores a parse_error row); a foreign key there does not */
    raw_uri("other-bucket", "tenantB", "acct", "imap", "m", uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m", uri), LT_OK);
    raw_uri("other-bucket", "tenantA", "acct", "imap", "m", uri, sizeof(uri));
    CHECK_INT(raw_verdict("tenantB", "acct", LT_PROVIDER_IMAP, "m", uri), LT_ERR_INVALID);

    /* ids over the component cap are truncated with a hash, the same way
     * on both sides; a neighbour long id is not under it */
    char longid[400], longid2[400];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    memcpy(longid2, longid, sizeof(longid));
    longid2[300] = 'y';
    raw_uri(BUCKET, longid, "acct", "gmail", "18c2f0a1b2c3d4e5", uri, sizeof(uri));
    CHECK_INT(raw_verdict(longid, "acct", LT_PROVIDER_GMAIL, "18c2f0a1b2c3d4e5", uri), LT_OK);
    CHECK_INT(raw_verdict(longid2, "acct", LT_PROVIDER_GMAIL, "18c2f0a1b2c3d4e5", uri),
              LT_ERR_INVALID);
}

static void test_attachments(void)
{
    char raw[LT_OBJKEY_URI_MAX + 1], a1[LT_OBJKEY_URI_MAX + 1], a2[LT_OBJKEY_URI_MAX + 1];
    char reason[1024];
    raw_uri(BUCKET, "tenantB", "acct", "imap", "m", raw, sizeof(raw));
    att_uri(BUCKET, "tenantB", "acct", "imap", "m", "2", "report.pdf", a1, sizeof(a1));
    att_uri(BUCKET, "tenantB", "acct", "imap", "m", "3", NULL, a2, sizeof(a2));

    /* its own attachments: fine */
    lt_mail_event_t *ev = event("tenantB", "acct", LT_PROVIDER_IMAP, "m", raw);
    lt_mail_event_add_attachment(ev, "2", "report.pdf", "application/pdf", 10, NULL, a1);
    lt_mail_event_add_attachment(ev, "3", NULL, "application/octet-stream", 10, NULL, a2);
    CHECK_INT(lt_parser_event_check_keys(ev, BUCKET, reason, sizeof(reason)), LT_OK);
    lt_mail_event_destroy(ev);

    /* the second attachment is another tenant's */
    const char *bad[] = {
        NULL, /* filled below: tenantA's attachment */
        "s3://other-bucket/tenant/tenantB/account/acct/provider/imap/message/m/attachments/3/x",
        "s3://" BUCKET "/tenant/tenantB/account/acct/provider/imap/message/m/../m2/x",
        "s3://" BUCKET "/tenant/tenantB/account/acct/provider/imap/message/m2/attachments/3/x",
        "tenant/tenantB/account/acct/provider/imap/message/m/attachments/3/x",
        "",
    };
    char foreign[LT_OBJKEY_URI_MAX + 1];
    att_uri(BUCKET, "tenantA", "acct", "imap", "m", "3", "secret.pdf", foreign, sizeof(foreign));
    bad[0] = foreign;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ev = event("tenantB", "acct", LT_PROVIDER_IMAP, "m", raw);
        lt_mail_event_add_attachment(ev, "2", "report.pdf", "application/pdf", 10, NULL, a1);
        lt_mail_event_add_attachment(ev, "3", "x", "application/pdf", 10, NULL, bad[i]);
        reason[0] = 0;
        CHECK_MSG(lt_parser_event_check_keys(ev, BUCKET, reason, sizeof(reason)) == LT_ERR_INVALID,
                  "attachment URI %s accepted", bad[i]);
        CHECK_MSG(strstr(reason, "attachment 3") != NULL, "reason: %s", reason);
        lt_mail_event_destroy(ev);
    }
}

int main(void)
{
    test_raw();
    test_attachments();
    return lt_test_done("test_parser_keys");
}
