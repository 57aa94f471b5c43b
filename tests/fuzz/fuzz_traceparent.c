/* libFuzzer target: lt_trace_parse on arbitrary bytes. A value that parses
 * must format back to a version-00 string that parses to the same ids, and
 * its child must keep the trace id. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    lt_trace_t t, again, child;
    if (lt_trace_parse((const char *)data, size, &t, err, sizeof(err)) != LT_OK)
        return 0;
    char text[LT_TRACEPARENT_SIZE];
    lt_trace_format(&t, text);
    if (lt_trace_parse(text, strlen(text), &again, err, sizeof(err)) != LT_OK)
        abort();
    if (memcmp(again.trace_id, t.trace_id, sizeof(t.trace_id)) ||
        memcmp(again.span_id, t.span_id, sizeof(t.span_id)) || again.flags != t.flags)
        abort();
    if (t.version == 0 && (size != LT_TRACEPARENT_LEN || memcmp(text, data, size)))
        abort();
    if (lt_trace_child(&t, &child, err, sizeof(err)) != LT_OK || !lt_trace_same_trace(&t, &child))
        abort();
    return 0;
}
