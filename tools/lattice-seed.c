/* lattice-seed: create or update the tenant "personal" with its two
 * accounts, personal-gmail (gmail) and workmail-imap (imap), from the
 * LATTICE_SEED_* settings (defaults: the local stack). config_json holds
 * references to secrets in the tenant's namespace (variables
 * LTS_<tenant>__<NAME>, or file names under the worker's
 * LATTICE_SECRETS_DIR/<tenant>/), never a secret: this program never reads
 * one. Idempotent (upsert). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_accounts.h"
#include "lt_buf.h"
#include "lt_config.h"
#include "lt_db.h"
#include "lt_log.h"
#include "lt_secret.h"

static void usage(FILE *out)
{
    fputs("usage: lattice-seed [--dry-run] [--help]\n"
          "  Create or update (idempotent upsert) the accounts of tenant LATTICE_SEED_TENANT\n"
          "  (default personal) in mail_accounts:\n"
          "    LATTICE_SEED_GMAIL_ACCOUNT (personal-gmail)  provider gmail\n"
          "    LATTICE_SEED_IMAP_ACCOUNT  (workmail-imap)   provider imap\n"
          "  Both are enabled. config_json names where the worker finds each secret (an\n"
          "  environment variable LTS_<tenant>__<NAME>: *_ENV settings give NAME; or a file\n"
          "  under the worker's LATTICE_SECRETS_DIR/<tenant>/: *_PATH settings, which win);\n"
          "  no secret is read or stored. Defaults point at the local stack (Dovecot on\n"
          "  127.0.0.1:19993 as alice@example.test; Gmail through the emulator, whose URLs\n"
          "  are worker settings: LATTICE_GMAIL_API_URL, LATTICE_GMAIL_TOKEN_URL).\n"
          "  --dry-run   print the rows as JSON, write nothing\n"
          "  --help      this text and the settings\n"
          "exit status: 0 ok, 1 failed, 2 usage or configuration\n\n",
          out);
}

/* key_file = the name under the worker's LATTICE_SECRETS_DIR/<tenant>/ when
 * a path setting is given, else key_env = LTS_<tenant>__<NAME> (lt_secret.h:
 * the only names the worker resolves for this tenant). */
static int add_secret_ref(json_object *o, const char *tenant, const char *key,
                          const char *env_setting, const char *env, const char *path_setting,
                          const char *path, char *err, size_t n)
{
    char k[64], var[256];
    if (path) {
        if (!lt_secret_file_name_ok(path)) {
            snprintf(err, n,
                     "%s: a name relative to the worker's LATTICE_SECRETS_DIR/<tenant>/ is "
                     "required (components of A-Z a-z 0-9 . _ -, no '..', not absolute)",
                     path_setting);
            return -1;
        }
        snprintf(k, sizeof(k), "%s_file", key);
        json_object_object_add(o, k, json_object_new_string(path));
        return 0;
    }
    if (!env || !lt_secret_env_name(tenant, env, var, sizeof(var))) {
        snprintf(err, n,
                 "%s: a NAME of A-Z a-z 0-9 _ is required (the worker's variable is "
                 "LTS_<tenant>__NAME)",
                 env_setting);
        return -1;
    }
    snprintf(k, sizeof(k), "%s_env", key);
    json_object_object_add(o, k, json_object_new_string(var));
    return 0;
}

/* A comma-separated list as a JSON array of trimmed, non-empty strings. */
static json_object *csv_array(const char *csv, const char *setting, char *err, size_t n)
{
    json_object *a = json_object_new_array();
    char *copy = lt_xstrdup(csv), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        size_t len = strlen(t);
        while (len && isspace((unsigned char)t[len - 1]))
            t[--len] = 0;
        if (len)
            json_object_array_add(a, json_object_new_string(t));
    }
    free(copy);
    if (json_object_array_length(a) == 0) {
        snprintf(err, n, "%s: at least one name is required", setting);
        json_object_put(a);
        return NULL;
    }
    return a;
}

static json_object *imap_config(const lt_settings_t *set, const char *tenant, char *err, size_t n)
{
    json_object *o = json_object_new_object();
    json_object *folders = csv_array(set->seed.imap_folders, "LATTICE_SEED_IMAP_FOLDERS", err, n);
    if (!folders)
        goto fail;
    json_object_object_add(o, "host", json_object_new_string(set->seed.imap_host));
    json_object_object_add(o, "port", json_object_new_int(set->seed.imap_port));
    json_object_object_add(o, "username", json_object_new_string(set->seed.imap_username));
    if (add_secret_ref(o, tenant, "password", "LATTICE_SEED_IMAP_PASSWORD_ENV",
                       set->seed.imap_password_env, "LATTICE_SEED_IMAP_PASSWORD_PATH",
                       set->seed.imap_password_path, err, n)) {
        json_object_put(folders);
        goto fail;
    }
    json_object_object_add(o, "folders", folders);
    return o;
fail:
    json_object_put(o);
    return NULL;
}

static json_object *gmail_config(const lt_settings_t *set, const char *tenant, char *err, size_t n)
{
    json_object *o = json_object_new_object();
    json_object *labels =
        csv_array(set->seed.gmail_label_ids, "LATTICE_SEED_GMAIL_LABEL_IDS", err, n);
    if (!labels)
        goto fail;
    json_object_object_add(o, "user", json_object_new_string(set->seed.gmail_user));
    json_object_object_add(o, "label_ids", labels);
    json_object_object_add(o, "client_id", json_object_new_string(set->seed.gmail_client_id));
    if (add_secret_ref(o, tenant, "client_secret", "LATTICE_SEED_GMAIL_CLIENT_SECRET_ENV",
                       set->seed.gmail_client_secret_env, "LATTICE_SEED_GMAIL_CLIENT_SECRET_PATH",
                       set->seed.gmail_client_secret_path, err, n) ||
        add_secret_ref(o, tenant, "refresh_token", "LATTICE_SEED_GMAIL_REFRESH_TOKEN_ENV",
                       set->seed.gmail_refresh_token_env, "LATTICE_SEED_GMAIL_REFRESH_TOKEN_PATH",
                       set->seed.gmail_refresh_token_path, err, n))
        goto fail;
    return o;
fail:
    json_object_put(o);
    return NULL;
}

int main(int argc, char **argv)
{
    int dry_run = 0, rc = 2;
    char err[1024];
    lt_config_t *cfg = NULL;
    lt_db_t *db = NULL;
    json_object *rows[2] = {NULL, NULL};

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            lt_config_print_help(stdout, LT_PROG_TOOLS);
            return 0;
        } else if (!strcmp(argv[i], "--dry-run")) {
            dry_run = 1;
        } else {
            fprintf(stderr, "lattice-seed: unknown argument %s\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    cfg = lt_config_load(LT_PROG_TOOLS, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "lattice-seed: %s\n", err);
        return 2;
    }
    const lt_settings_t *set = lt_config_settings(cfg);
    if (lt_log_setup("lattice-seed", set->log.level, set->log.format, err, sizeof(err))) {
        fprintf(stderr, "lattice-seed: %s\n", err);
        goto out;
    }
    const char *tenant = set->seed.tenant;
    const char *ids[2] = {set->seed.gmail_account, set->seed.imap_account};
    const char *providers[2] = {"gmail", "imap"};
    if (!lt_account_id_valid(tenant) || !lt_account_id_valid(ids[0]) ||
        !lt_account_id_valid(ids[1])) {
        fprintf(stderr, "lattice-seed: LATTICE_SEED_TENANT and the account ids must be 1-128 of "
                        "A-Z a-z 0-9 . _ : -\n");
        goto out;
    }
    if (!(rows[0] = gmail_config(set, tenant, err, sizeof(err))) ||
        !(rows[1] = imap_config(set, tenant, err, sizeof(err)))) {
        fprintf(stderr, "lattice-seed: %s\n", err);
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        if (lt_account_config_check(rows[i], err, sizeof(err))) { /* a bug if it fires */
            fprintf(stderr, "lattice-seed: %s: %s\n", ids[i], err);
            goto out;
        }
    }
    if (dry_run) {
        for (int i = 0; i < 2; i++)
            printf(
                "{\"tenant_id\":\"%s\",\"account_id\":\"%s\",\"provider\":\"%s\",\"enabled\":true,"
                "\"config_json\":%s}\n",
                tenant, ids[i], providers[i],
                json_object_to_json_string_ext(rows[i], JSON_C_TO_STRING_PLAIN));
        rc = 0;
        goto out;
    }
    rc = 1;
    db = lt_db_connect(set->pg.dsn, set->pg.password, err, sizeof(err));
    if (!db) {
        lt_error(NULL, "%s", err);
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        lt_log_ctx_t log = {.tenant = tenant, .account = ids[i]};
        if (lt_account_upsert(db,
                              &(lt_account_row_t){.tenant = tenant,
                                                  .account_id = ids[i],
                                                  .provider = providers[i],
                                                  .enabled = 1,
                                                  .config_json = json_object_to_json_string_ext(
                                                      rows[i], JSON_C_TO_STRING_PLAIN)},
                              err, sizeof(err))) {
            lt_error(&log, "not seeded: %s", err);
            goto out;
        }
        lt_info(&log, "seeded (%s, enabled)", providers[i]);
    }
    rc = 0;
out:
    json_object_put(rows[0]);
    json_object_put(rows[1]);
    lt_db_destroy(db);
    lt_config_destroy(cfg);
    return rc;
}
