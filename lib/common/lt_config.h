/* lt_config: settings from the environment, described by one table.
 *
 * The table (lt_settings.c) gives every setting's environment name, type,
 * the field of lt_settings_t it fills, default, which programs read it,
 * whether it is a secret, and a description. The same table validates the
 * environment once at start, fills the typed struct the programs read,
 * prints --help and generates .env.example, so they cannot drift apart.
 *
 * Secrets: a secret setting NAME may instead be given as NAME_FILE, the path
 * of a mounted file holding the value (trailing newline dropped). Secret
 * values are never printed.
 *
 * Kafka: every LATTICE_KAFKA_<X> variable is passed to librdkafka as the
 * property <x> (lower case, '_' -> '.'); LATTICE_KAFKA_<X>_FILE reads the
 * value of <x> from a file. */
#ifndef LT_CONFIG_H
#define LT_CONFIG_H

#include <stdio.h>

#include "lt_err.h"
#include "lt_settings.h"

/* Which programs read a setting (bit mask). */
enum {
    LT_PROG_WORKER = 1u << 0,
    LT_PROG_SCHEDULER = 1u << 1,
    LT_PROG_PARSER = 1u << 2,
    LT_PROG_TOOLS = 1u << 3,
    LT_PROG_WATCHER = 1u << 4,
    LT_PROG_ALL = 0xffu,
};

typedef struct lt_config_s lt_config_t;

/* Read and validate every setting of `program` from the environment. On a
 * bad value returns NULL and lists every problem in errstr. */
lt_config_t *lt_config_load(unsigned program, char *errstr, size_t errstr_size);
void lt_config_destroy(lt_config_t *cfg);

/* The settings, typed (lt_settings.h): each field holds its row's value or
 * default; a string is NULL when unset with no default. Fields of rows that
 * are not `program`'s are zero. Valid until lt_config_destroy(). */
const lt_settings_t *lt_config_settings(const lt_config_t *cfg);

/* Call fn(name, value, opaque, errstr, errstr_size) for every librdkafka
 * property given through LATTICE_KAFKA_* (table defaults included, empty
 * values skipped). Stops at and returns the first non-LT_OK result. */
typedef lt_err_t (*lt_config_kafka_fn)(const char *prop, const char *value, void *opaque,
                                       char *errstr, size_t errstr_size);
lt_err_t lt_config_kafka_props(const lt_config_t *cfg, lt_config_kafka_fn fn, void *opaque,
                               char *errstr, size_t errstr_size);

/* The settings of `program` as --help text. */
void lt_config_print_help(FILE *out, unsigned program);
/* The whole table as a .env.example file. */
void lt_config_print_env_example(FILE *out);

#endif
