/* W3C traceparent: the spec's examples, every rejection rule, new roots and
 * children. */
#include <string.h>

#include "lt_test.h"
#include "lt_trace.h"

static const char *k_spec = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

typedef struct {
    const char *in;
    const char *reason; /* substring of the error */
} bad_t;

static const bad_t k_bad[] = {
    {"", "expected 55 characters"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", "expected 55 characters"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", "exactly 55 characters"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ", "exactly 55 characters"},
    {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff is invalid"},
    {"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version is not"},
    {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero trace-id"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all-zero parent-id"},
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "trace-id is not"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", "parent-id is not"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", "trace-flags is not"},
    {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "separated by '-'"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", "separated by '-'"},
    {"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", "separated by '-'"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", NULL}, /* sentinel: valid */
    {"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what", "expected '-' after"},
    {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba90-b7-01", "parent-id is not"},
};

int main(void)
{
    char err[256];
    lt_trace_t t, c, c2;

    /* The spec's example. */
    CHECK_INT(lt_trace_parse(k_spec, strlen(k_spec), &t, err, sizeof(err)), LT_OK);
    char text[LT_TRACEPARENT_SIZE], id[LT_TRACE_ID_HEX_SIZE], span[LT_SPAN_ID_HEX_SIZE];
    lt_trace_format(&t, text);
    CHECK_STR(text, k_spec);
    lt_trace_id_hex(&t, id);
    CHECK_STR(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    lt_trace_span_id_hex(&t, span);
    CHECK_STR(span, "00f067aa0ba902b7");
    CHECK_INT(lt_trace_sampled(&t), 1);
    CHECK_INT(t.version, 0);

    const char *unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    CHECK_INT(lt_trace_parse(unsampled, strlen(unsampled), &t, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_trace_sampled(&t), 0);

    /* A future version with extra fields: parsed; its child is version 00. */
    const char *future =
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like";
    CHECK_INT(lt_trace_parse(future, strlen(future), &t, err, sizeof(err)), LT_OK);
    CHECK_INT(t.version, 0xcc);
    CHECK_INT(lt_trace_child(&t, &c, err, sizeof(err)), LT_OK);
    CHECK_INT(c.version, 0);
    lt_trace_format(&c, text);
    CHECK(!strncmp(text, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36));
    const char *future55 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    CHECK_INT(lt_trace_parse(future55, strlen(future55), &t, err, sizeof(err)), LT_OK);

    /* Every rejection, with its reason; the output is left untouched. */
    for (size_t i = 0; i < sizeof(k_bad) / sizeof(k_bad[0]); i++) {
        memset(&t, 0x5a, sizeof(t));
        err[0] = 0;
        lt_err_t r = lt_trace_parse(k_bad[i].in, strlen(k_bad[i].in), &t, err, sizeof(err));
        if (!k_bad[i].reason) {
            CHECK_MSG(r == LT_OK, "row %zu: %s", i, err);
            continue;
        }
        CHECK_MSG(r == LT_ERR_INVALID, "row %zu (%s) was accepted", i, k_bad[i].in);
        CHECK_MSG(strstr(err, k_bad[i].reason) != NULL, "row %zu: \"%s\" lacks \"%s\"", i, err,
                  k_bad[i].reason);
        CHECK_MSG(t.version == 0x5a && t.flags == 0x5a, "row %zu: output written", i);
    }
    /* Not NUL-terminated: only `len` bytes are read. */
    char raw[LT_TRACEPARENT_LEN];
    memcpy(raw, k_spec, sizeof(raw));
    CHECK_INT(lt_trace_parse(raw, sizeof(raw), &t, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_trace_parse(NULL, 0, &t, err, sizeof(err)), LT_ERR_INVALID);

    /* New roots are valid, sampled, and differ. */
    CHECK_INT(lt_trace_new(&t, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_trace_new(&c, err, sizeof(err)), LT_OK);
    CHECK(!lt_trace_same_trace(&t, &c));
    CHECK_INT(lt_trace_sampled(&t), 1);
    lt_trace_format(&t, text);
    CHECK_INT(strlen(text), LT_TRACEPARENT_LEN);
    CHECK_INT(lt_trace_parse(text, strlen(text), &c2, err, sizeof(err)), LT_OK);
    CHECK(!memcmp(&c2, &t, sizeof(t)));

    /* A child keeps the trace id and flags, gets a new span id. */
    CHECK_INT(lt_trace_parse(unsampled, strlen(unsampled), &t, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_trace_child(&t, &c, err, sizeof(err)), LT_OK);
    CHECK(lt_trace_same_trace(&t, &c));
    CHECK(memcmp(t.span_id, c.span_id, sizeof(t.span_id)) != 0);
    CHECK_INT(c.flags, 0);
    lt_trace_format(&c, text);
    CHECK(!strncmp(text, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36));
    CHECK(!strcmp(text + 52, "-00"));
    /* In place. */
    c2 = c;
    CHECK_INT(lt_trace_child(&c2, &c2, err, sizeof(err)), LT_OK);
    CHECK(lt_trace_same_trace(&c2, &c));
    CHECK(memcmp(c2.span_id, c.span_id, sizeof(c.span_id)) != 0);

    /* continue: propagate a valid one, start a new trace otherwise. */
    int prop = -1;
    CHECK_INT(lt_trace_continue(k_spec, &c, &prop, err, sizeof(err)), LT_OK);
    CHECK_INT(prop, 1);
    lt_trace_id_hex(&c, id);
    CHECK_STR(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    lt_trace_span_id_hex(&c, span);
    CHECK(strcmp(span, "00f067aa0ba902b7") != 0);
    CHECK_INT(lt_trace_continue("garbage", &c, &prop, err, sizeof(err)), LT_OK);
    CHECK_INT(prop, 0);
    lt_trace_id_hex(&c, id);
    CHECK(strcmp(id, "4bf92f3577b34da6a3ce929d0e0e4736") != 0);
    CHECK_INT(lt_trace_continue(NULL, &c, &prop, err, sizeof(err)), LT_OK);
    CHECK_INT(prop, 0);
    CHECK_INT(lt_trace_continue("", &c, NULL, err, sizeof(err)), LT_OK);

    return lt_test_done("test_trace");
}
