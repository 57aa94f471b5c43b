#include "lt_offsets.h"

#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"

typedef struct {
    int32_t partition;
    int64_t *inflight; /* unordered set, small */
    int n, alloc;
    int64_t high_done; /* highest finished offset, -1 none */
    int64_t committed; /* last offset committed, -1 none */
} part_t;

struct lt_offsets_s {
    part_t *parts;
    int n, alloc;
};

lt_offsets_t *lt_offsets_new(void)
{
    return lt_xcalloc(1, sizeof(lt_offsets_t));
}

void lt_offsets_destroy(lt_offsets_t *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++)
        free(o->parts[i].inflight);
    free(o->parts);
    free(o);
}

static part_t *find(const lt_offsets_t *o, int32_t partition)
{
    for (int i = 0; i < o->n; i++)
        if (o->parts[i].partition == partition)
            return &o->parts[i];
    return NULL;
}

static part_t *get(lt_offsets_t *o, int32_t partition)
{
    part_t *p = find(o, partition);
    if (p)
        return p;
    if (o->n == o->alloc) {
        o->alloc = o->alloc ? o->alloc * 2 : 8;
        o->parts = lt_xrealloc(o->parts, (size_t)o->alloc * sizeof(part_t));
    }
    p = &o->parts[o->n++];
    memset(p, 0, sizeof(*p));
    p->partition = partition;
    p->high_done = -1;
    p->committed = -1;
    return p;
}

void lt_offsets_start(lt_offsets_t *o, int32_t partition, int64_t offset)
{
    part_t *p = get(o, partition);
    if (p->n == p->alloc) {
        p->alloc = p->alloc ? p->alloc * 2 : 8;
        p->inflight = lt_xrealloc(p->inflight, (size_t)p->alloc * sizeof(int64_t));
    }
    p->inflight[p->n++] = offset;
}

void lt_offsets_done(lt_offsets_t *o, int32_t partition, int64_t offset)
{
    part_t *p = find(o, partition);
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        if (p->inflight[i] == offset) {
            p->inflight[i] = p->inflight[--p->n];
            break;
        }
    }
    if (offset > p->high_done)
        p->high_done = offset;
}

void lt_offsets_drop(lt_offsets_t *o, int32_t partition)
{
    for (int i = 0; i < o->n; i++) {
        if (o->parts[i].partition == partition) {
            free(o->parts[i].inflight);
            o->parts[i] = o->parts[--o->n];
            return;
        }
    }
}

int64_t lt_offsets_committable(const lt_offsets_t *o, int32_t partition)
{
    const part_t *p = find(o, partition);
    if (!p)
        return -1;
    if (p->n > 0) {
        int64_t low = p->inflight[0];
        for (int i = 1; i < p->n; i++)
            if (p->inflight[i] < low)
                low = p->inflight[i];
        return low;
    }
    return p->high_done >= 0 ? p->high_done + 1 : -1;
}

int lt_offsets_in_flight(const lt_offsets_t *o, int32_t partition)
{
    const part_t *p = find(o, partition);
    return p ? p->n : 0;
}

int64_t lt_offsets_to_commit(const lt_offsets_t *o, int32_t partition)
{
    const part_t *p = find(o, partition);
    int64_t off = lt_offsets_committable(o, partition);
    return p && off > p->committed ? off : -1;
}

void lt_offsets_committed(lt_offsets_t *o, int32_t partition, int64_t offset)
{
    part_t *p = find(o, partition);
    if (p && offset > p->committed)
        p->committed = offset;
}
