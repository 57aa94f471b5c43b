#!/usr/bin/env bash
# lattice-seed against the stack's Postgres, in a throwaway schema (so the
# shared "personal" tenant is left alone): the two accounts with the
# documented config, idempotent, no secret value stored or logged, file
# references, bad settings refused, the scheduler plans one command per
# seeded scope, and a real lattice-worker (own topics, group, id) syncs both
# seeded accounts: Dovecot (a folder of its own) and the Gmail emulator (a
# mailbox of its own under the default client id).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_KAFKA_BOOTSTRAP_SERVERS \
  LATTICE_S3_ENDPOINT LATTICE_CA_FILE LATTICE_TEST_IMAP_PASSWORD LATTICE_GMAIL_API_URL \
  LATTICE_GMAIL_TOKEN_URL LATTICE_TEST_GMAIL_URL
SCHEMA=seed_$RUN
WORK=$(mktemp -d)
FOLDER=seed-$RUN GUSER=seed$RUN@example.com
WPID= SPID=
cleanup() {
  lt_stop "$WPID"
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
  lt_imap_delete "$FOLDER"
  python3 "$HERE/lib/gmail_tool.py" ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA"
DSN="$LATTICE_PG_DSN options='-csearch_path=$SCHEMA'"
LATTICE_PG_DSN=$DSN "$BUILD/tools/lattice-migrate" --dir "$ROOT/migrations" >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }
psqlq() { PGPASSWORD=$LATTICE_PG_PASSWORD psql "$DSN" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
# Secrets the worker would have in its environment: the seed must not copy them.
# The seeded accounts name them in tenant personal's namespace (LTS_personal__*).
export LATTICE_TEST_GMAIL_CLIENT_SECRET=cs-secret-$RUN LATTICE_TEST_GMAIL_REFRESH_TOKEN=rt-secret-$RUN
export LTS_personal__GMAIL_CLIENT_SECRET=$LATTICE_TEST_GMAIL_CLIENT_SECRET \
  LTS_personal__GMAIL_REFRESH_TOKEN=$LATTICE_TEST_GMAIL_REFRESH_TOKEN \
  LTS_personal__IMAP_PASSWORD=$LATTICE_TEST_IMAP_PASSWORD
seed() { # seed LOG [args]
  local log=$1; shift
  LATTICE_PG_DSN=$DSN LATTICE_LOG_FORMAT=text "$BUILD/tools/lattice-seed" "$@" >"$WORK/$log.out" 2>"$WORK/$log.log"
}
rows() { psqlq "SELECT id, tenant_id, account_id, provider, enabled, config_json::text FROM mail_accounts ORDER BY id"; }

# 1. the first run: two accounts, exactly the documented configs
rc=0; seed s1 || rc=$?
check "seed exit 0" [ "$rc" = 0 ]
check "two accounts" [ "$(psqlq "SELECT count(*) FROM mail_accounts")" = 2 ]
check "personal-gmail: gmail, enabled, config" [ "$(psqlq "SELECT provider, enabled, config_json = '{\"user\":\"me\",\"label_ids\":[\"INBOX\"],\"client_id\":\"lattice-local\",\"client_secret_env\":\"LTS_personal__GMAIL_CLIENT_SECRET\",\"refresh_token_env\":\"LTS_personal__GMAIL_REFRESH_TOKEN\"}'::jsonb FROM mail_accounts WHERE tenant_id = 'personal' AND account_id = 'personal-gmail'")" = "gmail|t|t" ]
check "workmail-imap: imap, enabled, config" [ "$(psqlq "SELECT provider, enabled, config_json = '{\"host\":\"127.0.0.1\",\"port\":19993,\"username\":\"alice@example.test\",\"password_env\":\"LTS_personal__IMAP_PASSWORD\",\"folders\":[\"INBOX\"]}'::jsonb FROM mail_accounts WHERE tenant_id = 'personal' AND account_id = 'workmail-imap'")" = "imap|t|t" ]
rows >"$WORK/rows1"

# 2. idempotent: the same rows (same ids) after a second run
rc=0; seed s2 || rc=$?
check "second run exit 0" [ "$rc" = 0 ]
rows >"$WORK/rows2"
check "second run: rows unchanged" cmp -s "$WORK/rows1" "$WORK/rows2"

# 3. a later run re-enables and updates the config, keeps the status
psqlq "UPDATE mail_accounts SET enabled = false WHERE account_id = 'workmail-imap'" >/dev/null
psqlq "UPDATE mail_accounts SET status = 'needs_reauth', status_reason = 'test' WHERE account_id = 'personal-gmail'" >/dev/null
LATTICE_SEED_IMAP_FOLDERS="INBOX, Sent Items ,," LATTICE_SEED_IMAP_PASSWORD_PATH=imap/workmail-imap.password seed s3
check "re-enabled" [ "$(psqlq "SELECT enabled FROM mail_accounts WHERE account_id = 'workmail-imap'")" = t ]
check "status kept" [ "$(psqlq "SELECT status FROM mail_accounts WHERE account_id = 'personal-gmail'")" = needs_reauth ]
check "folders list, file reference instead of the variable" \
  [ "$(psqlq "SELECT config_json->'folders', config_json->>'password_file', config_json ? 'password_env' FROM mail_accounts WHERE account_id = 'workmail-imap'")" = '["INBOX", "Sent Items"]|imap/workmail-imap.password|f' ]
check "still two accounts, same ids" [ "$(psqlq "SELECT string_agg(id::text, ',' ORDER BY id) FROM mail_accounts")" = "$(cut -d'|' -f1 "$WORK/rows1" | paste -sd,)" ]

# 4. no secret value stored or logged: every *_PASSWORD / *_SECRET* / *TOKEN* variable of this
#    environment (the stack's and the ones set above)
dump=$(psqlq "SELECT tenant_id || account_id || config_json::text || coalesce(status_reason, '') FROM mail_accounts")
leaks=0 scanned=0
while IFS='=' read -r name value; do
  case "$name" in *_PASSWORD|*_PASSWORD_*|*_SECRET|*_SECRET_*|*TOKEN|*TOKEN_*) ;; *) continue ;; esac
  [ ${#value} -ge 6 ] || continue
  case "$name" in *_ENV|*_PATH) continue ;; esac # names of settings that hold names
  scanned=$((scanned+1))
  if grep -qF -- "$value" <<<"$dump" || grep -qF -- "$value" "$WORK"/*.log "$WORK"/*.out; then
    leaks=$((leaks+1)); echo "secret of $name found" >&2
  fi
done < <(env)
check "secret variables scanned ($scanned)" [ "$scanned" -ge 3 ]
check "no secret value in config_json or the output" [ "$leaks" = 0 ]

# 5. bad settings: refused before anything is written
psqlq "DELETE FROM mail_accounts" >/dev/null
rc=0; LATTICE_SEED_IMAP_PASSWORD_ENV='not a name' seed bad1 || rc=$?
check "bad variable name: exit 2" [ "$rc" = 2 ]
rc=0; LATTICE_SEED_GMAIL_REFRESH_TOKEN_PATH=/var/run/secrets/kubernetes.io/serviceaccount/token seed bad2 || rc=$?
check "absolute secret path: exit 2" [ "$rc" = 2 ]
rc=0; LATTICE_SEED_GMAIL_REFRESH_TOKEN_PATH=../other/token seed bad2b || rc=$?
check "secret path out of the tenant directory: exit 2" [ "$rc" = 2 ]
rc=0; LATTICE_SEED_IMAP_PASSWORD_ENV=LATTICE_S3_SECRET_ACCESS_KEY LATTICE_SEED_GMAIL_CLIENT_SECRET_ENV=A-B seed bad2c || rc=$?
check "variable NAME not of A-Z a-z 0-9 _: exit 2" [ "$rc" = 2 ]
LATTICE_SEED_IMAP_PASSWORD_ENV=LATTICE_S3_SECRET_ACCESS_KEY seed dry0 --dry-run
check "a NAME is always put in the tenant's namespace" grep -qF '"password_env":"LTS_personal__LATTICE_S3_SECRET_ACCESS_KEY"' "$WORK/dry0.out"
rc=0; LATTICE_SEED_TENANT='a b' seed bad3 || rc=$?
check "bad tenant: exit 2" [ "$rc" = 2 ]
rc=0; seed bad4 --frobnicate || rc=$?
check "unknown argument: exit 2" [ "$rc" = 2 ]
check "nothing written by refused runs" [ "$(psqlq "SELECT count(*) FROM mail_accounts")" = 0 ]

# 6. --dry-run prints, writes nothing; another tenant by setting
LATTICE_SEED_TENANT=other seed dry --dry-run
check "dry run: two rows printed" [ "$(grep -c '"tenant_id":"other"' "$WORK/dry.out")" = 2 ]
check "dry run wrote nothing" [ "$(psqlq "SELECT count(*) FROM mail_accounts")" = 0 ]

# 7. the scheduler plans one command per seeded scope
seed s4
LATTICE_PG_DSN=$DSN LATTICE_LOG_FORMAT=text "$BUILD/scheduler/lattice-scheduler" --once --dry-run --tenant personal \
  >"$WORK/plan.out" 2>"$WORK/plan.log"
check "scheduler plan: personal-gmail label:INBOX, workmail-imap INBOX" \
  [ "$(python3 -c 'import json,sys; print(sorted((d["account_id"], d.get("scope")) for d in map(json.loads, sys.stdin)))' <"$WORK/plan.out")" = "[('personal-gmail', 'label:INBOX'), ('workmail-imap', 'INBOX')]" ]

# 8. a worker syncs what was seeded (the defaults, but a folder, a mailbox and an OAuth
#    client of this run: the emulator keeps one secret per client id, and another run's
#    per-run secret for the default "lattice-local" would make this one's invalid_client)
python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 4 --seed seed
python3 "$HERE/lib/gmail_tool.py" ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"$LATTICE_TEST_GMAIL_REFRESH_TOKEN\",\"client_id\":\"seed-$RUN\",\"client_secret\":\"$LATTICE_TEST_GMAIL_CLIENT_SECRET\",\"generate\":{\"count\":3,\"labelIds\":[\"INBOX\"]}}" >/dev/null
psqlq "DELETE FROM mail_accounts" >/dev/null
LATTICE_SEED_IMAP_FOLDERS=$FOLDER LATTICE_SEED_GMAIL_CLIENT_ID=seed-$RUN seed s5
CMD_TOPIC=test.seed.cmd.$RUN RAW_TOPIC=test.seed.raw.$RUN STATUS_TOPIC=test.seed.status.$RUN
for t in "$CMD_TOPIC 1" "$RAW_TOPIC 1" "$STATUS_TOPIC 1"; do
  # shellcheck disable=SC2086
  "$ROOT/deploy/local/stack" topic $t >/dev/null
done
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=test-seed-$RUN LATTICE_WORKER_ID=test-seed-$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
kcat -C -b "$LATTICE_KAFKA_BOOTSTRAP_SERVERS" -t "$STATUS_TOPIC" -o beginning -u -q -f '%s\n' >"$WORK/status.out" 2>/dev/null &
SPID=$!
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_LOG_FORMAT=text \
  "$BUILD/scheduler/lattice-scheduler" --once --tenant personal >"$WORK/sched.out" 2>"$WORK/sched.log"
check "scheduler sent 2 commands" grep -q 'commands_sent=2 ' "$WORK/sched.log"
result() { # result ACCOUNT -> "result messages"
  local end=$((SECONDS + 300 * LT_TF)) # a hang guard
  while [ $SECONDS -lt $end ]; do
    local st
    st=$(grep -F "\"account_id\":\"$1\"" "$WORK/status.out" | grep -v '"result":"running"' | tail -1 || true)
    [ -n "$st" ] && { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["result"], d["messages"])' "$st"; return; }
    sleep 0.1
  done
  echo "none"; tail -20 "$WORK/worker.log" >&2
}
check "worker synced workmail-imap as seeded" [ "$(result workmail-imap)" = "succeeded 4" ]
check "worker synced personal-gmail as seeded" [ "$(result personal-gmail)" = "succeeded 3" ]
kill -TERM "$WPID"; wait "$WPID" || true; WPID=
check "no secret value in the worker's log" bash -c "! grep -qF -e '$LATTICE_TEST_GMAIL_REFRESH_TOKEN' -e '$LATTICE_TEST_GMAIL_CLIENT_SECRET' -e '$LATTICE_TEST_IMAP_PASSWORD' '$WORK/worker.log'"

[ "$fail" = 0 ] || for f in "$WORK"/*.log; do echo "--- $f"; tail -5 "$f"; done
lt_summary test_seed
