/* Fuzz the incremental IMAP response parser. Input: byte 0 picks the caps
 * (small ones reach the over-cap paths), byte 1 seeds the chunk sizes; the
 * rest is the server's byte stream. The stream is parsed twice -- whole and
 * in chunks -- and both must give the same events and the same outcome. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_imap_parser.h"

typedef struct {
    uint64_t h;
    int in_data, in_search;
} digest_t;

static void mix(digest_t *d, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        d->h = (d->h ^ b[i]) * 1099511628211ull;
}

static void mix_str(digest_t *d, const char *s)
{
    if (s)
        mix(d, s, strlen(s) + 1);
    else
        mix(d, "\xff", 1);
}

static lt_err_t on_event(void *opaque, const lt_imap_event_t *ev)
{
    digest_t *d = opaque;
    /* Merge what chunking may split: body data and partial SEARCH events. */
    if (ev->type == LT_IMAP_EV_BODY_DATA) {
        if (ev->len == 0)
            abort();
        if (!d->in_data)
            mix(d, "D", 1);
        d->in_data = 1;
        mix(d, ev->data, ev->len);
        return LT_OK;
    }
    d->in_data = 0;
    if (ev->type == LT_IMAP_EV_SEARCH) {
        if (!d->in_search)
            mix(d, "S", 1);
        d->in_search = ev->partial;
        mix(d, ev->nums, ev->nnums * sizeof(uint32_t));
        return LT_OK;
    }
    mix(d, &ev->type, sizeof(ev->type));
    mix_str(d, ev->tag);
    mix_str(d, ev->code);
    mix_str(d, ev->code_arg);
    mix_str(d, ev->text);
    mix_str(d, ev->name);
    mix_str(d, ev->section);
    mix(d, &ev->num, sizeof(ev->num));
    for (size_t i = 0; i < ev->nstrs; i++)
        mix_str(d, ev->strs[i]);
    if (ev->mailbox)
        mix(d, ev->mailbox, ev->mailbox_len);
    mix(d, &ev->fetch.has, sizeof(ev->fetch.has));
    mix(d, &ev->fetch.uid, sizeof(ev->fetch.uid));
    mix(d, &ev->literal_len, sizeof(ev->literal_len));
    mix(d, &ev->fetch.modseq, sizeof(ev->fetch.modseq));
    mix(d, &ev->modseq, sizeof(ev->modseq));
    mix(d, &ev->earlier, sizeof(ev->earlier));
    if (ev->nranges)
        mix(d, ev->ranges, ev->nranges * sizeof(*ev->ranges));
    return LT_OK;
}

static lt_err_t run(const uint8_t *data, size_t size, const lt_imap_parser_opts_t *o, unsigned seed,
                    int chunked, uint64_t *h, int *idle)
{
    digest_t d = {.h = 1469598103934665603ull};
    lt_imap_parser_t *p = lt_imap_parser_new(o, on_event, &d);
    char err[256];
    lt_err_t e = LT_OK;
    size_t off = 0;
    while (off < size && !e) {
        size_t n = size - off;
        if (chunked) {
            seed = seed * 1103515245u + 12345u;
            size_t c = 1 + ((seed >> 16) % 17);
            if (c < n)
                n = c;
        }
        /* A private copy, so that reads past the chunk are caught. */
        uint8_t *buf = malloc(n);
        memcpy(buf, data + off, n);
        e = lt_imap_parser_feed(p, buf, n, err, sizeof(err));
        free(buf);
        off += n;
    }
    if (e && !err[0])
        abort(); /* every error has a reason */
    d.in_data = 0;
    mix(&d, &e, sizeof(e));
    *h = d.h;
    *idle = lt_imap_parser_idle(p);
    lt_imap_parser_destroy(p);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    lt_imap_parser_opts_t o = {0};
    if (data[0] & 1)
        o.max_line = 64 + (data[0] >> 1);
    if (data[0] & 2)
        o.max_message = data[0] >> 2;
    unsigned seed = data[1];
    uint64_t h1, h2;
    int idle1, idle2;
    lt_err_t e1 = run(data + 2, size - 2, &o, seed, 0, &h1, &idle1);
    lt_err_t e2 = run(data + 2, size - 2, &o, seed, 1, &h2, &idle2);
    /* A long SEARCH line is flushed at chunk-dependent points, so an error in
     * the unfinished last response may show in one run only, and the events
     * before an error may differ: compare complete, error-free runs fully. */
    if (e1 && e2 && e1 != e2)
        abort();
    if ((e1 && !e2 && idle2) || (e2 && !e1 && idle1))
        abort();
    if (!e1 && !e2 && (idle1 != idle2 || (idle1 && h1 != h2)))
        abort();
    return 0;
}
