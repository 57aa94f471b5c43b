#include "lt_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The logger's settings: written once by lt_log_setup() at start-up. */
static struct {
    lt_log_level_t min;
    int json;
    char program[64];
} g_log = {LT_LOG_INFO, 1, "lattice"};

static const char *level_name(lt_log_level_t l)
{
    switch (l) {
    case LT_LOG_DEBUG:
        return "debug";
    case LT_LOG_INFO:
        return "info";
    case LT_LOG_WARN:
        return "warn";
    case LT_LOG_ERROR:
        return "error";
    }
    return "info";
}

lt_err_t lt_log_setup(const char *program, const char *level, const char *format, char *errstr,
                      size_t errstr_size)
{
    lt_log_level_t min;
    if (!level || !strcasecmp(level, "info"))
        min = LT_LOG_INFO;
    else if (!strcasecmp(level, "debug"))
        min = LT_LOG_DEBUG;
    else if (!strcasecmp(level, "warn") || !strcasecmp(level, "warning"))
        min = LT_LOG_WARN;
    else if (!strcasecmp(level, "error"))
        min = LT_LOG_ERROR;
    else
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "log level \"%s\": expected debug, info, warn or error", level);
    int json;
    if (!format || !strcasecmp(format, "json"))
        json = 1;
    else if (!strcasecmp(format, "text"))
        json = 0;
    else
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "log format \"%s\": expected json or text", format);
    g_log.min = min;
    g_log.json = json;
    if (program)
        snprintf(g_log.program, sizeof(g_log.program), "%s", program);
    return LT_OK;
}

int lt_log_enabled(lt_log_level_t level)
{
    return level >= g_log.min;
}

/* Write s as the inside of a JSON string. */
static void json_escape(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
}

static void field(FILE *f, int json, const char *k, const char *v)
{
    if (!v || !*v)
        return;
    if (json) {
        fprintf(f, ",\"%s\":\"", k);
        json_escape(f, v);
        fputc('"', f);
    } else {
        fprintf(f, " %s=%s", k, v);
    }
}

void lt_log(lt_log_level_t level, const lt_log_ctx_t *ctx, const char *fmt, ...)
{
    if (level < g_log.min)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000L);

    FILE *f = stderr;
    flockfile(f);
    if (g_log.json) {
        fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"program\":\"%s\",\"msg\":\"", when,
                level_name(level), g_log.program);
        json_escape(f, msg);
        fputc('"', f);
    } else {
        fprintf(f, "%s %-5s %s: %s", when, level_name(level), g_log.program, msg);
    }
    if (ctx) {
        field(f, g_log.json, "tenant", ctx->tenant);
        field(f, g_log.json, "account", ctx->account);
        field(f, g_log.json, "scope", ctx->scope);
        field(f, g_log.json, "command_id", ctx->command_id);
        field(f, g_log.json, "trace_id", ctx->trace_id);
    }
    fputs(g_log.json ? "}\n" : "\n", f);
    fflush(f);
    funlockfile(f);
}
