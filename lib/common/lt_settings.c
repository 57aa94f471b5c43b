/* The one table of settings. Add a row here and it is validated, shown in
 * --help and written to .env.example (`make env-example`; a test checks the
 * committed file is current). Defaults point at the local stack
 * (deploy/local/stack). */
#include "lt_settings.h"

#include "lt_config.h"

#define W LT_PROG_WORKER
#define S LT_PROG_SCHEDULER
#define P LT_PROG_PARSER
#define T LT_PROG_TOOLS
#define ALL LT_PROG_ALL

static const lt_setting_t k_settings[] = {
    /* --- logging --- */
    {"LATTICE_LOG_LEVEL", LT_SET_ENUM, "info", ALL, 0, 0, 0, 0, "debug|info|warn|error", "Logging",
     "Lowest level that is logged."},
    {"LATTICE_LOG_FORMAT", LT_SET_ENUM, "json", ALL, 0, 0, 0, 0, "json|text", "Logging",
     "json: one JSON object per line (for log pipelines); text: for people."},

    /* --- observability (docs/observability.md) --- */
    {"LATTICE_METRICS_PORT", LT_SET_INT, "0", W | S | P, 0, 0, 0, 65535, NULL, "Observability",
     "Port of the HTTP endpoint with /metrics (Prometheus), /healthz and /readyz; 0 = no "
     "endpoint (Kubernetes: 9464). A port in use stops the program at start."},
    {"LATTICE_METRICS_BIND", LT_SET_STRING, "0.0.0.0", W | S | P, 0, 1, 0, 0, NULL,
     "Observability", "Address the metrics endpoint listens on (127.0.0.1: this host only)."},
    {"LATTICE_METRICS_ACCOUNT_SERIES_MAX", LT_SET_INT, "1000", W, 0, 0, 0, 1000000, NULL,
     "Observability",
     "Most per-account series (last success timestamp) one worker exports; beyond it the least "
     "recently updated account is dropped. 0 = no per-account series."},
    {"LATTICE_WORKER_PROGRESS_INTERVAL_S", LT_SET_INT, "5", W, 0, 0, 1, 3600, NULL,
     "Observability",
     "How often a long command (backfill, first full sync) reports progress (done/total, rate, "
     "ETA): a log line, the progress gauges and a \"running\" status event."},

    /* --- Kafka (every LATTICE_KAFKA_* is passed to librdkafka) --- */
    {"LATTICE_KAFKA_BOOTSTRAP_SERVERS", LT_SET_STRING, "127.0.0.1:19092", W | S | P | T, 0, 1, 0,
     0, NULL, "Kafka",
     "librdkafka bootstrap.servers. Any LATTICE_KAFKA_<X> is passed through as property <x> "
     "('_' -> '.') to the program's clients that read it (consumer- or producer-only "
     "properties go to that kind only)."},
    {"LATTICE_KAFKA_SECURITY_PROTOCOL", LT_SET_STRING, NULL, W | S | P | T, 0, 0, 0, 0, NULL,
     "Kafka", "security.protocol: plaintext locally; SASL_SSL for Confluent Cloud."},
    {"LATTICE_KAFKA_SASL_MECHANISMS", LT_SET_STRING, NULL, W | S | P | T, 0, 0, 0, 0, NULL, "Kafka",
     "sasl.mechanisms: PLAIN for Confluent Cloud API keys."},
    {"LATTICE_KAFKA_SASL_USERNAME", LT_SET_STRING, NULL, W | S | P | T, 0, 0, 0, 0, NULL, "Kafka",
     "sasl.username: the Confluent Cloud API key."},
    {"LATTICE_KAFKA_SASL_PASSWORD", LT_SET_STRING, NULL, W | S | P | T, 1, 0, 0, 0, NULL, "Kafka",
     "sasl.password: the Confluent Cloud API secret (or LATTICE_KAFKA_SASL_PASSWORD_FILE)."},
    {"LATTICE_KAFKA_SSL_CA_LOCATION", LT_SET_STRING, NULL, W | S | P | T, 0, 0, 0, 0, NULL, "Kafka",
     "ssl.ca.location: CA bundle for the brokers (system store when unset)."},
    {"LATTICE_TOPIC_COMMANDS", LT_SET_STRING, "lattice.mail.sync.cmd.v1", W | S | T, 0, 1, 0, 0,
     NULL, "Kafka", "Topic of sync commands (JSON, keyed by account_id)."},
    {"LATTICE_TOPIC_RAW", LT_SET_STRING, "lattice.mail.raw.v1", W | P | T, 0, 1, 0, 0, NULL, "Kafka",
     "Topic of mail.raw.v1 events (Avro, Confluent wire format)."},
    {"LATTICE_TOPIC_DLQ", LT_SET_STRING, "lattice.mail.sync.cmd.dlq.v1", W | T, 0, 1, 0, 0, NULL,
     "Kafka", "Dead-letter topic for commands that can never run."},
    {"LATTICE_TOPIC_STATUS", LT_SET_STRING, "lattice.mail.sync.status.v1", W | S | T, 0, 1, 0, 0,
     NULL, "Kafka", "Topic of command results (JSON)."},

    {"LATTICE_TOPIC_CHECKPOINTS", LT_SET_STRING, "lattice.mail.sync.checkpoints.v1", W | T, 0, 1, 0,
     0, NULL, "Kafka",
     "Compacted topic of batch markers (the delivery protocol's commit record)."},

    /* --- worker --- */
    {"LATTICE_WORKER_GROUP_ID", LT_SET_STRING, "lattice-mail-worker", W, 0, 1, 0, 0, NULL, "Worker",
     "Kafka consumer group of the worker pool."},
    {"LATTICE_WORKER_ID", LT_SET_STRING, NULL, W, 0, 0, 0, 0, NULL, "Worker",
     "Stable name of this worker (default: the host name, i.e. the pod name). Part of the "
     "transactional.id: a restarted worker with the same id fences its predecessor's open "
     "transaction at once. Two workers must never share one."},
    {"LATTICE_WORKER_TRANSACTIONAL_ID_PREFIX", LT_SET_STRING, "lattice-worker", W, 0, 1, 0, 0, NULL,
     "Worker", "Prefix of the transactional.id of each slot: <prefix>-<worker id>-<slot>."},
    {"LATTICE_WORKER_CONCURRENCY", LT_SET_INT, "4", W, 0, 0, 1, 256, NULL, "Worker",
     "Commands run at once in one process (different accounts only)."},
    {"LATTICE_WORKER_BATCH_MESSAGES", LT_SET_INT, "200", W, 0, 0, 1, 100000, NULL, "Worker",
     "Messages per Kafka transaction (one watermark step)."},
    {"LATTICE_WORKER_S3_PARALLEL", LT_SET_INT, "8", W, 0, 0, 1, 64, NULL, "Worker",
     "Objects stored in S3 at once per command (one connection each) while the next messages "
     "are read; events still follow their objects, in message order. 1: one at a time."},
    {"LATTICE_WORKER_MAX_ATTEMPTS", LT_SET_INT, "5", W, 0, 0, 1, 100, NULL, "Worker",
     "Attempts of a command failing temporarily (exponential backoff) before it is reported "
     "failed. Counted across worker restarts (the command's row): a command started this many "
     "times that never finished (its worker was killed each time) is dead-lettered."},
    {"LATTICE_WORKER_RETRY_BASE_MS", LT_SET_INT, "1000", W, 0, 0, 1, 600000, NULL, "Worker",
     "First retry delay; doubles per attempt, with jitter, capped at 5 minutes."},
    {"LATTICE_WORKER_DRAIN_TIMEOUT_S", LT_SET_INT, "25", W, 0, 0, 1, 3600, NULL, "Worker",
     "On SIGTERM or a revoked partition: how long running commands may finish before they are "
     "abandoned at their next message (nothing uncommitted is lost; it is redone)."},
    {"LATTICE_WORKER_QUEUE_MAX", LT_SET_INT, "10000", W, 0, 0, 1, 10000000, NULL, "Worker",
     "Commands held in memory (taken from Kafka, waiting for a slot, their account or a "
     "backoff) before the worker pauses fetching its partitions; it resumes when half of them "
     "have been taken. Still polled while paused, so it stays in the consumer group."},
    {"LATTICE_WORKER_LOCK_TIMEOUT_S", LT_SET_INT, "30", W, 0, 0, 1, 3600, NULL, "Worker",
     "How long a command waits for its account's lock (held by another worker) before retrying "
     "later."},
    {"LATTICE_MAX_MESSAGE_BYTES", LT_SET_INT, "67108864", W, 0, 0, 1024, 5368709120LL, NULL,
     "Worker", "Largest message ingested; larger ones are reported (skipped count and UIDs/ids in "
     "the command result), never silently dropped."},
    {"LATTICE_EVENT_MAX_BYTES", LT_SET_INT, "900000", W, 0, 0, 65536, 4194304, NULL, "Worker",
     "Largest mail.raw.v1 event (Kafka record value). A message whose event would be larger "
     "(e.g. thousands of attachments) keeps the first manifest entries inline and its whole "
     "manifest as an object the event references. Keep it below the producer's and the "
     "broker's message.max.bytes (1000000 by default)."},
    {"LATTICE_TMP_DIR", LT_SET_STRING, "/tmp", W, 0, 1, 0, 0, NULL, "Worker",
     "Where messages larger than 8 MiB are spooled while they are stored."},
    {"LATTICE_SECRETS_DIR", LT_SET_STRING, NULL, W, 0, 0, 0, 0, NULL, "Worker",
     "Directory of the account secrets that config_json names by file (password_file, "
     "*_file): a name resolves only to <dir>/<tenant id>/<name>, never outside it (no "
     "absolute path, no '..', no link out). Empty: file references are refused. Variables "
     "(*_env) must be named LTS_<tenant>__<NAME> (docs/operations.md, \"Account secrets\")."},
    {"LATTICE_TLS_CA_FILE", LT_SET_STRING, NULL, W | P | T, 0, 0, 0, 0, NULL, "Worker",
     "CA bundle for IMAP and Gmail TLS (system store when unset). Certificates are always "
     "verified."},

    /* --- scheduler --- */
    {"LATTICE_SCHEDULER_PROVIDER", LT_SET_ENUM, NULL, S, 0, 0, 0, 0, "gmail|imap", "Scheduler",
     "Only accounts of this provider (--provider overrides); unset: all."},
    {"LATTICE_SCHEDULER_TENANT", LT_SET_STRING, NULL, S, 0, 0, 0, 0, NULL, "Scheduler",
     "Only accounts of this tenant (--tenant overrides); unset: all."},
    {"LATTICE_SCHEDULER_INTERVAL_S", LT_SET_INT, "0", S, 0, 0, 0, 604800, NULL, "Scheduler",
     "Without --once or --interval: run every N seconds; 0 = run once and exit."},
    {"LATTICE_SCHEDULER_STALE_AFTER_S", LT_SET_INT, "900", S, 0, 0, 1, 604800, NULL, "Scheduler",
     "An account whose last command is still in flight (issued and not started, or running "
     "with a heartbeat) newer than this gets no new command; an older one counts as lost and "
     "the account gets a new command."},
    {"LATTICE_SCHEDULER_PER_SCOPE", LT_SET_BOOL, "true", S, 0, 0, 0, 0, NULL, "Scheduler",
     "true: one command per configured scope (IMAP folders, Gmail label_ids); false: one per "
     "account (the worker syncs every configured scope)."},
    {"LATTICE_SCHEDULER_FLUSH_TIMEOUT_S", LT_SET_INT, "60", S, 0, 0, 1, 3600, NULL, "Scheduler",
     "How long a run waits for Kafka to acknowledge its commands; the rest count as errors and "
     "are issued again by the next run."},

    /* --- seed (tools/lattice-seed: the local "personal" tenant) --- */
    {"LATTICE_SEED_TENANT", LT_SET_STRING, "personal", T, 0, 1, 0, 0, NULL, "Seed",
     "Tenant that lattice-seed creates or updates."},
    {"LATTICE_SEED_IMAP_ACCOUNT", LT_SET_STRING, "workmail-imap", T, 0, 1, 0, 0, NULL, "Seed",
     "Account id of the seeded IMAP (WorkMail) account."},
    {"LATTICE_SEED_IMAP_HOST", LT_SET_STRING, "127.0.0.1", T, 0, 1, 0, 0, NULL, "Seed",
     "IMAPS host (WorkMail: imap.mail.<region>.awsapps.com; local: the stack's Dovecot)."},
    {"LATTICE_SEED_IMAP_PORT", LT_SET_INT, "19993", T, 0, 0, 1, 65535, NULL, "Seed",
     "IMAPS port (WorkMail: 993)."},
    {"LATTICE_SEED_IMAP_USERNAME", LT_SET_STRING, "alice@example.test", T, 0, 1, 0, 0, NULL, "Seed",
     "IMAP login."},
    {"LATTICE_SEED_IMAP_PASSWORD_ENV", LT_SET_STRING, "IMAP_PASSWORD", T, 0, 0, 0, 0, NULL, "Seed",
     "NAME of the IMAP password's variable: the worker reads LTS_<tenant>__NAME (stored as "
     "password_env; the password itself is never read or stored)."},
    {"LATTICE_SEED_IMAP_PASSWORD_PATH", LT_SET_STRING, NULL, T, 0, 0, 0, 0, NULL, "Seed",
     "Name of a file under the worker's LATTICE_SECRETS_DIR/<tenant>/ holding the IMAP password "
     "(stored as password_file, instead of password_env)."},
    {"LATTICE_SEED_IMAP_FOLDERS", LT_SET_STRING, "INBOX", T, 0, 1, 0, 0, NULL, "Seed",
     "Folders to sync, comma-separated."},
    {"LATTICE_SEED_GMAIL_ACCOUNT", LT_SET_STRING, "personal-gmail", T, 0, 1, 0, 0, NULL, "Seed",
     "Account id of the seeded Gmail account."},
    {"LATTICE_SEED_GMAIL_USER", LT_SET_STRING, "me", T, 0, 1, 0, 0, NULL, "Seed",
     "Gmail userId (\"me\" = the account the refresh token belongs to)."},
    {"LATTICE_SEED_GMAIL_LABEL_IDS", LT_SET_STRING, "INBOX", T, 0, 1, 0, 0, NULL, "Seed",
     "Gmail label ids to sync, comma-separated."},
    {"LATTICE_SEED_GMAIL_CLIENT_ID", LT_SET_STRING, "lattice-local", T, 0, 1, 0, 0, NULL, "Seed",
     "OAuth client id (not a secret)."},
    {"LATTICE_SEED_GMAIL_CLIENT_SECRET_ENV", LT_SET_STRING, "GMAIL_CLIENT_SECRET", T, 0, 0, 0, 0,
     NULL, "Seed",
     "NAME of the OAuth client secret's variable: the worker reads LTS_<tenant>__NAME."},
    {"LATTICE_SEED_GMAIL_CLIENT_SECRET_PATH", LT_SET_STRING, NULL, T, 0, 0, 0, 0, NULL, "Seed",
     "Name of a file under the worker's LATTICE_SECRETS_DIR/<tenant>/ holding the client "
     "secret (instead of the variable)."},
    {"LATTICE_SEED_GMAIL_REFRESH_TOKEN_ENV", LT_SET_STRING, "GMAIL_REFRESH_TOKEN", T, 0, 0, 0, 0,
     NULL, "Seed",
     "NAME of the OAuth refresh token's variable: the worker reads LTS_<tenant>__NAME."},
    {"LATTICE_SEED_GMAIL_REFRESH_TOKEN_PATH", LT_SET_STRING, NULL, T, 0, 0, 0, 0, NULL, "Seed",
     "Name of a file under the worker's LATTICE_SECRETS_DIR/<tenant>/ holding the refresh "
     "token (instead of the variable)."},

    /* --- parser --- */
    {"LATTICE_PARSER_GROUP_ID", LT_SET_STRING, "lattice-mail-parser", P, 0, 1, 0, 0, NULL, "Parser",
     "Kafka consumer group of lattice-mail-parser on LATTICE_TOPIC_RAW (reset its offsets to "
     "parse again: rows are upserted)."},
    {"LATTICE_PARSER_DLQ_TOPIC", LT_SET_STRING, "lattice.mail.parser.dlq.v1", P | T, 0, 1, 0, 0,
     NULL, "Parser",
     "Dead-letter topic for raw events the parser cannot store (undecodable): the original "
     "record with lattice.dlq.* reason headers."},
    {"LATTICE_PARSER_BATCH_MESSAGES", LT_SET_INT, "500", P, 0, 0, 1, 10000, NULL, "Parser",
     "Events per batch: upserted in one Postgres transaction, then their offsets committed."},
    {"LATTICE_PARSER_BATCH_WAIT_MS", LT_SET_INT, "200", P, 0, 0, 0, 60000, NULL, "Parser",
     "How long a batch waits to fill before it is written anyway."},
    {"LATTICE_PARSER_CONCURRENCY", LT_SET_INT, "4", P, 0, 0, 1, 64, NULL, "Parser",
     "Threads fetching (S3) and parsing the messages of a batch."},
    {"LATTICE_PARSER_MAX_BODY_BYTES", LT_SET_INT, "262144", P, 0, 0, 1024, 524288, NULL, "Parser",
     "Text body bytes stored per message (UTF-8, cut at a character; body_truncated marks a "
     "cut body)."},
    {"LATTICE_PARSER_MAX_MESSAGE_BYTES", LT_SET_INT, "67108864", P, 0, 0, 1024, 1073741824LL, NULL,
     "Parser",
     "Largest raw message fetched and parsed; a larger one gets a row with parse_error "
     "(too_big)."},
    {"LATTICE_PARSER_RETRY_BASE_MS", LT_SET_INT, "1000", P, 0, 0, 1, 600000, NULL, "Parser",
     "First wait after a temporary failure (Postgres, S3 or registry unreachable); doubles, "
     "capped at 30 s; the batch is then read and written again."},

    /* --- Gmail (docs/gmail.md) --- */
    {"LATTICE_GMAIL_API_URL", LT_SET_STRING, "https://gmail.googleapis.com", W | T, 0, 1, 0, 0,
     NULL, "Gmail", "Base URL of the Gmail API (the emulator: https://127.0.0.1:18443)."},
    {"LATTICE_GMAIL_TOKEN_URL", LT_SET_STRING, "https://oauth2.googleapis.com/token", W | T, 0, 1,
     0, 0, NULL, "Gmail", "Google's OAuth 2.0 token endpoint (refresh-token grant)."},
    {"LATTICE_GMAIL_MAX_INFLIGHT", LT_SET_INT, "8", W | T, 0, 0, 1, 100, NULL, "Gmail",
     "Concurrent Gmail API requests per account (HTTP/2 streams or keep-alive connections). "
     "Gmail limits concurrent requests per user; 8 reaches the quota at 50 ms latency."},
    {"LATTICE_GMAIL_QUOTA_UNITS_PER_S", LT_SET_INT, "250", W | T, 0, 0, 1, 1000000, NULL, "Gmail",
     "Per-user quota the client paces itself to (Google: 250 units/s; messages.get costs 5, "
     "history.list 2, getProfile 1)."},
    {"LATTICE_GMAIL_TIMEOUT_S", LT_SET_INT, "120", W | T, 0, 0, 1, 3600, NULL, "Gmail",
     "Timeout of one Gmail API or token request, seconds."},
    {"LATTICE_GMAIL_MAX_RETRIES", LT_SET_INT, "8", W | T, 0, 0, 0, 100, NULL, "Gmail",
     "Retries of one request on 429, 403 rate limit, 5xx, network errors and malformed bodies "
     "(exponential backoff with jitter, at least Retry-After) before the command fails "
     "temporarily."},
    {"LATTICE_GMAIL_RETRY_BASE_MS", LT_SET_INT, "1000", W | T, 0, 0, 1, 600000, NULL, "Gmail",
     "First retry delay of a Gmail request; doubles per retry, capped at 64 s."},

    /* --- schema registry --- */
    {"LATTICE_SCHEMA_REGISTRY_URL", LT_SET_STRING, "http://127.0.0.1:18080/apis/ccompat/v7",
     W | P | T, 0, 1, 0, 0, NULL, "Schema registry",
     "Base URL of a Confluent-compatible schema registry."},
    {"LATTICE_SCHEMA_REGISTRY_USERNAME", LT_SET_STRING, NULL, W | P | T, 0, 0, 0, 0, NULL,
     "Schema registry", "Basic-auth user (Confluent Cloud: the Schema Registry API key)."},
    {"LATTICE_SCHEMA_REGISTRY_PASSWORD", LT_SET_STRING, NULL, W | P | T, 1, 0, 0, 0, NULL,
     "Schema registry", "Basic-auth password (or LATTICE_SCHEMA_REGISTRY_PASSWORD_FILE)."},

    /* --- Postgres --- */
    {"LATTICE_PG_DSN", LT_SET_STRING, "host=127.0.0.1 port=15432 dbname=lattice user=lattice",
     W | S | P | T, 0, 1, 0, 0, NULL, "Postgres",
     "libpq connection string without the password."},
    {"LATTICE_PG_PASSWORD", LT_SET_STRING, NULL, W | S | P | T, 1, 0, 0, 0, NULL, "Postgres",
     "Postgres password (or LATTICE_PG_PASSWORD_FILE)."},
    {"LATTICE_MIGRATIONS_DIR", LT_SET_STRING, "./migrations", T, 0, 1, 0, 0, NULL, "Postgres",
     "Directory of the numbered NNNN_name.sql files lattice-migrate applies (--dir overrides)."},

    /* --- object storage --- */
    {"LATTICE_S3_ENDPOINT", LT_SET_STRING, "http://127.0.0.1:19000", W | P | T, 0, 1, 0, 0, NULL,
     "Object storage", "S3-compatible endpoint (https://s3.<region>.amazonaws.com for AWS)."},
    {"LATTICE_S3_REGION", LT_SET_STRING, "us-east-1", W | P | T, 0, 1, 0, 0, NULL,
     "Object storage", "Region used in the SigV4 signature."},
    {"LATTICE_S3_BUCKET", LT_SET_STRING, "lattice-mail", W | P | T, 0, 1, 0, 0, NULL,
     "Object storage", "Bucket for raw messages and attachments."},
    {"LATTICE_S3_PATH_STYLE", LT_SET_BOOL, "true", W | P | T, 0, 0, 0, 0, NULL, "Object storage",
     "true: https://endpoint/bucket/key (MinIO); false: virtual-hosted https://bucket.endpoint/key."},
    {"LATTICE_S3_ACCESS_KEY_ID", LT_SET_STRING, NULL, W | P | T, 1, 0, 0, 0, NULL,
     "Object storage", "Access key id (or LATTICE_S3_ACCESS_KEY_ID_FILE)."},
    {"LATTICE_S3_SECRET_ACCESS_KEY", LT_SET_STRING, NULL, W | P | T, 1, 0, 0, 0, NULL,
     "Object storage", "Secret access key (or LATTICE_S3_SECRET_ACCESS_KEY_FILE)."},
    {"LATTICE_S3_CA_FILE", LT_SET_STRING, NULL, W | P | T, 0, 0, 0, 0, NULL, "Object storage",
     "CA bundle for an https endpoint (system store when unset)."},
    {"LATTICE_S3_TIMEOUT_S", LT_SET_INT, "120", W | P | T, 0, 0, 1, 3600, NULL, "Object storage",
     "Timeout of one object request, seconds."},
};

const lt_setting_t *lt_settings_table(size_t *count)
{
    *count = sizeof(k_settings) / sizeof(k_settings[0]);
    return k_settings;
}
