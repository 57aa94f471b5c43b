#!/usr/bin/env bash
# A Gmail search scope (the account's "query") costs one listing of the query
# per incremental sync, not one per history page: new mail spanning three
# history pages (1200 records, history.list pages of 500), half of it matching
# the query, is filtered with messages.list calls for one pass over the
# query's result (610 matches: 2 pages of 500), and exactly the matching
# messages are published. The emulator's request counters are global, so
# this test runs an emulator of its own (from this tree, the stack's
# certificate) and reads them there.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL LATTICE_STACK_DIR
TENANT=tq$RUN
ACCOUNT=gmail-query-$RUN
GUSER=query$RUN@example.com
CMD_TOPIC=test.gquery.cmd.$RUN
RAW_TOPIC=test.gquery.raw.$RUN
STATUS_TOPIC=test.gquery.status.$RUN
WORK=$(mktemp -d)
WPID=
EPID=
cleanup() {
  lt_stop "$WPID" "$EPID"
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -s "$LATTICE_STACK_DIR/gmail/server.pem" ] || { echo "no Gmail emulator certificate in $LATTICE_STACK_DIR/gmail" >&2; exit 1; }
"$REPO/tests/gmail-emulator/run" --port 0 --cert "$LATTICE_STACK_DIR/gmail/server.pem" \
  --key "$LATTICE_STACK_DIR/gmail/server.key" --state-dir "$WORK/emulator" >"$WORK/emulator.log" 2>&1 &
EPID=$!
for _ in $(seq 1 1200); do [ -s "$WORK/emulator/gmail-emulator.ready" ] && break; sleep 0.05; done # a hang guard
[ -s "$WORK/emulator/gmail-emulator.ready" ] || { cat "$WORK/emulator.log" >&2; exit 1; }
EMU=$(cat "$WORK/emulator/gmail-emulator.ready")
ctl() { # ctl METHOD PATH [JSON]: the emulator's control API
  curl -fsS --max-time 120 --cacert "$LATTICE_CA_FILE" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "$EMU/_emulator$2"
}
list_calls() {
  python3 -c 'import json,sys; print(json.load(sys.stdin)["by_method"].get("gmail.users.messages.list", 0))' \
    < <(ctl GET /counters)
}

"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 1 >/dev/null & p1=$!
"$REPO/deploy/local/stack" topic "$RAW_TOPIC" 3 >/dev/null & p2=$!
"$REPO/deploy/local/stack" topic "$STATUS_TOPIC" 1 >/dev/null
wait $p1 $p2

ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":10,\"size\":1000,\"labelIds\":[\"INBOX\",\"STARRED\"],\"seed\":1}}" >/dev/null
CS_VAR=$(lt_secret_env "$TENANT" CLIENT_SECRET) RT_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN)
export "$CS_VAR=cs-$RUN" "$RT_VAR=rt-$RUN"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$ACCOUNT', 'gmail',
  '{\"user\":\"$GUSER\",\"query\":\"is:starred\",\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT_VAR\"}'::jsonb)" >/dev/null

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=test-gquery-$RUN LATTICE_WORKER_ID=test-gquery-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
LATTICE_WORKER_BATCH_MESSAGES=100 LATTICE_GMAIL_API_URL=$EMU LATTICE_GMAIL_TOKEN_URL=$EMU/token \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

run() { # run N: an incremental command -> its final status
  local id="gq-$RUN-$1"
  gq_command "$id"
  lt_wait_status --final "$STATUS_TOPIC" "$id" "$WORK/worker.log"
}
gq_command() {
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"gmail","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$ACCOUNT" "$1" "$TENANT" "$ACCOUNT" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
}

s=$(run 1)
check "first sync of the query: 10 messages ($s)" [ "$(jget "$s" messages)" = 10 ]

# 600 not starred, then 600 starred: 1200 history records, three history pages
ctl POST "/users/$GUSER/messages/generate" '{"count":600,"size":1000,"labelIds":["INBOX"],"seed":2}' >/dev/null
ctl POST "/users/$GUSER/messages/generate" '{"count":600,"size":1000,"labelIds":["INBOX","STARRED"],"seed":3}' >/dev/null
ctl POST /counters/reset >/dev/null
s=$(run 2)
check "incremental: succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
check "incremental: the 600 starred messages ($(jget "$s" messages))" [ "$(jget "$s" messages)" = 600 ]
calls=$(list_calls)
hist=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["by_method"].get("gmail.users.history.list", 0))' < <(ctl GET /counters))
echo "incremental: $hist history.list calls, $calls messages.list calls"
check "incremental: three history pages ($hist)" [ "$hist" = 3 ]
check "incremental: the query listed once (2 pages of 610 ids), not per history page ($calls calls)" \
  [ "$calls" -le 2 ]

python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$ACCOUNT" >"$WORK/events"
n=$(grep -c . "$WORK/events" || true)
check "610 events in all, each once ($n)" [ "$n" = 610 ]
lt_summary test_worker_gmail_query
