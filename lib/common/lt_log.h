/* lt_log: the logger, the project's one piece of global mutable state.
 *
 * One line per record on stderr: JSON objects (default, for Kubernetes log
 * pipelines) or human-readable text (LATTICE_LOG_FORMAT=text). A record may
 * carry the context of the work it belongs to (tenant, account, scope,
 * command id, trace id). Never log a token, password or message content. */
#ifndef LT_LOG_H
#define LT_LOG_H

#include "lt_err.h"

typedef enum {
    LT_LOG_DEBUG = 0,
    LT_LOG_INFO,
    LT_LOG_WARN,
    LT_LOG_ERROR,
} lt_log_level_t;

/* Borrowed strings, any may be NULL. A plain value carrier, not state. */
typedef struct {
    const char *tenant;
    const char *account;
    const char *scope;
    const char *command_id;
    const char *trace_id;
} lt_log_ctx_t;

/* Parse "debug|info|warn|error" and "json|text"; LT_ERR_INVALID otherwise. */
lt_err_t lt_log_setup(const char *program, const char *level, const char *format, char *errstr,
                      size_t errstr_size);

int lt_log_enabled(lt_log_level_t level);

void lt_log(lt_log_level_t level, const lt_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define lt_debug(ctx, ...) lt_log(LT_LOG_DEBUG, ctx, __VA_ARGS__)
#define lt_info(ctx, ...) lt_log(LT_LOG_INFO, ctx, __VA_ARGS__)
#define lt_warn(ctx, ...) lt_log(LT_LOG_WARN, ctx, __VA_ARGS__)
#define lt_error(ctx, ...) lt_log(LT_LOG_ERROR, ctx, __VA_ARGS__)

#endif
