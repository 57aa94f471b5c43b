#include "lt_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_buf.h"
#include "lt_settings.h"

extern char **environ;

#define LT_SECRET_FILE_MAX (64 * 1024)

struct lt_config_s {
    const lt_setting_t *table;
    size_t n;
    lt_settings_t set; /* strings owned */
    unsigned program;
};

static const char **str_field(lt_settings_t *set, const lt_setting_t *s)
{
    return (const char **)(void *)((char *)set + s->offset);
}

static const char *str_value(const lt_config_t *cfg, const lt_setting_t *s)
{
    return *(const char *const *)(const void *)((const char *)&cfg->set + s->offset);
}

static const char *k_kafka_prefix = "LATTICE_KAFKA_";

/* Read a small secret file; trailing CR/LF dropped. */
static lt_err_t read_secret_file(const char *path, char **out, char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    FILE *f = fopen(path, "rb");
    lt_buf_t *b = lt_buf_new(LT_SECRET_FILE_MAX);
    if (!f) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "cannot read %s: %s", path,
                        strerror(errno));
        goto out;
    }
    char chunk[4096];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (lt_buf_append(b, chunk, r)) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG, "%s is larger than %d bytes",
                            path, LT_SECRET_FILE_MAX);
            goto out;
        }
    }
    size_t len;
    char *s = (char *)lt_buf_steal(b, &len);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        s[--len] = 0;
    *out = s;
out:
    if (f)
        fclose(f);
    lt_buf_destroy(b);
    return err;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "on")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") ||
        !strcasecmp(v, "off")) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int parse_int(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return -1;
    *out = x;
    return 0;
}

static int in_choices(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && !strncasecmp(p, v, l))
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

/* Validate one value; append a problem line to `problems` if bad. */
static void validate(const lt_setting_t *s, const char *v, lt_buf_t *problems)
{
    long long x;
    int bv;
    switch (s->type) {
    case LT_SET_STRING:
        break;
    case LT_SET_INT:
    case LT_SET_INT64:
        if (parse_int(v, &x))
            lt_buf_appendf(problems, "%s=\"%s\": not a whole number; ", s->env, v);
        else if (x < s->min || x > s->max)
            lt_buf_appendf(problems, "%s=%lld: must be between %lld and %lld; ", s->env, x,
                           s->min, s->max);
        break;
    case LT_SET_BOOL:
        if (parse_bool(v, &bv))
            lt_buf_appendf(problems, "%s=\"%s\": expected true or false; ", s->env, v);
        break;
    case LT_SET_ENUM:
        if (!in_choices(s->choices, v))
            lt_buf_appendf(problems, "%s=\"%s\": expected one of %s; ", s->env, v, s->choices);
        break;
    }
}

/* Store a valid value in its typed field; `v` is taken. */
static void store(lt_settings_t *set, const lt_setting_t *s, char *v)
{
    void *field = (char *)set + s->offset;
    long long x = 0;
    int b = 0;
    switch (s->type) {
    case LT_SET_STRING:
    case LT_SET_ENUM:
        *(const char **)field = v;
        return;
    case LT_SET_INT:
        parse_int(v, &x);
        *(int *)field = (int)x;
        break;
    case LT_SET_INT64:
        parse_int(v, &x);
        *(int64_t *)field = (int64_t)x;
        break;
    case LT_SET_BOOL:
        parse_bool(v, &b);
        *(bool *)field = b != 0;
        break;
    }
    free(v);
}

lt_config_t *lt_config_load(unsigned program, char *errstr, size_t errstr_size)
{
    lt_config_t *cfg = lt_xcalloc(1, sizeof(*cfg));
    cfg->table = lt_settings_table(&cfg->n);
    cfg->program = program;
    lt_buf_t *problems = lt_buf_new(8192);

    for (size_t i = 0; i < cfg->n; i++) {
        const lt_setting_t *s = &cfg->table[i];
        if (!(s->programs & program))
            continue;
        const char *v = getenv(s->env);
        char fname[256];
        snprintf(fname, sizeof(fname), "%s_FILE", s->env);
        const char *file = s->secret ? getenv(fname) : NULL;
        if (v && file) {
            lt_buf_appendf(problems, "set %s or %s, not both; ", s->env, fname);
            continue;
        }
        char *val = NULL;
        if (file && *file) {
            char e[512];
            if (read_secret_file(file, &val, e, sizeof(e))) {
                lt_buf_appendf(problems, "%s: %s; ", fname, e);
                continue;
            }
        } else if (v && *v) {
            val = lt_xstrdup(v);
        } else if (s->def) {
            val = lt_xstrdup(s->def);
        }
        if (val) {
            size_t before = lt_buf_len(problems);
            validate(s, val, problems);
            if (lt_buf_len(problems) == before)
                store(&cfg->set, s, val);
            else
                free(val);
        } else if (s->required)
            lt_buf_appendf(problems, "%s is required%s; ", s->env,
                           s->secret ? " (or its _FILE variant)" : "");
    }
    if (lt_buf_len(problems) > 0) {
        size_t len = lt_buf_len(problems);
        char *p = (char *)lt_buf_steal(problems, &len);
        if (len >= 2)
            p[len - 2] = 0; /* drop the last "; " */
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad configuration: %s", p);
        free(p);
        lt_buf_destroy(problems);
        lt_config_destroy(cfg);
        return NULL;
    }
    lt_buf_destroy(problems);
    return cfg;
}

void lt_config_destroy(lt_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        const lt_setting_t *s = &cfg->table[i];
        if (s->type != LT_SET_STRING && s->type != LT_SET_ENUM)
            continue;
        char *v = (char *)*str_field(&cfg->set, s);
        if (v) {
            if (s->secret)
                memset(v, 0, strlen(v));
            free(v);
        }
    }
    free(cfg);
}

const lt_settings_t *lt_config_settings(const lt_config_t *cfg)
{
    return &cfg->set;
}

/* LATTICE_KAFKA_SASL_PASSWORD -> sasl.password ("__" keeps a literal '_'). */
static void kafka_prop_name(const char *env_suffix, size_t len, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < out_size; i++) {
        char c = env_suffix[i];
        if (c == '_' && i + 1 < len && env_suffix[i + 1] == '_') {
            out[o++] = '_';
            i++;
        } else if (c == '_') {
            out[o++] = '.';
        } else {
            out[o++] = (char)tolower((unsigned char)c);
        }
    }
    out[o] = 0;
}

lt_err_t lt_config_kafka_props(const lt_config_t *cfg, lt_config_kafka_fn fn, void *opaque,
                               char *errstr, size_t errstr_size)
{
    size_t plen = strlen(k_kafka_prefix);
    /* Defaults of table rows first (overridden below when set). */
    for (size_t i = 0; i < cfg->n; i++) {
        const lt_setting_t *s = &cfg->table[i];
        if (s->type != LT_SET_STRING || strncmp(s->env, k_kafka_prefix, plen) || !str_value(cfg, s))
            continue;
        if (getenv(s->env))
            continue; /* passed below from the environment */
        char prop[256];
        kafka_prop_name(s->env + plen, strlen(s->env + plen), prop, sizeof(prop));
        lt_err_t err = fn(prop, str_value(cfg, s), opaque, errstr, errstr_size);
        if (err)
            return err;
    }
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, k_kafka_prefix, plen))
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        const char *name = *e + plen;
        size_t nlen = (size_t)(eq - name);
        const char *value = eq + 1;
        char *owned = NULL;
        if (!*value)
            continue; /* an empty line copied from .env.example means unset */
        if (nlen > 5 && !strncmp(name + nlen - 5, "_FILE", 5)) {
            lt_err_t err = read_secret_file(value, &owned, errstr, errstr_size);
            if (err)
                return err;
            nlen -= 5;
            value = owned;
        }
        char prop[256];
        kafka_prop_name(name, nlen, prop, sizeof(prop));
        lt_err_t err = fn(prop, value, opaque, errstr, errstr_size);
        if (owned) {
            memset(owned, 0, strlen(owned));
            free(owned);
        }
        if (err)
            return err;
    }
    return LT_OK;
}

static void wrap(FILE *out, const char *prefix, const char *text)
{
    /* Greedy word wrap at 78 columns. */
    size_t col = 0, plen = strlen(prefix);
    const char *p = text;
    fputs(prefix, out);
    col = plen;
    while (*p) {
        const char *sp = strchr(p, ' ');
        size_t wl = sp ? (size_t)(sp - p) : strlen(p);
        if (col > plen && col + 1 + wl > 78) {
            fputc('\n', out);
            fputs(prefix, out);
            col = plen;
        } else if (col > plen) {
            fputc(' ', out);
            col++;
        }
        fwrite(p, 1, wl, out);
        col += wl;
        p += wl;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

static const char *type_name(const lt_setting_t *s)
{
    switch (s->type) {
    case LT_SET_STRING:
        return "string";
    case LT_SET_INT:
    case LT_SET_INT64:
        return "integer";
    case LT_SET_BOOL:
        return "true|false";
    case LT_SET_ENUM:
        return s->choices;
    }
    return "string";
}

void lt_config_print_help(FILE *out, unsigned program)
{
    size_t n;
    const lt_setting_t *t = lt_settings_table(&n);
    const char *group = NULL;
    fputs("Settings (environment variables; secrets may be given as NAME_FILE):\n", out);
    for (size_t i = 0; i < n; i++) {
        const lt_setting_t *s = &t[i];
        if (!(s->programs & program))
            continue;
        if (!group || strcmp(group, s->group)) {
            group = s->group;
            fprintf(out, "\n  %s\n", group);
        }
        fprintf(out, "    %s (%s%s%s%s%s)\n", s->env, type_name(s), s->secret ? ", secret" : "",
                s->required ? ", required" : "", s->def ? ", default " : "",
                s->def ? s->def : "");
        wrap(out, "        ", s->desc);
    }
}

void lt_config_print_env_example(FILE *out)
{
    size_t n;
    const lt_setting_t *t = lt_settings_table(&n);
    const char *group = NULL;
    fputs("# Lattice mail ingest settings. Generated from lib/common/lt_settings.c by\n"
          "# `make env-example`; a test fails when this file is out of date.\n"
          "# Copy to .env and fill in. Secrets may instead be given as NAME_FILE=/path.\n"
          "# Defaults point at the local stack (deploy/local/stack).\n",
          out);
    for (size_t i = 0; i < n; i++) {
        const lt_setting_t *s = &t[i];
        if (!group || strcmp(group, s->group)) {
            group = s->group;
            fprintf(out, "\n# --- %s ---\n", group);
        }
        wrap(out, "# ", s->desc);
        if (s->secret || !s->def)
            fprintf(out, "%s=\n", s->env);
        else
            fprintf(out, "%s=%s\n", s->env, s->def);
    }
}
