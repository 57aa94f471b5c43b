/* libFuzzer target: a Pub/Sub push request as the watcher's endpoint gets
 * it. The input is "<Authorization header>\n<body>": the header goes
 * through the OIDC check (against a fixed RSA key whose private half is
 * not here, so no input may ever be accepted with a token), the body
 * through the envelope parser. A refusal always says why and yields
 * nothing; whatever the parser accepts names an address and a historyId. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lt_gmail_push.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char k_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"fuzz\",\"e\":\"AQAB\",\"n\":\"1e26Z9PeuRp6aOMQgtHoqn-"
    "ElR-NyK0qjhMW-MHiEUa9OqvL4dCxIzntZV7fhf-KyNgcCdCGx8AcJzhK270F2KiV58OqpxZCZq5rUYrHQPIeF1ZyR8"
    "OZGiscUIypiHw0n0Jau3A4_1YrllQ7lq-R35CA0K5TAIkaJp-mMvCcZzNzpvKCBa7MAttKPnv41_R4TXm4yRs2CtBdp"
    "Dag15MIsZS8L6kx0aP-9Ir1MPv8wqDK_AMyotGyvhzeJ6dzMdxKZ60Osy-fhzBLkvTugwwb8X8w1vBjZcuiGt2ZGYWI"
    "_qcdelbwtjdgvIr0yDcbO9uC-R7TqYPYLbzrmbKosMrLLQ\"}]}";

static lt_gmail_push_t *g_push;

static lt_gmail_push_t *push(void)
{
    if (g_push)
        return g_push;
    char path[] = "/tmp/fuzz_gmail_push_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, k_jwks, sizeof(k_jwks) - 1) != (ssize_t)(sizeof(k_jwks) - 1))
        abort();
    close(fd);
    char err[256];
    lt_gmail_push_opts_t o = {.keys_file = path, .audience = "fuzz", .clock_skew_s = 60};
    g_push = lt_gmail_push_new(&o, err, sizeof(err));
    unlink(path);
    if (!g_push)
        abort();
    return g_push;
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t hl = nl ? (size_t)(nl - s) : 0;
    const char *body = nl ? nl + 1 : s;
    size_t blen = nl ? size - hl - 1 : size;

    char err[256] = "";
    lt_gmail_push_note_t n;
    if (lt_gmail_push_parse(body, blen, &n, err, sizeof(err)) == LT_OK) {
        const char *at = strchr(n.email, '@');
        if (!at || at == n.email || !n.history_id || !printable(n.email) ||
            !printable(n.message_id) || !printable(n.subscription))
            abort();
    } else if (!err[0] || n.email[0] || n.history_id) {
        abort();
    }

    char *auth = malloc(hl + 1);
    if (!auth)
        abort();
    memcpy(auth, s, hl);
    auth[hl] = 0;
    char why[200] = "";
    int st = lt_gmail_push_handle(push(), nl ? auth : NULL, NULL, body, blen, 1800000000, &n, why,
                                  sizeof(why));
    if (st == 204 || (st != 400 && st != 401 && st != 403 && st != 413) || !why[0] ||
        n.email[0] || n.history_id)
        abort();
    free(auth);
    return 0;
}
