/* lt_settings: the one table of settings (see lt_config.h). Private to
 * lt_config.c and lt_settings.c. */
#ifndef LT_SETTINGS_H
#define LT_SETTINGS_H

#include <stddef.h>

typedef enum {
    LT_SET_STRING,
    LT_SET_INT,
    LT_SET_BOOL,
    LT_SET_ENUM, /* one of `choices`, '|' separated */
} lt_setting_type_t;

typedef struct {
    const char *env;
    lt_setting_type_t type;
    const char *def;   /* default, NULL = none */
    unsigned programs; /* LT_PROG_* mask */
    int secret;        /* never printed; may come from NAME_FILE */
    int required;      /* must be set (or have a default) */
    long long min, max; /* LT_SET_INT bounds */
    const char *choices; /* LT_SET_ENUM */
    const char *group;   /* heading in --help and .env.example */
    const char *desc;
} lt_setting_t;

const lt_setting_t *lt_settings_table(size_t *count);

#endif
