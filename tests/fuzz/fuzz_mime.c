/* libFuzzer target for lt_mime: parse, read every accessor, stream every
 * attachment; once with the default caps and once with tight ones. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void use(const char *s)
{
    if (s)
        sink += strlen(s);
}

static lt_err_t count_write(void *opaque, const uint8_t *data, size_t len)
{
    uint64_t *n = opaque;
    *n += len;
    if (len)
        sink += data[0] + data[len - 1];
    return LT_OK;
}

static void walk(const lt_mime_limits_t *lim, const uint8_t *data, size_t size)
{
    char err[256];
    lt_mime_t *m = NULL;
    if (lt_mime_parse_mem(data, size, lim, &m, err, sizeof(err)) != LT_OK)
        return;
    sink += lt_mime_flags(m);
    use(lt_mime_message_id(m));
    use(lt_mime_subject(m));
    sink += (size_t)lt_mime_date_ms(m);
    use(lt_mime_in_reply_to(m));
    for (size_t i = 0; i < lt_mime_reference_count(m); i++)
        use(lt_mime_reference(m, i));
    for (int f = LT_MIME_FROM; f <= LT_MIME_REPLY_TO; f++) {
        use(lt_mime_addr_display(m, (lt_mime_field_t)f));
        for (size_t i = 0; i < lt_mime_addr_count(m, (lt_mime_field_t)f); i++) {
            use(lt_mime_addr_name(m, (lt_mime_field_t)f, i));
            const char *e = lt_mime_addr_email(m, (lt_mime_field_t)f, i);
            if (!e)
                abort();
            use(e);
        }
    }
    char *h = lt_mime_header_dup(m, "Content-Type");
    use(h);
    free(h);
    size_t len;
    const char *t = lt_mime_text(m, &len);
    if (!t || strlen(t) != len)
        abort(); /* NUL-free text of the stated length */
    use(lt_mime_text_source(m));
    use(lt_mime_text_part_id(m));
    for (size_t i = 0; i < lt_mime_attachment_count(m); i++) {
        use(lt_mime_attachment_id(m, i));
        use(lt_mime_attachment_filename(m, i));
        use(lt_mime_attachment_content_type(m, i));
        use(lt_mime_attachment_disposition(m, i));
        use(lt_mime_attachment_content_id(m, i));
        use(lt_mime_attachment_sha256(m, i));
        uint64_t n = 0;
        if (lt_mime_attachment_write(m, i, count_write, &n, err, sizeof(err)) != LT_OK ||
            n != lt_mime_attachment_size(m, i))
            abort(); /* streaming gives what the manifest says */
    }
    lt_mime_destroy(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised; /* gmime's global init, once per process */
    if (!initialised) {
        lt_mime_global_init();
        initialised = 1;
    }
    walk(NULL, data, size);
    lt_mime_limits_t tight = {.max_input = 1 << 20,
                              .max_depth = 3,
                              .max_attachments = 4,
                              .max_text = 64,
                              .max_header = 16,
                              .max_list = 2};
    walk(&tight, data, size);
    return 0;
}
