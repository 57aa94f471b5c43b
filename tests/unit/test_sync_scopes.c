/* lt_sync scope results and expunged messages: the command's outcome from
 * its scopes (ok / missing / failed; a temporary failure wins, so the command
 * is retried), the summary names each failed scope, per-scope message counts;
 * expunged ids kept apart from skipped ones and taken back by an abort. No
 * server: lt_sync is used without a database, S3 or Kafka. */
#include <string.h>

#include "lt_command.h"
#include "lt_sync.h"
#include "lt_test.h"

static lt_sync_t *new_sync(lt_command_t **cmd)
{
    const char *json = "{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c-1\","
                       "\"tenant_id\":\"t\",\"account_id\":\"a\",\"provider\":\"imap\","
                       "\"kind\":\"incremental\",\"requested_at\":\"2026-11-25T12:00:00Z\","
                       "\"requested_by\":\"test\"}";
    char err[256];
    CHECK_INT(lt_command_parse(json, strlen(json), cmd, err, sizeof(err)), LT_OK);
    lt_sync_env_t env;
    memset(&env, 0, sizeof(env));
    return lt_sync_new(&env, NULL, *cmd, NULL, NULL);
}

static void test_outcomes(void)
{
    lt_command_t *cmd = NULL;
    lt_sync_t *s = new_sync(&cmd);
    char err[1024] = "";
    size_t n = 99;
    CHECK(lt_sync_scopes(s, &n) == NULL && n == 0);
    CHECK_INT(lt_sync_scopes_result(s, err, sizeof(err)), LT_OK); /* nothing ran: nothing failed */

    lt_sync_set_scope(s, "Archive");
    lt_sync_scope_done(s, "Archive", LT_SYNC_SCOPE_MISSING, LT_ERR_FINAL,
                       "folder \"Archive\" does not exist");
    lt_sync_set_scope(s, "INBOX");
    lt_sync_scope_done(s, "INBOX", LT_SYNC_SCOPE_OK, LT_OK, "ignored when ok");
    CHECK_INT(lt_sync_scopes_ok(s), 1);
    CHECK_INT(lt_sync_scopes_result(s, err, sizeof(err)), LT_ERR_FINAL);
    CHECK_MSG(strstr(err, "1 of 2 scopes not synced") && strstr(err, "Archive missing (final"),
              "%s", err);
    CHECK_MSG(!strstr(err, "INBOX"), "%s", err);
    const lt_sync_scope_t *sc = lt_sync_scopes(s, &n);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(sc[0].scope, "Archive");
        CHECK_STR(lt_sync_scope_result_name(sc[0].result), "missing");
        CHECK_INT(sc[0].err, LT_ERR_FINAL);
        CHECK_STR(sc[1].scope, "INBOX");
        CHECK_STR(lt_sync_scope_result_name(sc[1].result), "ok");
        CHECK_INT(sc[1].err, LT_OK);
        CHECK(sc[1].error == NULL);
        CHECK_INT(sc[1].messages, 0);
    }

    /* a temporary failure later on wins: the command is retried */
    lt_sync_set_scope(s, "Sent");
    lt_sync_scope_done(s, "Sent", LT_SYNC_SCOPE_FAILED, LT_ERR_TEMPORARY, "connection reset");
    CHECK_INT(lt_sync_scopes_result(s, err, sizeof(err)), LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "2 of 3 scopes") &&
                  strstr(err, "Sent failed (temporary: connection reset)"),
              "%s", err);
    lt_sync_destroy(s);
    lt_command_destroy(cmd);

    /* one scope: its own error, as before */
    s = new_sync(&cmd);
    lt_sync_set_scope(s, "Gone");
    lt_sync_scope_done(s, "Gone", LT_SYNC_SCOPE_MISSING, LT_ERR_FINAL,
                       "folder \"Gone\" does not exist");
    CHECK_INT(lt_sync_scopes_result(s, err, sizeof(err)), LT_ERR_FINAL);
    CHECK_STR(err, "folder \"Gone\" does not exist");
    CHECK_INT(lt_sync_scopes_ok(s), 0);
    lt_sync_destroy(s);
    lt_command_destroy(cmd);
}

static void test_expunged(void)
{
    lt_command_t *cmd = NULL;
    lt_sync_t *s = new_sync(&cmd);
    lt_sync_note_expunged(s, "INBOX;UIDVALIDITY=1;UID=2");
    lt_sync_note_skipped(s, "INBOX;UIDVALIDITY=1;UID=3");
    lt_sync_note_expunged(s, "INBOX;UIDVALIDITY=1;UID=4");
    CHECK_INT(lt_sync_expunged(s), 2);
    CHECK_STR(lt_sync_expunged_ids(s), "INBOX;UIDVALIDITY=1;UID=2,INBOX;UIDVALIDITY=1;UID=4");
    CHECK_INT(lt_sync_skipped(s), 1);
    CHECK_STR(lt_sync_skipped_ids(s), "INBOX;UIDVALIDITY=1;UID=3");
    CHECK_INT(lt_sync_progress_done(s), 3); /* handled, for the progress report */
    /* nothing committed yet: an aborted batch takes them back (it is redone) */
    lt_sync_abort(s);
    CHECK_INT(lt_sync_expunged(s), 0);
    CHECK_STR(lt_sync_expunged_ids(s), "");
    CHECK_INT(lt_sync_progress_done(s), 0);
    lt_sync_destroy(s);
    lt_command_destroy(cmd);
}

int main(void)
{
    test_outcomes();
    test_expunged();
    return lt_test_done("test_sync_scopes");
}
