#include "lt_http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_log.h"

/* A scrape larger than this is a cardinality bug; answer 500. */
#define METRICS_MAX_BYTES ((size_t)32 << 20)

struct lt_http_s {
    lt_http_opts_t o;
    struct MHD_Daemon *d;
    int fd;
    int port;
    lt_series_t *scrape_seconds;
};

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    lt_warn(NULL, "http: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    size_t len = strlen(text);
    char *body = lt_xmalloc(len + 2);
    memcpy(body, text, len);
    body[len] = '\n';
    body[len + 1] = 0;
    return reply(c, status, "text/plain; charset=utf-8", body, len + 1);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls)
{
    lt_http_t *h = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
    if (!strcmp(url, "/metrics")) {
        double t0 = lt_now_s();
        lt_buf_t *b = lt_buf_new(METRICS_MAX_BYTES);
        lt_err_t err = lt_metrics_render(h->o.metrics, b);
        if (err) {
            lt_buf_destroy(b);
            lt_error(NULL, "http: /metrics is larger than %zu bytes", METRICS_MAX_BYTES);
            return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics too large");
        }
        size_t len;
        uint8_t *body = lt_buf_steal(b, &len);
        lt_buf_destroy(b);
        lt_series_set(h->scrape_seconds, lt_now_s() - t0);
        return reply(c, MHD_HTTP_OK, LT_METRICS_CONTENT_TYPE, (char *)body, len);
    }
    if (!strcmp(url, "/healthz"))
        return reply_text(c, MHD_HTTP_OK, "ok");
    if (!strcmp(url, "/readyz")) {
        char why[256] = "not ready";
        if (!h->o.ready || h->o.ready(h->o.ready_opaque, why, sizeof(why)))
            return reply_text(c, MHD_HTTP_OK, "ready");
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found");
}

static int listen_on(const char *bind_addr, int port, int *bound_port, char *errstr, size_t n,
                     lt_err_t *code)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int rc = getaddrinfo(bind_addr, ps, &hints, &ai);
    if (rc) {
        *code = LT_ERR_INVALID;
        lt_seterr(errstr, n, LT_ERR_INVALID, "LATTICE_METRICS_BIND %s: %s", bind_addr,
                  gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
        int e = errno;
        *code = e == EADDRNOTAVAIL || e == EACCES ? LT_ERR_INVALID : LT_ERR_TEMPORARY;
        lt_seterr(errstr, n, *code, "LATTICE_METRICS_PORT %d on %s: %s", port, bind_addr,
                  strerror(e));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound_port = port;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl)) {
        if (ss.ss_family == AF_INET)
            *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return fd;
}

lt_http_t *lt_http_start(const lt_http_opts_t *opts, char *errstr, size_t errstr_size)
{
    lt_http_t *h = lt_xcalloc(1, sizeof(*h));
    h->o = *opts;
    const char *bind_addr = opts->bind && *opts->bind ? opts->bind : "0.0.0.0";
    lt_err_t code = LT_OK;
    h->fd = listen_on(bind_addr, opts->port, &h->port, errstr, errstr_size, &code);
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    if (opts->metrics) {
        lt_series_set(lt_metric_get(lt_metrics_gauge(opts->metrics, "lattice_build_info",
                                                     "Always 1; the program and its version.",
                                                     "program,version"),
                                    opts->program ? opts->program : "lattice", LT_VERSION),
                      1);
        lt_series_set(lt_metric_series(lt_metrics_gauge(
                          opts->metrics, "process_start_time_seconds",
                          "Start time of the process since the Unix epoch, seconds.", NULL)),
                      (double)time(NULL));
        h->scrape_seconds = lt_metric_series(
            lt_metrics_gauge(opts->metrics, "lattice_metrics_scrape_duration_seconds",
                             "Time the previous /metrics took to render, seconds.", NULL));
    }
    h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                MHD_USE_ITC | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, handler, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_LISTEN_SOCKET, h->fd, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned int)16, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                            MHD_OPTION_END);
    if (!h->d) {
        lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                  "LATTICE_METRICS_PORT %d on %s: the HTTP server did not start", opts->port,
                  bind_addr);
        close(h->fd);
        free(h);
        return NULL;
    }
    return h;
}

int lt_http_port(const lt_http_t *h)
{
    return h ? h->port : 0;
}

void lt_http_stop(lt_http_t *h)
{
    if (!h)
        return;
    /* quiesce hands the listen socket back (stop would close it too) */
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    MHD_stop_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    free(h);
}
