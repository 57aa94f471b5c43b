#include "lt_ready_probe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_db.h"

struct lt_ready_probe {
    char *dsn, *password, *app, *group;
    atomic_int assigned;
    pthread_mutex_t mu;
    lt_db_t *db;
    int64_t at;
    int ok;
    char err[280]; /* "Postgres: " + a 256-byte error */
};

lt_ready_probe_t *lt_ready_probe_new(const char *dsn, const char *password,
                                     const char *application_name, const char *group_id)
{
    lt_ready_probe_t *p = lt_xcalloc(1, sizeof(*p));
    p->dsn = lt_xstrdup(dsn ? dsn : "");
    p->password = password ? lt_xstrdup(password) : NULL;
    p->app = lt_xstrdup(application_name ? application_name : "lattice-readiness");
    p->group = group_id ? lt_xstrdup(group_id) : NULL;
    atomic_init(&p->assigned, group_id ? 0 : 1);
    pthread_mutex_init(&p->mu, NULL);
    return p;
}

void lt_ready_probe_destroy(lt_ready_probe_t *p)
{
    if (!p)
        return;
    lt_db_destroy(p->db);
    pthread_mutex_destroy(&p->mu);
    if (p->password) {
        memset(p->password, 0, strlen(p->password));
        free(p->password);
    }
    free(p->dsn);
    free(p->app);
    free(p->group);
    free(p);
}

void lt_ready_probe_assigned(lt_ready_probe_t *p)
{
    atomic_store(&p->assigned, 1);
}

int lt_ready_probe_check(lt_ready_probe_t *p, char *why, size_t why_size)
{
    if (!p) {
        snprintf(why, why_size, "starting");
        return 0;
    }
    if (!atomic_load(&p->assigned)) {
        snprintf(why, why_size, "no partition assignment yet (joining consumer group %s)",
                 p->group);
        return 0;
    }
    pthread_mutex_lock(&p->mu);
    int64_t now = lt_now_ms();
    if (!p->at || now - p->at >= LT_READY_PROBE_EVERY_MS) {
        char e[256] = "";
        if (p->db && !lt_db_ok(p->db)) {
            lt_db_destroy(p->db);
            p->db = NULL;
        }
        if (!p->db) {
            const char *const kw[] = {"connect_timeout", "application_name", NULL};
            const char *const val[] = {"3", p->app, NULL};
            p->db = lt_db_connect_params(p->dsn, p->password, kw, val, e, sizeof(e));
        }
        p->ok =
            p->db &&
            !lt_db_exec(
                p->db, &(lt_db_query_t){.what = "readiness probe", .sql = "SELECT 1", .nparams = 0},
                NULL, e, sizeof(e));
        snprintf(p->err, sizeof(p->err), "Postgres: %s", e);
        p->at = now;
    }
    int ok = p->ok;
    if (!ok)
        snprintf(why, why_size, "%s", p->err);
    pthread_mutex_unlock(&p->mu);
    return ok;
}
