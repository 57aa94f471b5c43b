#include "lt_command.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/rand.h>

#include "lt_trace.h"

struct lt_command_s {
    char *command_id;
    char *tenant_id;
    char *account_id;
    lt_provider_t provider;
    lt_sync_kind_t kind;
    char *scope;
    char *start_date;
    char *end_date;
    char *folder;
    uint32_t start_uid;
    uint32_t end_uid;
    char *requested_at;
    time_t requested_at_unix;
    char *requested_by;
    char *traceparent;
};

#define MAX_UID 4294967295LL

/* The fields of the top-level object and of `backfill`. */
static const char *const k_fields[] = {"schema",       "command_id",   "tenant_id",   "account_id",
                                       "provider",     "kind",         "scope",       "backfill",
                                       "requested_at", "requested_by", "traceparent", NULL};

const char *lt_sync_kind_name(lt_sync_kind_t k)
{
    switch (k) {
    case LT_SYNC_INCREMENTAL:
        return "incremental";
    case LT_SYNC_BACKFILL:
        return "backfill";
    }
    return NULL;
}

/* ---- text checks -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (strict: no overlong forms, no
 * surrogates, at most U+10FFFF), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* Offset of the first invalid byte, or n if all of s is valid UTF-8. */
static size_t utf8_invalid_at(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i);
        if (!l)
            return i;
        i += l;
    }
    return n;
}

/* Copy s into out as printable ASCII for an error message (at most 48
 * characters; anything else becomes '?'). */
static const char *printable(const char *s, size_t n, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < out_size; i++) {
        if (o >= 48) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = 0;
    return out;
}

static int is_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

/* "YYYY-MM-DD", a real calendar date, year 1970..9999. */
static int valid_date(const char *s, size_t n, int *y, int *m, int *d)
{
    if (n != 10 || s[4] != '-' || s[7] != '-' || !is_digits(s, 4) || !is_digits(s + 5, 2) ||
        !is_digits(s + 8, 2))
        return 0;
    *y = num(s, 4);
    *m = num(s + 5, 2);
    *d = num(s + 8, 2);
    return *y >= 1970 && *m >= 1 && *m <= 12 && *d >= 1 && *d <= days_in_month(*y, *m);
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = y / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* RFC 3339 in UTC: "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (upper-case T and Z,
 * 1..9 fraction digits, no leap second). */
static int valid_timestamp(const char *s, size_t n, time_t *out)
{
    int y, mo, d;
    if (n < 20 || !valid_date(s, 10, &y, &mo, &d) || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        !is_digits(s + 11, 2) || !is_digits(s + 14, 2) || !is_digits(s + 17, 2))
        return 0;
    int hh = num(s + 11, 2), mi = num(s + 14, 2), ss = num(s + 17, 2);
    if (hh > 23 || mi > 59 || ss > 59)
        return 0;
    size_t i = 19;
    if (s[i] == '.') {
        size_t f = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f || i - f > 9)
            return 0;
    }
    if (i + 1 != n || s[i] != 'Z')
        return 0;
    *out = (time_t)(days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss);
    return 1;
}

/* ---- duplicate field names ---------------------------------------------- */

/* json-c keeps the last of two equal keys silently. Scan the raw text (known
 * to be valid JSON by now) and count the keys of the top-level object and of
 * each object that is directly the value of a top-level field; a count above
 * the number of distinct keys json-c kept means a duplicate. */
typedef struct {
    size_t start; /* offset of '{' */
    int parent;   /* index of the top-level key whose value it is */
    size_t keys;
} obj_scan_t;

/* Offset just past the string whose opening quote is at i. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return len;
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Keys of the object starting at `start`, calling fn for each direct key
 * (offset of its opening quote, raw length with quotes). Returns the count. */
typedef int (*key_fn)(const char *s, size_t at, size_t n, void *opaque);

static size_t object_keys(const char *s, size_t len, size_t start, key_fn fn, void *opaque)
{
    int depth = 0;
    size_t count = 0;
    for (size_t i = start; i < len;) {
        char c = s[i];
        if (c == '"') {
            size_t end = skip_string(s, len, i);
            size_t k = skip_ws(s, len, end);
            if (depth == 1 && k < len && s[k] == ':') {
                count++;
                if (fn && fn(s, i, end - i, opaque))
                    return count;
            }
            i = end;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (--depth == 0)
                break;
        }
        i++;
    }
    return count;
}

typedef struct {
    size_t at[64];
    size_t n[64];
    size_t count;
    const char *dup_at;
    size_t dup_n;
} dup_find_t;

static int find_dup(const char *s, size_t at, size_t n, void *opaque)
{
    dup_find_t *f = opaque;
    for (size_t i = 0; i < f->count; i++) {
        if (f->n[i] == n && !memcmp(s + f->at[i], s + at, n)) {
            f->dup_at = s + at + 1;
            f->dup_n = n - 2;
            return 1;
        }
    }
    if (f->count < 64) {
        f->at[f->count] = at;
        f->n[f->count] = n;
        f->count++;
    }
    return 0;
}

static lt_err_t dup_error(const char *s, size_t len, size_t start, const char *where, char *errstr,
                          size_t errstr_size)
{
    dup_find_t f = {.count = 0};
    object_keys(s, len, start, find_dup, &f);
    char name[64];
    if (f.dup_at)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s%sduplicate field \"%s\"", where,
                         *where ? ": " : "", printable(f.dup_at, f.dup_n, name, sizeof(name)));
    return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                     "%s%sduplicate field (the same name written with different escapes)", where,
                     *where ? ": " : "");
}

static lt_err_t check_duplicates(const char *s, size_t len, json_object *root, char *errstr,
                                 size_t errstr_size)
{
    lt_err_t err = LT_OK;
    size_t root_start = skip_ws(s, len, 0);
    obj_scan_t *objs = NULL;
    size_t nobjs = 0, alloc = 0;
    size_t root_keys = 0;
    int depth = 0;

    /* One pass: count top-level keys, note the objects that are their values. */
    for (size_t i = root_start; i < len;) {
        char c = s[i];
        if (c == '"') {
            size_t end = skip_string(s, len, i);
            size_t k = skip_ws(s, len, end);
            if (k < len && s[k] == ':') {
                if (depth == 1)
                    root_keys++;
                else if (depth == 2 && nobjs && objs[nobjs - 1].start != (size_t)-1)
                    objs[nobjs - 1].keys++;
            }
            i = end;
            continue;
        }
        if (c == '\'') {
            /* json-c accepts 'single-quoted' names even in strict mode. */
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                            "command: not valid JSON: single-quoted string (at byte %zu)", i);
            goto out;
        }
        if (c == '{' || c == '[') {
            depth++;
            if (depth == 2) {
                if (nobjs == alloc) {
                    alloc = alloc ? alloc * 2 : 8;
                    objs = lt_xrealloc(objs, alloc * sizeof(*objs));
                }
                /* An array value still takes a slot (start = -1): ignored. */
                objs[nobjs].start = c == '{' ? i : (size_t)-1;
                objs[nobjs].parent = (int)root_keys - 1;
                objs[nobjs].keys = 0;
                nobjs++;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
        i++;
    }

    if (root_keys != (size_t)json_object_object_length(root)) {
        err = dup_error(s, len, root_start, "", errstr, errstr_size);
        goto out;
    }
    /* No duplicates at the top: the i-th raw key is json-c's i-th entry. */
    for (size_t o = 0; o < nobjs; o++) {
        if (objs[o].start == (size_t)-1)
            continue;
        int idx = 0;
        json_object_object_foreach(root, key, val)
        {
            if (idx++ != objs[o].parent)
                continue;
            if (json_object_is_type(val, json_type_object) &&
                objs[o].keys != (size_t)json_object_object_length(val)) {
                char where[64];
                err = dup_error(s, len, objs[o].start,
                                printable(key, strlen(key), where, sizeof(where)), errstr,
                                errstr_size);
                goto out;
            }
        }
    }
out:
    free(objs);
    return err;
}

/* ---- field readers ------------------------------------------------------ */

typedef enum {
    STR_ID,   /* [A-Za-z0-9._:-], 1..LT_COMMAND_ID_MAX */
    STR_TEXT, /* UTF-8 without control characters, 1..max characters */
} str_kind_t;

/* The rules of one string field (n bytes, not empty). */
static lt_err_t check_str(const char *where, const char *name, const char *s, size_t n,
                          str_kind_t kind, size_t max, char *errstr, size_t errstr_size)
{
    if (n == 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s%s: must not be empty", where,
                         name);
    if (kind == STR_ID) {
        if (n > max)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "%s%s: too long (%zu characters, at most %zu)", where, name, n, max);
        for (size_t i = 0; i < n; i++)
            if (!is_id_char(s[i]))
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                 "%s%s: character %zu is not allowed (only A-Z a-z 0-9 . _ : -)",
                                 where, name, i + 1);
    } else {
        if (utf8_invalid_at(s, n) != n)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s%s: not valid UTF-8", where,
                             name);
        size_t chars = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f)
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                 "%s%s: control characters are not allowed", where, name);
            if ((c & 0xc0) != 0x80)
                chars++;
        }
        if (chars > max)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "%s%s: too long (%zu characters, at most %zu)", where, name, chars,
                             max);
    }
    return LT_OK;
}

/* Read a string field. *out = NULL if absent and not required. */
static lt_err_t get_string(json_object *obj, const char *where, const char *name, int required,
                           str_kind_t kind, size_t max, const char **out, char *errstr,
                           size_t errstr_size)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(obj, name, &v)) {
        if (required)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s%s: missing required field",
                             where, name);
        return LT_OK;
    }
    if (!json_object_is_type(v, json_type_string))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s%s: must be a string, not %s",
                         where, name, json_type_to_name(json_object_get_type(v)));
    const char *s = json_object_get_string(v);
    lt_err_t err = check_str(where, name, s, (size_t)json_object_get_string_len(v), kind, max,
                             errstr, errstr_size);
    if (err)
        return err;
    *out = s;
    return LT_OK;
}

/* A UID: a JSON integer 1..4294967295. *out = 0 if absent. */
static lt_err_t get_uid(json_object *obj, const char *name, uint32_t *out, char *errstr,
                        size_t errstr_size)
{
    json_object *v;
    *out = 0;
    if (!json_object_object_get_ex(obj, name, &v))
        return LT_OK;
    if (!json_object_is_type(v, json_type_int))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "backfill.%s: must be an integer, not %s", name,
                         json_type_to_name(json_object_get_type(v)));
    int64_t x = json_object_get_int64(v);
    if (x < 1 || x > MAX_UID)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "backfill.%s: must be between 1 and 4294967295", name);
    *out = (uint32_t)x;
    return LT_OK;
}

static lt_err_t check_fields(json_object *obj, const char *where, const char *const *allowed,
                             char *errstr, size_t errstr_size)
{
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, key))
                ok = 1;
        if (!ok) {
            char name[64];
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%sunknown field \"%s\"", where,
                             printable(key, strlen(key), name, sizeof(name)));
        }
    }
    return LT_OK;
}

static char *dup_or_null(const char *s)
{
    return s ? lt_xstrdup(s) : NULL;
}

static lt_err_t parse_backfill(json_object *bf, lt_command_t *c, char *errstr, size_t errstr_size)
{
    static const char *const gmail_fields[] = {"start_date", "end_date", NULL};
    static const char *const imap_fields[] = {"folder", "start_uid", "end_uid", NULL};
    lt_err_t err;
    if (!json_object_is_type(bf, json_type_object))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "backfill: must be an object, not %s",
                         json_type_to_name(json_object_get_type(bf)));
    if (c->provider == LT_PROVIDER_GMAIL) {
        const char *sd, *ed;
        int y, m, d;
        if ((err = check_fields(bf, "backfill: ", gmail_fields, errstr, errstr_size)))
            return err;
        if ((err = get_string(bf, "backfill.", "start_date", 1, STR_TEXT, 64, &sd, errstr,
                              errstr_size)) ||
            (err = get_string(bf, "backfill.", "end_date", 1, STR_TEXT, 64, &ed, errstr,
                              errstr_size)))
            return err;
        char v[64];
        if (!valid_date(sd, strlen(sd), &y, &m, &d))
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "backfill.start_date: \"%s\" is not a valid date (expected "
                             "YYYY-MM-DD, year 1970 or later)",
                             printable(sd, strlen(sd), v, sizeof(v)));
        if (!valid_date(ed, strlen(ed), &y, &m, &d))
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "backfill.end_date: \"%s\" is not a valid date (expected "
                             "YYYY-MM-DD, year 1970 or later)",
                             printable(ed, strlen(ed), v, sizeof(v)));
        if (strcmp(sd, ed) > 0)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "backfill: start_date %s is after end_date %s", sd, ed);
        c->start_date = lt_xstrdup(sd);
        c->end_date = lt_xstrdup(ed);
        return LT_OK;
    }
    const char *folder;
    if ((err = check_fields(bf, "backfill: ", imap_fields, errstr, errstr_size)))
        return err;
    if ((err = get_string(bf, "backfill.", "folder", 1, STR_TEXT, LT_COMMAND_SCOPE_MAX, &folder,
                          errstr, errstr_size)))
        return err;
    if ((err = get_uid(bf, "start_uid", &c->start_uid, errstr, errstr_size)) ||
        (err = get_uid(bf, "end_uid", &c->end_uid, errstr, errstr_size)))
        return err;
    if (c->start_uid && c->end_uid && c->start_uid > c->end_uid)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "backfill: start_uid %u is after end_uid %u", c->start_uid, c->end_uid);
    c->folder = lt_xstrdup(lt_command_imap_mailbox(folder));
    return LT_OK;
}

static lt_err_t parse_object(json_object *root, lt_command_t *c, char *errstr, size_t errstr_size)
{
    lt_err_t err;
    const char *s;
    char v[64];

    if ((err = check_fields(root, "", k_fields, errstr, errstr_size)))
        return err;

    if ((err = get_string(root, "", "schema", 1, STR_TEXT, 64, &s, errstr, errstr_size)))
        return err;
    if (strcmp(s, LT_COMMAND_SCHEMA))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "schema: \"%s\" is not \"" LT_COMMAND_SCHEMA "\"",
                         printable(s, strlen(s), v, sizeof(v)));

    if ((err = get_string(root, "", "command_id", 1, STR_ID, LT_COMMAND_ID_MAX, &s, errstr,
                          errstr_size)))
        return err;
    c->command_id = lt_xstrdup(s);
    if ((err = get_string(root, "", "tenant_id", 1, STR_ID, LT_COMMAND_ID_MAX, &s, errstr,
                          errstr_size)))
        return err;
    c->tenant_id = lt_xstrdup(s);
    if ((err = get_string(root, "", "account_id", 1, STR_ID, LT_COMMAND_ID_MAX, &s, errstr,
                          errstr_size)))
        return err;
    c->account_id = lt_xstrdup(s);

    if ((err = get_string(root, "", "provider", 1, STR_TEXT, 64, &s, errstr, errstr_size)))
        return err;
    if (!strcmp(s, "gmail"))
        c->provider = LT_PROVIDER_GMAIL;
    else if (!strcmp(s, "imap"))
        c->provider = LT_PROVIDER_IMAP;
    else
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "provider: \"%s\" is not one of gmail, imap",
                         printable(s, strlen(s), v, sizeof(v)));

    if ((err = get_string(root, "", "kind", 1, STR_TEXT, 64, &s, errstr, errstr_size)))
        return err;
    if (!strcmp(s, "incremental"))
        c->kind = LT_SYNC_INCREMENTAL;
    else if (!strcmp(s, "backfill"))
        c->kind = LT_SYNC_BACKFILL;
    else
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "kind: \"%s\" is not one of incremental, backfill",
                         printable(s, strlen(s), v, sizeof(v)));

    if ((err = get_string(root, "", "scope", 0, STR_TEXT, LT_COMMAND_SCOPE_MAX, &s, errstr,
                          errstr_size)))
        return err;
    if (s && c->provider == LT_PROVIDER_IMAP && c->kind == LT_SYNC_BACKFILL)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "scope: not allowed on an imap backfill (the folder is backfill.folder)");
    c->scope = dup_or_null(c->provider == LT_PROVIDER_IMAP ? lt_command_imap_mailbox(s) : s);

    json_object *bf;
    int has_bf = json_object_object_get_ex(root, "backfill", &bf);
    if (c->kind == LT_SYNC_INCREMENTAL && has_bf)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "backfill: only allowed when kind is backfill");
    if (c->kind == LT_SYNC_BACKFILL) {
        if (!has_bf)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "backfill: missing required field (kind is backfill)");
        if ((err = parse_backfill(bf, c, errstr, errstr_size)))
            return err;
    }

    if ((err = get_string(root, "", "requested_at", 1, STR_TEXT, 64, &s, errstr, errstr_size)))
        return err;
    if (!valid_timestamp(s, strlen(s), &c->requested_at_unix))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "requested_at: \"%s\" is not an RFC 3339 UTC timestamp "
                         "(YYYY-MM-DDTHH:MM:SS[.fraction]Z)",
                         printable(s, strlen(s), v, sizeof(v)));
    c->requested_at = lt_xstrdup(s);

    if ((err = get_string(root, "", "requested_by", 1, STR_TEXT, LT_COMMAND_REQUESTED_BY_MAX, &s,
                          errstr, errstr_size)))
        return err;
    c->requested_by = lt_xstrdup(s);

    if ((err = get_string(root, "", "traceparent", 0, STR_TEXT, 512, &s, errstr, errstr_size)))
        return err;
    if (s) {
        lt_trace_t t;
        char why[160];
        if (lt_trace_parse(s, strlen(s), &t, why, sizeof(why)))
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s", why);
        c->traceparent = lt_xstrdup(s);
    }
    return LT_OK;
}

lt_err_t lt_command_parse(const char *json, size_t len, lt_command_t **out, char *errstr,
                          size_t errstr_size)
{
    lt_err_t err = LT_OK;
    json_tokener *tok = NULL;
    json_object *root = NULL;
    char *copy = NULL;
    lt_command_t *c = NULL;
    *out = NULL;

    if (!json)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "command: no input");
    if (len > LT_COMMAND_MAX_SIZE)
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG, "command: %zu bytes, the limit is %d",
                         len, LT_COMMAND_MAX_SIZE);
    if (memchr(json, 0, len))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "command: contains a NUL byte");
    size_t bad = utf8_invalid_at(json, len);
    if (bad != len)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "command: not valid UTF-8 (at byte %zu)", bad);

    /* json-c wants the terminating NUL counted to finish a top-level value. */
    copy = lt_xmalloc(len + 1);
    memcpy(copy, json, len);
    copy[len] = 0;
    tok = json_tokener_new();
    if (!tok) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, copy, (int)len + 1);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (jerr != json_tokener_success || !root) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                        "command: not valid JSON: %s (at byte %zu)",
                        jerr == json_tokener_continue ? "unexpected end of input"
                                                      : json_tokener_error_desc(jerr),
                        json_tokener_get_parse_end(tok));
        goto out;
    }
    if (skip_ws(copy, len, json_tokener_get_parse_end(tok)) < len) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                        "command: unexpected text after the JSON object (at byte %zu)",
                        json_tokener_get_parse_end(tok));
        goto out;
    }
    if (!json_object_is_type(root, json_type_object)) {
        err =
            lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "command: must be a JSON object, not %s",
                      json_type_to_name(json_object_get_type(root)));
        goto out;
    }
    if ((err = check_duplicates(copy, len, root, errstr, errstr_size)))
        goto out;

    c = lt_xcalloc(1, sizeof(*c));
    if ((err = parse_object(root, c, errstr, errstr_size)))
        goto out;
    *out = c;
    c = NULL;
out:
    lt_command_destroy(c);
    json_object_put(root);
    if (tok)
        json_tokener_free(tok);
    free(copy);
    return err;
}

void lt_command_destroy(lt_command_t *c)
{
    if (!c)
        return;
    free(c->command_id);
    free(c->tenant_id);
    free(c->account_id);
    free(c->scope);
    free(c->start_date);
    free(c->end_date);
    free(c->folder);
    free(c->requested_at);
    free(c->requested_by);
    free(c->traceparent);
    free(c);
}

/* ---- serialization ------------------------------------------------------ */

static void add_str(json_object *o, const char *k, const char *v)
{
    if (v)
        json_object_object_add(o, k, json_object_new_string(v));
}

static json_object *build_json(const lt_command_spec_t *spec, lt_sync_kind_t kind,
                               const lt_command_backfill_t *bf, const char *command_id,
                               const char *requested_at)
{
    json_object *o = json_object_new_object();
    add_str(o, "schema", LT_COMMAND_SCHEMA);
    add_str(o, "command_id", command_id);
    add_str(o, "tenant_id", spec->tenant_id);
    add_str(o, "account_id", spec->account_id);
    add_str(o, "provider", lt_provider_name(spec->provider));
    add_str(o, "kind", lt_sync_kind_name(kind));
    add_str(o, "scope", spec->scope);
    if (kind == LT_SYNC_BACKFILL && bf) {
        json_object *b = json_object_new_object();
        add_str(b, "start_date", bf->start_date);
        add_str(b, "end_date", bf->end_date);
        add_str(b, "folder", bf->folder);
        if (bf->start_uid)
            json_object_object_add(b, "start_uid", json_object_new_int64(bf->start_uid));
        if (bf->end_uid)
            json_object_object_add(b, "end_uid", json_object_new_int64(bf->end_uid));
        json_object_object_add(o, "backfill", b);
    }
    add_str(o, "requested_at", requested_at);
    add_str(o, "requested_by", spec->requested_by);
    add_str(o, "traceparent", spec->traceparent);
    return o;
}

lt_err_t lt_command_to_json(const lt_command_t *c, lt_buf_t *out)
{
    lt_command_spec_t spec = {
        .tenant_id = c->tenant_id,
        .account_id = c->account_id,
        .provider = c->provider,
        .scope = c->scope,
        .requested_by = c->requested_by,
        .traceparent = c->traceparent,
    };
    lt_command_backfill_t bf = {
        .start_date = c->start_date,
        .end_date = c->end_date,
        .folder = c->folder,
        .start_uid = c->start_uid,
        .end_uid = c->end_uid,
    };
    json_object *o = build_json(&spec, c->kind, &bf, c->command_id, c->requested_at);
    size_t n;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    lt_err_t err = lt_buf_append(out, s, n);
    json_object_put(o);
    return err;
}

static lt_err_t build(const lt_command_spec_t *spec, lt_sync_kind_t kind,
                      const lt_command_backfill_t *bf, lt_command_t **out, char *errstr,
                      size_t errstr_size)
{
    char id[64], at[32];
    *out = NULL;
    if (!spec)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "command: no spec");
    const char *command_id = spec->command_id;
    if (!command_id) {
        unsigned char r[16];
        if (RAND_bytes(r, sizeof(r)) != 1)
            return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                             "command: the random generator failed");
        memcpy(id, "cmd-", 4);
        for (size_t i = 0; i < sizeof(r); i++)
            snprintf(id + 4 + 2 * i, 3, "%02x", r[i]);
        command_id = id;
    }
    time_t when = spec->requested_at ? spec->requested_at : time(NULL);
    struct tm tm;
    if (!gmtime_r(&when, &tm) || !strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "requested_at: out of range");
    json_object *o = build_json(spec, kind, bf, command_id, at);
    size_t n;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    lt_err_t err = lt_command_parse(s, n, out, errstr, errstr_size);
    json_object_put(o);
    return err;
}

lt_err_t lt_command_new_incremental(const lt_command_spec_t *spec, lt_command_t **out, char *errstr,
                                    size_t errstr_size)
{
    return build(spec, LT_SYNC_INCREMENTAL, NULL, out, errstr, errstr_size);
}

/* Append `"key":"v"` (with a leading comma unless first): the field rules
 * leave only the quote and the backslash to escape (no control characters,
 * UTF-8 as is, "/" unescaped: json-c's output with NOSLASHESCAPE). */
static lt_err_t put_field(lt_buf_t *out, int first, const char *key, const char *v)
{
    lt_err_t err;
    if ((err = lt_buf_append(out, first ? "{\"" : ",\"", 2)) ||
        (err = lt_buf_append(out, key, strlen(key))) || (err = lt_buf_append(out, "\":\"", 3)))
        return err;
    const char *run = v;
    for (const char *p = v;; p++) {
        if (*p == '"' || *p == '\\' || !*p) {
            if ((err = lt_buf_append(out, run, (size_t)(p - run))))
                return err;
            if (!*p)
                break;
            if ((err = lt_buf_append(out, *p == '"' ? "\\\"" : "\\\\", 2)))
                return err;
            run = p + 1;
        }
    }
    return lt_buf_append(out, "\"", 1);
}

static lt_err_t required_str(const char *name, const char *s, str_kind_t kind, size_t max,
                             char *errstr, size_t errstr_size)
{
    if (!s)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s: missing required field", name);
    return check_str("", name, s, strlen(s), kind, max, errstr, errstr_size);
}

lt_err_t lt_command_write_incremental(const lt_command_spec_t *spec, lt_buf_t *out, char *id_out,
                                      size_t id_out_size, char *errstr, size_t errstr_size)
{
    char id[64], at[32];
    lt_err_t err;
    if (id_out && id_out_size)
        id_out[0] = 0;
    if (!spec)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "command: no spec");
    const char *command_id = spec->command_id;
    if (!command_id) {
        unsigned char r[16];
        static const char hex[] = "0123456789abcdef";
        if (RAND_bytes(r, sizeof(r)) != 1)
            return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                             "command: the random generator failed");
        memcpy(id, "cmd-", 4);
        for (size_t i = 0; i < sizeof(r); i++) {
            id[4 + 2 * i] = hex[r[i] >> 4];
            id[5 + 2 * i] = hex[r[i] & 15];
        }
        id[4 + 2 * sizeof(r)] = 0;
        command_id = id;
    }
    /* The checks of lt_command_parse, in its order. */
    if ((err = required_str("command_id", command_id, STR_ID, LT_COMMAND_ID_MAX, errstr,
                            errstr_size)) ||
        (err = required_str("tenant_id", spec->tenant_id, STR_ID, LT_COMMAND_ID_MAX, errstr,
                            errstr_size)) ||
        (err = required_str("account_id", spec->account_id, STR_ID, LT_COMMAND_ID_MAX, errstr,
                            errstr_size)))
        return err;
    const char *provider = lt_provider_name(spec->provider);
    if (!provider)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "provider: missing required field");
    const char *scope = spec->scope;
    if (scope) {
        if ((err = check_str("", "scope", scope, strlen(scope), STR_TEXT, LT_COMMAND_SCOPE_MAX,
                             errstr, errstr_size)))
            return err;
        if (spec->provider == LT_PROVIDER_IMAP)
            scope = lt_command_imap_mailbox(scope);
    }
    time_t when = spec->requested_at ? spec->requested_at : time(NULL), unused;
    struct tm tm;
    if (!gmtime_r(&when, &tm) || !strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm) ||
        !valid_timestamp(at, strlen(at), &unused))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "requested_at: out of range");
    if ((err = required_str("requested_by", spec->requested_by, STR_TEXT,
                            LT_COMMAND_REQUESTED_BY_MAX, errstr, errstr_size)))
        return err;
    if (spec->traceparent) {
        lt_trace_t t;
        char why[160];
        size_t n = strlen(spec->traceparent);
        if ((err = check_str("", "traceparent", spec->traceparent, n, STR_TEXT, 512, errstr,
                             errstr_size)))
            return err;
        if (lt_trace_parse(spec->traceparent, n, &t, why, sizeof(why)))
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s", why);
    }
    size_t start = lt_buf_len(out);
    if ((err = put_field(out, 1, "schema", LT_COMMAND_SCHEMA)) ||
        (err = put_field(out, 0, "command_id", command_id)) ||
        (err = put_field(out, 0, "tenant_id", spec->tenant_id)) ||
        (err = put_field(out, 0, "account_id", spec->account_id)) ||
        (err = put_field(out, 0, "provider", provider)) ||
        (err = put_field(out, 0, "kind", "incremental")) ||
        (scope && (err = put_field(out, 0, "scope", scope))) ||
        (err = put_field(out, 0, "requested_at", at)) ||
        (err = put_field(out, 0, "requested_by", spec->requested_by)) ||
        (spec->traceparent && (err = put_field(out, 0, "traceparent", spec->traceparent))) ||
        (err = lt_buf_append(out, "}", 1)) ||
        (lt_buf_len(out) - start > LT_COMMAND_MAX_SIZE && (err = LT_ERR_TOO_BIG))) {
        lt_buf_truncate(out, start);
        return lt_seterr(errstr, errstr_size, err, "command: the output buffer is full");
    }
    if (id_out && id_out_size)
        snprintf(id_out, id_out_size, "%s", command_id);
    return LT_OK;
}

lt_err_t lt_command_new_backfill(const lt_command_spec_t *spec, const lt_command_backfill_t *bf,
                                 lt_command_t **out, char *errstr, size_t errstr_size)
{
    if (!bf) {
        *out = NULL;
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "backfill: missing required field (kind is backfill)");
    }
    return build(spec, LT_SYNC_BACKFILL, bf, out, errstr, errstr_size);
}

lt_err_t lt_command_check_key(const lt_command_t *c, const void *key, size_t keylen, char *errstr,
                              size_t errstr_size)
{
    char k[64];
    if (!key || keylen == 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "message key: missing (must be the account_id \"%s\")", c->account_id);
    if (keylen != strlen(c->account_id) || memcmp(key, c->account_id, keylen))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "message key: \"%s\" is not the account_id \"%s\"",
                         printable(key, keylen, k, sizeof(k)), c->account_id);
    return LT_OK;
}

/* ---- getters ------------------------------------------------------------ */

const char *lt_command_id(const lt_command_t *c)
{
    return c->command_id;
}
const char *lt_command_tenant_id(const lt_command_t *c)
{
    return c->tenant_id;
}
const char *lt_command_account_id(const lt_command_t *c)
{
    return c->account_id;
}
lt_provider_t lt_command_provider(const lt_command_t *c)
{
    return c->provider;
}
lt_sync_kind_t lt_command_kind(const lt_command_t *c)
{
    return c->kind;
}
const char *lt_command_imap_mailbox(const char *name)
{
    static const char inbox[] = "INBOX";
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(inbox); i++) { /* ASCII only, no locale */
        char c = name[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != inbox[i])
            return name;
    }
    return inbox;
}

const char *lt_command_scope(const lt_command_t *c)
{
    return c->scope;
}
const char *lt_command_requested_at(const lt_command_t *c)
{
    return c->requested_at;
}
time_t lt_command_requested_at_unix(const lt_command_t *c)
{
    return c->requested_at_unix;
}
const char *lt_command_requested_by(const lt_command_t *c)
{
    return c->requested_by;
}
const char *lt_command_traceparent(const lt_command_t *c)
{
    return c->traceparent;
}
const char *lt_command_backfill_start_date(const lt_command_t *c)
{
    return c->start_date;
}
const char *lt_command_backfill_end_date(const lt_command_t *c)
{
    return c->end_date;
}
const char *lt_command_backfill_folder(const lt_command_t *c)
{
    return c->folder;
}
uint32_t lt_command_backfill_start_uid(const lt_command_t *c)
{
    return c->start_uid;
}
uint32_t lt_command_backfill_end_uid(const lt_command_t *c)
{
    return c->end_uid;
}
