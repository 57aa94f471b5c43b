#!/usr/bin/env bash
# Gmail quota as Google enforces it (lattice-worker against the Gmail API
# emulator: per-minute limits per user and per project, reasons
# userRateLimitExceeded / rateLimitExceeded, no Retry-After), in a private
# Postgres schema with every migration:
#   1. a custom-label scope by name (label:Receipts): labels.list resolves it,
#      exactly the label's messages are published, its watermark is set;
#   2. the default settings (6,000 units per user per minute) against a user
#      limited to 6,000/min by the emulator: a first sync of 200 messages gets
#      no quota answer at all;
#   3. a limit the worker does not know (the user's real limit 1,500/min): the
#      sync completes with every message and the pace was cut (rate cuts > 0;
#      how close it gets to the real limit is measured in bench/gmail);
#   4. the project's units of the UTC day are counted in Postgres
#      (gmail_project_units) and shown by lattice_gmail_project_day_units;
#      with the hard stop, a project over its daily threshold gets
#      "quota_paused" (status event, command row), and nothing is fetched.
# An emulator from older code (no "quota_minute" feature) is left alone: a
# private one from this tree is used. Per run: schema, topics, group, tenant,
# accounts, emulator users and OAuth client / project ids.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_GMAIL_API_URL LATTICE_GMAIL_TOKEN_URL LATTICE_TEST_GMAIL_URL
TENANT=tgq$RUN
SCHEMA=gquota_$RUN
PROJECT=proj-$RUN
U1=rc$RUN@example.com   # Receipts
U2=bulk$RUN@example.com # 200 messages at the known limit
U3=slow$RUN@example.com # a limit the worker does not know
WORK=$(mktemp -d)
PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
WPID= EPID=
cleanup() {
  lt_stop "$WPID"
  for u in "$U1" "$U2" "$U3"; do lt_gmail_ctl DELETE "/users/$u" >/dev/null 2>&1 || true; done
  [ -n "$EPID" ] && kill "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null || true
  PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! curl -fsS --max-time 10 --cacert "$LATTICE_CA_FILE" "$LATTICE_TEST_GMAIL_URL/healthz" |
     grep -q '"quota_minute"'; then
  [ -n "${LATTICE_STACK_DIR:-}" ] && [ -s "$LATTICE_STACK_DIR/gmail/server.pem" ] ||
    { echo "the stack's Gmail emulator predates per-minute quotas and no certificate for a private one" >&2; exit 1; }
  "$ROOT/tests/gmail-emulator/run" --port 0 --cert "$LATTICE_STACK_DIR/gmail/server.pem" \
    --key "$LATTICE_STACK_DIR/gmail/server.key" --state-dir "$WORK/emulator" >"$WORK/emulator.log" 2>&1 &
  EPID=$!
  for _ in $(seq 1 1200); do [ -s "$WORK/emulator/gmail-emulator.ready" ] && break; sleep 0.05; done # 60 s: a hang guard
  [ -s "$WORK/emulator/gmail-emulator.ready" ] || { cat "$WORK/emulator.log" >&2; exit 1; }
  LATTICE_TEST_GMAIL_URL=$(cat "$WORK/emulator/gmail-emulator.ready")
  export LATTICE_GMAIL_API_URL=$LATTICE_TEST_GMAIL_URL LATTICE_GMAIL_TOKEN_URL=$LATTICE_TEST_GMAIL_URL/token
  echo "NOTE: the stack's Gmail emulator runs older code (no per-minute quotas): using a private one at $LATTICE_TEST_GMAIL_URL"
fi

PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA"
export LATTICE_PG_DSN="$LATTICE_PG_DSN options='-csearch_path=$SCHEMA'"
"$BUILD/tools/lattice-migrate" --dir "$ROOT/migrations" >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }

# the emulator: every user limited per user as Google's new projects (6,000/min), U3 lower
lt_gmail_ctl POST /users "{\"email\":\"$U1\",\"refresh_token\":\"rt1-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",\"config\":{\"quota_units_per_min\":6000},\"labels\":[{\"id\":\"Label_7$RUN\",\"name\":\"Receipts\"}],\"generate\":{\"count\":5,\"labelIds\":[\"INBOX\"]}}" >/dev/null
lt_gmail_ctl POST "/users/$U1/messages/generate" "{\"count\":3,\"labelIds\":[\"Label_7$RUN\"],\"seed\":7}" >/dev/null
lt_gmail_ctl POST /users "{\"email\":\"$U2\",\"refresh_token\":\"rt2-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",\"config\":{\"quota_units_per_min\":6000},\"generate\":{\"count\":200,\"size\":2048,\"labelIds\":[\"INBOX\"]}}" >/dev/null
lt_gmail_ctl POST /users "{\"email\":\"$U3\",\"refresh_token\":\"rt3-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",\"config\":{\"quota_units_per_min\":1500},\"generate\":{\"count\":60,\"size\":2048,\"labelIds\":[\"INBOX\"]}}" >/dev/null
CS_VAR=$(lt_secret_env "$TENANT" CLIENT_SECRET)
export "$CS_VAR=cs-$RUN"
acct() { # acct ACCOUNT N SCOPE
  local v
  v=$(lt_secret_env "$TENANT" "RT$2")
  export "$v=rt$2-$RUN"
  psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$1', 'gmail',
    '{\"scopes\":[\"$3\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$v\",\"quota_project\":\"$PROJECT\"}'::jsonb)" >/dev/null
}
acct receipts-$RUN 1 label:Receipts
acct bulk-$RUN 2 label:INBOX
acct slow-$RUN 3 label:INBOX

CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "test.gquota.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "test.gquota.raw.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "test.gquota.status.$RUN")
start_worker() { # start_worker [VAR=VALUE...]: a worker with these settings on top
  : >"$WORK/worker.log"
  env "$@" LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
    LATTICE_WORKER_GROUP_ID=test-gquota-$RUN LATTICE_WORKER_ID=test-gquota-$RUN \
    LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
    LATTICE_LOG_FORMAT=text LATTICE_GMAIL_RETRY_BASE_MS=200 \
    LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
    "$BUILD/worker/lattice-worker" >>"$WORK/worker.log" 2>&1 &
  WPID=$!
  lt_wait_assigned "$WORK/worker.log"
}
gmail_command() { # gmail_command ID ACCOUNT
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"gmail","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$2" "$1" "$TENANT" "$2" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
}
wait_status() { lt_wait_status --final "$STATUS_TOPIC" "$1" "$WORK/worker.log"; }
raw_count() {
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%k\n' 2>/dev/null | grep -cx "$1" || true
}
counter() { # counter PY-EXPR over the emulator's counters c
  lt_gmail_ctl GET /counters | python3 -c 'import json,sys; c=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
cmdlog() { grep -F "$1" "$WORK/worker.log" | grep "gmail: .* requests" | tail -1; }

# the worker of a known project size: alert at 50 % of a daily threshold of 1,500 units
start_worker LATTICE_GMAIL_PROJECT_UNITS_PER_DAY=1500 LATTICE_GMAIL_PROJECT_DAY_ALERT_PERCENT=50

# 1. label:Receipts (a user label given by name)
labels0=$(counter 'c["by_method"].get("gmail.users.labels.list", 0)')
gmail_command c1-$RUN receipts-$RUN
s1=$(wait_status c1-$RUN)
check "receipts: succeeded ($s1)" [ "$(jget "$s1" result)" = succeeded ]
check "receipts: the 3 messages of the label, not the 5 of INBOX" [ "$(jget "$s1" messages)" = 3 ]
check "receipts: 3 committed events" [ "$(raw_count receipts-$RUN)" = 3 ]
check "receipts: labels.list resolved the name" \
  [ "$(counter 'c["by_method"].get("gmail.users.labels.list", 0)')" -gt "$labels0" ]
check "receipts: the scope's watermark is set" \
  [ -n "$(psqlq "SELECT watermark_json FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='receipts-$RUN' AND scope='label:Receipts'")" ]

# 2. 200 messages at the default 6,000 units/min: no quota answer
gmail_command c2-$RUN bulk-$RUN
s2=$(wait_status c2-$RUN)
check "bulk: succeeded, 200 messages ($(jget "$s2" result) $(jget "$s2" messages))" \
  [ "$(jget "$s2" result) $(jget "$s2" messages)" = "succeeded 200" ]
r2=$(counter "c['rate_limited_by_user'].get('$U2', 0)")
check "bulk: the emulator refused nothing at the known limit ($r2 refused)" [ "$r2" = 0 ]
check "bulk: the command saw no quota error ($(cmdlog c2-$RUN))" grep -q " 0 quota errors" <<<"$(cmdlog c2-$RUN)"

# 3. a real limit of 1,500/min the worker does not know: cut, and done
gmail_command c3-$RUN slow-$RUN
s3=$(wait_status c3-$RUN)
check "slow: succeeded, 60 messages ($(jget "$s3" result) $(jget "$s3" messages))" \
  [ "$(jget "$s3" result) $(jget "$s3" messages)" = "succeeded 60" ]
r3=$(counter "c['rate_limited_by_user'].get('$U3', 0)")
cuts=$(cmdlog c3-$RUN | sed -n 's/.* \([0-9][0-9]*\) rate cuts.*/\1/p')
check "slow: the pace was cut (${cuts:-?} cuts, $r3 refused)" [ "${cuts:-0}" -ge 1 ]

# 4. the project's day in Postgres and in the metrics
day=$(psqlq "SELECT units FROM gmail_project_units WHERE project='$PROJECT' AND day=(now() AT TIME ZONE 'UTC')::date")
emu_units=$(counter "c['units_by_user'].get('$U1',0)+c['units_by_user'].get('$U2',0)+c['units_by_user'].get('$U3',0)")
check "day: Postgres counts the project's units ($day; the emulator charged $emu_units)" \
  [ "${day:-0}" -ge "$emu_units" ] # the worker also counts what was refused
curl -sf "$URL/metrics" >"$WORK/m.prom"
check "day: lattice_gmail_project_day_units{project} ($(metric m "lattice_gmail_project_day_units{project=\"$PROJECT\"}"))" \
  is "$(metric m "lattice_gmail_project_day_units{project=\"$PROJECT\"}")" "$day"
check "day: over 50 % of 1,500: the alert gauge is 1" \
  is "$(metric m "lattice_gmail_project_day_alert{project=\"$PROJECT\"}")" 1
check "day: alert in the log" grep -q "project $PROJECT has used .* units today" "$WORK/worker.log"
check "metrics: quota errors by kind" grep -q "^lattice_gmail_quota_errors_total{project=\"$PROJECT\",kind=\"user\"}" "$WORK/m.prom"

# the hard stop: the project is over its threshold, its next command is paused
lt_stop "$WPID"
WPID=
start_worker LATTICE_GMAIL_PROJECT_UNITS_PER_DAY=1500 LATTICE_GMAIL_PROJECT_DAY_HARD_STOP=true
req0=$(counter "c['units_by_user'].get('$U1', 0)")
gmail_command c4-$RUN receipts-$RUN
s4=$(wait_status c4-$RUN)
check "hard stop: quota_paused ($s4)" [ "$(jget "$s4" result)" = quota_paused ]
check "hard stop: says until when" grep -q "resume at 20[0-9-]*T00:00:00Z" <<<"$(jget "$s4" error)"
check "hard stop: the command row" \
  [ "$(psqlq "SELECT status || ' ' || error_class FROM mail_sync_commands WHERE command_id='c4-$RUN'")" = "failed quota_paused" ]
check "hard stop: nothing asked of Gmail" [ "$(counter "c['units_by_user'].get('$U1', 0)")" = "$req0" ]
curl -sf "$URL/metrics" >"$WORK/m2.prom"
check "hard stop: lattice_gmail_project_paused is 1" \
  is "$(metric m2 "lattice_gmail_project_paused{project=\"$PROJECT\"}")" 1

lt_summary test_worker_gmail_quota
