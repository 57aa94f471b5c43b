/* Fuzz the modified UTF-7 codec: whatever decodes re-encodes to the same
 * bytes, and whatever encodes decodes back (the codec is canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_imap_utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    lt_buf_t *a = lt_buf_new(16 * size + 16), *b = lt_buf_new(16 * size + 16);
    if (lt_imap_utf7_decode((const char *)data, size, a, err, sizeof(err)) == LT_OK) {
        if (lt_imap_utf7_encode(lt_buf_str(a), lt_buf_len(a), b, err, sizeof(err)) != LT_OK)
            abort();
        if (lt_buf_len(b) != size || memcmp(lt_buf_data(b), data, size))
            abort();
    }
    lt_buf_reset(a);
    lt_buf_reset(b);
    if (lt_imap_utf7_encode((const char *)data, size, a, err, sizeof(err)) == LT_OK) {
        if (lt_imap_utf7_decode(lt_buf_str(a), lt_buf_len(a), b, err, sizeof(err)) != LT_OK)
            abort();
        if (lt_buf_len(b) != size || memcmp(lt_buf_data(b), data, size))
            abort();
    }
    lt_buf_destroy(a);
    lt_buf_destroy(b);
    return 0;
}
