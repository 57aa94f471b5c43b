#!/usr/bin/env bash
# A Gmail mailbox whose current historyId is behind the worker's stored one
# (the mailbox was recreated or restored: Gmail's historyId otherwise only
# grows) is synced again in full. Without that, history.list from the stored
# position answers nothing and new mail is never seen. The emulator starts a
# mailbox's history at a base derived from its address, so deleting and
# re-creating the user moves its historyId back.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL LATTICE_TEST_GMAIL_URL
TENANT=thb$RUN
ACCOUNT=gmail-hb-$RUN
GUSER=hb$RUN@example.com
CMD_TOPIC=test.ghb.cmd.$RUN
RAW_TOPIC=test.ghb.raw.$RUN
STATUS_TOPIC=test.ghb.status.$RUN
WORK=$(mktemp -d)
WPID=
cleanup() {
  lt_stop "$WPID"
  lt_gmail_ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

REPO=$(cd "$HERE/../.." && pwd)
"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 1 >/dev/null
"$REPO/deploy/local/stack" topic "$RAW_TOPIC" 1 >/dev/null
"$REPO/deploy/local/stack" topic "$STATUS_TOPIC" 1 >/dev/null

mkuser() { # mkuser SEED: the mailbox with 10 messages
  lt_gmail_ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
    \"generate\":{\"count\":10,\"size\":1000,\"labelIds\":[\"INBOX\"],\"seed\":$1}}" >/dev/null
}
hid() { lt_gmail_ctl GET "/users/$GUSER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["historyId"])'; }
mkuser 1
CS_VAR=$(lt_secret_env "$TENANT" CLIENT_SECRET) RT_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN)
export "$CS_VAR=cs-$RUN" "$RT_VAR=rt-$RUN"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$ACCOUNT', 'gmail',
  '{\"user\":\"$GUSER\",\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT_VAR\"}'::jsonb)" >/dev/null

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=test-ghb-$RUN LATTICE_WORKER_ID=test-ghb-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
LATTICE_GMAIL_API_URL=$LATTICE_TEST_GMAIL_URL LATTICE_GMAIL_TOKEN_URL=$LATTICE_TEST_GMAIL_URL/token \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

run() { # run N: an incremental command -> its final status
  local id="ghb-$RUN-$1"
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"gmail","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$ACCOUNT" "$id" "$TENANT" "$ACCOUNT" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
  lt_wait_status --final "$STATUS_TOPIC" "$id" "$WORK/worker.log"
}

s=$(run 1)
check "first sync: 10 messages ($s)" [ "$(jget "$s" messages)" = 10 ]
# more mail moves the stored position well past the mailbox's base
lt_gmail_ctl POST "/users/$GUSER/messages/generate" '{"count":20,"size":1000,"labelIds":["INBOX"],"seed":2}' >/dev/null
s=$(run 2)
check "incremental: 20 messages ($s)" [ "$(jget "$s" messages)" = 20 ]
stored=$(psqlq "SELECT watermark_json->>'historyId' FROM mail_watermarks WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT'")

# the mailbox is recreated: 10 other messages, its historyId back near its base
lt_gmail_ctl DELETE "/users/$GUSER" >/dev/null
mkuser 3
now=$(hid)
check "the recreated mailbox's historyId $now is behind the stored $stored" [ "$now" -lt "$stored" ]
s=$(run 3)
check "after the mailbox went back: succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
check "after the mailbox went back: its 10 messages synced again ($(jget "$s" messages))" \
  [ "$(jget "$s" messages)" = 10 ]
check "the worker said why" grep -q "is behind the stored" "$WORK/worker.log"
now=$(psqlq "SELECT watermark_json->>'historyId' FROM mail_watermarks WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT'")
check "the watermark follows the mailbox ($now <= $(hid))" [ "$now" -le "$(hid)" ]

# and the next new mail is seen by the incremental path again
lt_gmail_ctl POST "/users/$GUSER/messages/generate" '{"count":3,"size":1000,"labelIds":["INBOX"],"seed":4}' >/dev/null
s=$(run 4)
check "then incremental again: 3 messages ($s)" [ "$(jget "$s" messages)" = 3 ]
lt_summary test_worker_gmail_history_back
