#include "lt_program.h"

#include <signal.h>
#include <string.h>

#include "lt_log.h"

int lt_program_args(int argc, char **argv, const char *name, void (*usage)(FILE *out))
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("%s %s\n", name, LT_VERSION);
            return 0;
        }
        fprintf(stderr, "%s: unknown argument %s\n\n", name, argv[i]);
        usage(stderr);
        return 2;
    }
    return -1;
}

lt_config_t *lt_program_config(const char *name, unsigned program)
{
    char err[4096];
    lt_config_t *cfg = lt_config_load(program, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s: %s\n", name, err);
        return NULL;
    }
    const lt_settings_t *set = lt_config_settings(cfg);
    if (lt_log_setup(name, set->log.level, set->log.format, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", name, err);
        lt_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

void lt_program_on_stop(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

lt_err_t lt_program_http(const lt_config_t *cfg, const lt_program_http_t *serve, lt_http_t **out,
                         char *errstr, size_t errstr_size)
{
    *out = NULL;
    const lt_settings_t *set = lt_config_settings(cfg);
    if (set->metrics.port <= 0)
        return LT_OK;
    lt_http_opts_t ho = {serve->name,    set->metrics.bind, set->metrics.port,
                         serve->metrics, serve->ready,      serve->ready_opaque};
    *out = lt_http_start(&ho, errstr, errstr_size);
    return *out ? LT_OK : LT_ERR_TEMPORARY;
}
