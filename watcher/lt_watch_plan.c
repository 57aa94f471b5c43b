#include "lt_watch_plan.h"

#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "lt_buf.h"

void lt_watch_gate_note(lt_watch_gate_t *g, const char *folder, int64_t now_ms, int debounce_ms)
{
    g->notes++;
    if (!g->pending) {
        g->pending = 1;
        g->due_ms = now_ms + (debounce_ms > 0 ? debounce_ms : 0);
        g->scope = folder ? lt_xstrdup(folder) : NULL;
        return;
    }
    /* the window stays where the first notification opened it */
    if (g->scope && (!folder || strcmp(g->scope, folder) != 0)) {
        free(g->scope);
        g->scope = NULL; /* several folders: all configured scopes */
    }
}

int lt_watch_gate_due(const lt_watch_gate_t *g, int64_t now_ms)
{
    return g->pending && now_ms >= g->due_ms;
}

int lt_watch_gate_ready(const lt_watch_gate_t *g, int64_t now_ms)
{
    return lt_watch_gate_due(g, now_ms) && !g->in_flight;
}

const char *lt_watch_gate_scope(const lt_watch_gate_t *g)
{
    return g->scope;
}

void lt_watch_gate_sent(lt_watch_gate_t *g)
{
    g->pending = 0;
    free(g->scope);
    g->scope = NULL;
    g->in_flight = 1;
}

void lt_watch_gate_failed(lt_watch_gate_t *g, const char *scope, int64_t now_ms)
{
    g->in_flight = 0;
    if (g->pending) { /* merged with what arrived since */
        if (g->scope && (!scope || strcmp(g->scope, scope) != 0)) {
            free(g->scope);
            g->scope = NULL;
        }
        return;
    }
    g->pending = 1;
    g->due_ms = now_ms;
    g->scope = scope ? lt_xstrdup(scope) : NULL;
}

void lt_watch_gate_clear(lt_watch_gate_t *g)
{
    free(g->scope);
    memset(g, 0, sizeof(*g));
}

int64_t lt_watch_backoff_ms(int attempt, int64_t max_ms, uint32_t rnd)
{
    int64_t ms = 1000;
    for (int i = 0; i < attempt && ms < max_ms; i++)
        ms *= 2;
    if (ms > max_ms)
        ms = max_ms;
    int64_t half = ms / 2;
    return half + (half > 0 ? (int64_t)(rnd % (uint64_t)(half + 1)) : 0);
}

lt_err_t lt_watch_partition(const char *name, const void *key, size_t keylen, int32_t n,
                            int32_t *out)
{
    int32_t (*fn)(const rd_kafka_topic_t *, const void *, size_t, int32_t, void *, void *);
    if (!key || keylen == 0 || n <= 0)
        return LT_ERR_INVALID;
    if (!name || !*name || !strcmp(name, "consistent_random") || !strcmp(name, "consistent"))
        fn = rd_kafka_msg_partitioner_consistent; /* keyed: CRC32 of the key */
    else if (!strcmp(name, "murmur2_random") || !strcmp(name, "murmur2"))
        fn = rd_kafka_msg_partitioner_murmur2; /* Java's default */
    else if (!strcmp(name, "fnv1a_random") || !strcmp(name, "fnv1a"))
        fn = rd_kafka_msg_partitioner_fnv1a;
    else
        return LT_ERR_INVALID;
    *out = fn(NULL, key, keylen, n, NULL, NULL);
    return LT_OK;
}
