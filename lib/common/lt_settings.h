/* lt_settings: the one table of settings (see lt_config.h) and the typed
 * struct it fills.
 *
 * Every row of the table (lt_settings.c) names its field of lt_settings_t
 * (LT_SET_FIELD_*: the field's type must match the row's type, or the
 * table does not compile). lt_config_load() reads, validates and stores
 * every row of one program once, at start; the program then reads fields:
 * a misspelled name is a compile error, not an abort when the line runs.
 * Fields of rows that are not the program's stay zero (NULL, 0, false).
 *
 * Strings (and enums) are NULL when unset with no default. */
#ifndef LT_SETTINGS_H
#define LT_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    struct {
        const char *level;  /* LATTICE_LOG_LEVEL */
        const char *format; /* LATTICE_LOG_FORMAT */
    } log;
    struct {
        int port;               /* LATTICE_METRICS_PORT; 0 = no endpoint */
        const char *bind;       /* LATTICE_METRICS_BIND */
        int account_series_max; /* LATTICE_METRICS_ACCOUNT_SERIES_MAX */
    } metrics;
    /* LATTICE_KAFKA_* rows: read by lt_config_kafka_props() (all of them,
     * table or not); here for completeness. */
    struct {
        const char *bootstrap_servers;
        const char *security_protocol;
        const char *sasl_mechanisms;
        const char *sasl_username;
        const char *sasl_password;
        const char *ssl_ca_location;
    } kafka;
    struct {
        const char *commands;    /* LATTICE_TOPIC_COMMANDS */
        const char *raw;         /* LATTICE_TOPIC_RAW */
        const char *changes;     /* LATTICE_TOPIC_CHANGES */
        const char *dlq;         /* LATTICE_TOPIC_DLQ */
        const char *status;      /* LATTICE_TOPIC_STATUS */
        const char *checkpoints; /* LATTICE_TOPIC_CHECKPOINTS */
    } topic;
    struct {
        const char *group_id;                /* LATTICE_WORKER_GROUP_ID */
        const char *id;                      /* LATTICE_WORKER_ID */
        const char *transactional_id_prefix; /* LATTICE_WORKER_TRANSACTIONAL_ID_PREFIX */
        int progress_interval_s;             /* LATTICE_WORKER_PROGRESS_INTERVAL_S */
        int concurrency;                     /* LATTICE_WORKER_CONCURRENCY */
        int batch_messages;                  /* LATTICE_WORKER_BATCH_MESSAGES */
        int s3_parallel;                     /* LATTICE_WORKER_S3_PARALLEL */
        int s3_parallel_max;                 /* LATTICE_WORKER_S3_PARALLEL_MAX */
        const char *attachments;             /* LATTICE_ATTACHMENTS */
        bool track_changes;                  /* LATTICE_WORKER_TRACK_CHANGES */
        int imap_flags_scan_interval_s;      /* LATTICE_IMAP_FLAGS_SCAN_INTERVAL_S */
        int max_attempts;                    /* LATTICE_WORKER_MAX_ATTEMPTS */
        int retry_base_ms;                   /* LATTICE_WORKER_RETRY_BASE_MS */
        int retry_max_ms;                    /* LATTICE_WORKER_RETRY_MAX_MS */
        int retry_window_s;                  /* LATTICE_WORKER_RETRY_WINDOW_S */
        int drain_timeout_s;                 /* LATTICE_WORKER_DRAIN_TIMEOUT_S */
        int shutdown_timeout_s;              /* LATTICE_WORKER_SHUTDOWN_TIMEOUT_S */
        int group_check_s;                   /* LATTICE_WORKER_GROUP_CHECK_S */
        int queue_max;                       /* LATTICE_WORKER_QUEUE_MAX */
        int lock_timeout_s;                  /* LATTICE_WORKER_LOCK_TIMEOUT_S */
        int64_t max_message_bytes;           /* LATTICE_MAX_MESSAGE_BYTES */
        int event_max_bytes;                 /* LATTICE_EVENT_MAX_BYTES */
        const char *tmp_dir;                 /* LATTICE_TMP_DIR */
        const char *secrets_dir;             /* LATTICE_SECRETS_DIR */
    } worker;
    const char *tls_ca_file; /* LATTICE_TLS_CA_FILE (IMAP and Gmail) */
    struct {
        const char *provider; /* LATTICE_SCHEDULER_PROVIDER */
        const char *tenant;   /* LATTICE_SCHEDULER_TENANT */
        int interval_s;       /* LATTICE_SCHEDULER_INTERVAL_S */
        int stale_after_s;    /* LATTICE_SCHEDULER_STALE_AFTER_S */
        bool per_scope;       /* LATTICE_SCHEDULER_PER_SCOPE */
        int flush_timeout_s;  /* LATTICE_SCHEDULER_FLUSH_TIMEOUT_S */
    } scheduler;
    struct { /* LATTICE_WATCHER_* (watcher/) */
        const char *tenant; /* LATTICE_WATCHER_TENANT */
        const char *group_id;
        int session_timeout_ms;
        int debounce_ms;
        int idle_reissue_s;
        int response_timeout_s;
        int poll_interval_s;
        int backoff_max_s;
        int reload_s;
        int stale_after_s;
        int max_connections;
        int connect_concurrency;
    } watcher;
    struct { /* LATTICE_SEED_* (tools/lattice-seed) */
        const char *tenant;
        const char *imap_account;
        const char *imap_host;
        int imap_port;
        const char *imap_username;
        const char *imap_password_env;
        const char *imap_password_path;
        const char *imap_folders;
        const char *gmail_account;
        const char *gmail_user;
        const char *gmail_label_ids;
        const char *gmail_client_id;
        const char *gmail_client_secret_env;
        const char *gmail_client_secret_path;
        const char *gmail_refresh_token_env;
        const char *gmail_refresh_token_path;
    } seed;
    struct { /* LATTICE_PARSER_* */
        const char *group_id;
        const char *dlq_topic;
        int batch_messages;
        int batch_wait_ms;
        int concurrency;
        int max_body_bytes;
        int64_t max_message_bytes;
        int retry_base_ms;
        int64_t pending_retention_s;
    } parser;
    struct { /* LATTICE_GMAIL_* */
        const char *api_url;
        const char *token_url;
        int max_inflight;
        int quota_units_per_s;         /* deprecated: 0 unless set */
        int user_units_per_min;        /* LATTICE_GMAIL_USER_UNITS_PER_MIN */
        int project_units_per_min;     /* LATTICE_GMAIL_PROJECT_UNITS_PER_MIN; 0: not paced */
        int64_t project_units_per_day; /* LATTICE_GMAIL_PROJECT_UNITS_PER_DAY */
        int day_alert_percent;         /* LATTICE_GMAIL_PROJECT_DAY_ALERT_PERCENT */
        bool day_hard_stop;            /* LATTICE_GMAIL_PROJECT_DAY_HARD_STOP */
        int timeout_s;
        int max_retries;
        int retry_base_ms;
    } gmail;
    struct { /* LATTICE_WATCHER_GMAIL_* (docs/gmail-push.md) */
        const char *topic;                /* LATTICE_WATCHER_GMAIL_TOPIC */
        int renew_s;                      /* LATTICE_WATCHER_GMAIL_RENEW_S */
        const char *push_bind;            /* LATTICE_WATCHER_GMAIL_PUSH_BIND */
        int push_port;                    /* LATTICE_WATCHER_GMAIL_PUSH_PORT */
        const char *push_path;            /* LATTICE_WATCHER_GMAIL_PUSH_PATH */
        const char *push_keys_file;       /* LATTICE_WATCHER_GMAIL_PUSH_KEYS_FILE */
        const char *push_audience;        /* LATTICE_WATCHER_GMAIL_PUSH_AUDIENCE */
        const char *push_service_account; /* LATTICE_WATCHER_GMAIL_PUSH_SERVICE_ACCOUNT */
        const char *push_token;           /* LATTICE_WATCHER_GMAIL_PUSH_TOKEN (secret) */
    } watcher_gmail;
    struct { /* LATTICE_SCHEMA_REGISTRY_* */
        const char *url;
        const char *username;
        const char *password;
    } registry;
    struct {
        const char *dsn;            /* LATTICE_PG_DSN */
        const char *password;       /* LATTICE_PG_PASSWORD */
        const char *migrations_dir; /* LATTICE_MIGRATIONS_DIR */
    } pg;
    struct { /* LATTICE_S3_* */
        const char *endpoint;
        const char *region;
        const char *bucket;
        bool path_style;
        const char *access_key_id;
        const char *secret_access_key;
        const char *ca_file;
        int timeout_s;
        int low_speed_time_s; /* 0: no stall detection */
        int low_speed_bytes;
    } s3;
} lt_settings_t;

typedef enum {
    LT_SET_STRING, /* const char * */
    LT_SET_INT,    /* int (min and max within int) */
    LT_SET_INT64,  /* int64_t */
    LT_SET_BOOL,   /* bool */
    LT_SET_ENUM,   /* const char *, one of `choices` ('|' separated) */
} lt_setting_type_t;

/* One row: an environment variable bound to a field of lt_settings_t. */
typedef struct {
    const char *env;
    lt_setting_type_t type;
    size_t offset;       /* of the field in lt_settings_t */
    const char *def;     /* default, NULL = none */
    unsigned programs;   /* LT_PROG_* mask */
    bool secret;         /* never printed; may come from NAME_FILE */
    bool required;       /* must be set (or have a default) */
    long long min, max;  /* LT_SET_INT, LT_SET_INT64 bounds */
    const char *choices; /* LT_SET_ENUM */
    const char *group;   /* heading in --help and .env.example */
    const char *desc;
} lt_setting_t;

/* `.type` and `.offset` of a row bound to field F of lt_settings_t; a
 * field of another type is a compile error (no _Generic association). */
#define LT_SET_OFFSET_(F, T) _Generic(((lt_settings_t *)0)->F, T : offsetof(lt_settings_t, F))
#define LT_SET_FIELD_STRING(F) .type = LT_SET_STRING, .offset = LT_SET_OFFSET_(F, const char *)
#define LT_SET_FIELD_ENUM(F) .type = LT_SET_ENUM, .offset = LT_SET_OFFSET_(F, const char *)
#define LT_SET_FIELD_INT(F) .type = LT_SET_INT, .offset = LT_SET_OFFSET_(F, int)
#define LT_SET_FIELD_INT64(F) .type = LT_SET_INT64, .offset = LT_SET_OFFSET_(F, int64_t)
#define LT_SET_FIELD_BOOL(F) .type = LT_SET_BOOL, .offset = LT_SET_OFFSET_(F, bool)

const lt_setting_t *lt_settings_table(size_t *count);

#endif
