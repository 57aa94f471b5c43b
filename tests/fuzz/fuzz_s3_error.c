/* Fuzz lt_s3_classify, lt_s3's reading of S3 XML error documents: the
 * first two bytes choose the HTTP status and the errstr size, the rest is
 * the response body as received (not NUL-terminated). Invariants
 * (lt_s3.h):
 *  - never a crash, leak or sanitizer report, whatever the errstr size;
 *  - the result is LT_OK for 2xx only, else TEMPORARY, TOO_BIG, NOT_FOUND or
 *    FINAL: TEMPORARY for 5xx, 408 and 429, NOT_FOUND only for 404, FINAL for
 *    403 unless the Code says SlowDown & co.;
 *  - errstr is NUL-terminated within its size, starts "HTTP <status>", and
 *    holds no control character and no byte outside ASCII (it goes to logs
 *    and to the command log). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_s3.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long STATUSES[] = {200, 204, 206, 301, 304, 307, 400, 403, 404, 405,
                                408, 409, 411, 412, 413, 416, 429, 500, 501, 503};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    long status = data[0] < 200 ? STATUSES[data[0] % (sizeof(STATUSES) / sizeof(STATUSES[0]))]
                                : 100 + (long)(data[0] - 200) * 10; /* 100..650 */
    size_t es = data[1] < 128 ? 512 : (size_t)(data[1] - 127);      /* 1..128 or 512 */
    size_t blen = size - 2;
    char *body = blen ? malloc(blen) : NULL; /* exact size: ASan sees any read past it */
    if (blen)
        memcpy(body, data + 2, blen);
    char *err = malloc(es);
    memset(err, 'X', es);

    lt_err_t e = lt_s3_classify(status, body, blen, err, es);

    ASSERT(memchr(err, 0, es) != NULL);
    size_t el = strlen(err);
    for (size_t i = 0; i < el; i++)
        ASSERT((unsigned char)err[i] >= 0x20 && (unsigned char)err[i] < 0x7f);
    char head[32];
    int hl = snprintf(head, sizeof(head), "HTTP %ld", status);
    ASSERT(!strncmp(err, head, el < (size_t)hl ? el : (size_t)hl));
    if (status >= 200 && status <= 299) {
        ASSERT(e == LT_OK);
    } else {
        ASSERT(e == LT_ERR_TEMPORARY || e == LT_ERR_TOO_BIG || e == LT_ERR_NOT_FOUND ||
               e == LT_ERR_FINAL);
        if (status >= 500 || status == 408 || status == 429)
            ASSERT(e == LT_ERR_TEMPORARY);
        if (e == LT_ERR_NOT_FOUND)
            ASSERT(status == 404);
    }
    /* The same body with a NUL after it gives the same verdict. */
    char *z = malloc(blen + 1);
    if (blen)
        memcpy(z, body, blen);
    z[blen] = 0;
    char err2[512];
    ASSERT(lt_s3_classify(status, z, blen, err2, sizeof(err2)) == e);
    free(z);
    free(err);
    free(body);
    return 0;
}
