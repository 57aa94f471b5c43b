#!/usr/bin/env bash
# The kcat backfill lines of docs/commands.md work as documented: the blocks
# marked "tested: tests/integration/test_kcat_backfill.sh" are extracted from
# the doc and run as they are with real kcat (only the documented variables
# are set), against a lattice-worker with its own command/raw/status topics,
# group, id, tenant and accounts:
#   IMAP:  UIDs 3..7 of a 10-message folder -> 5 messages, watermark kept;
#   Gmail: 2024-03-02 (UTC) of 30 hourly messages from 2024-03-01 -> 6,
#          watermark kept.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DOC=$ROOT/docs/commands.md
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD \
  LATTICE_S3_ENDPOINT LATTICE_CA_FILE LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT \
  LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD LATTICE_GMAIL_API_URL \
  LATTICE_GMAIL_TOKEN_URL LATTICE_TEST_GMAIL_URL
TEN=kb-$RUN
IMAP_ACCT=imap-$RUN GMAIL_ACCT=gmail-$RUN
FOLDER="kb-$RUN"
GUSER=kb$RUN@example.com
CMD_TOPIC=test.kb.cmd.$RUN RAW_TOPIC=test.kb.raw.$RUN STATUS_TOPIC=test.kb.status.$RUN
WORK=$(mktemp -d)
WPID= SPID=
gtool() { python3 "$HERE/lib/gmail_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID"
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
  lt_imap_delete "$FOLDER"
  gtool ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  psqlq "DELETE FROM mail_accounts WHERE tenant_id = '$TEN'" >/dev/null 2>&1 || true
  psqlq "DELETE FROM mail_sync_commands WHERE tenant_id = '$TEN'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- the documented blocks, as they are
doc_block() { # doc_block imap|gmail -> the code block after its "tested:" marker
  awk -v tag="($1)" '
    index($0, "tested: tests/integration/test_kcat_backfill.sh") && index($0, tag) { want = 1; next }
    want && /^```/ { if (inblock) exit; inblock = 1; next }
    inblock { print }' "$DOC"
}
doc_block imap >"$WORK/imap.sh"
doc_block gmail >"$WORK/gmail.sh"
check "doc has the imap block" grep -q '"kind":"backfill".*| kcat -P ' "$WORK/imap.sh"
check "doc has the gmail block" grep -q '"provider":"gmail".*| kcat -P ' "$WORK/gmail.sh"
check "imap block is one line" [ "$(wc -l <"$WORK/imap.sh")" = 1 ]
check "gmail block is one line" [ "$(wc -l <"$WORK/gmail.sh")" = 1 ]

# ---- mailboxes, accounts, topics, the worker
for t in "$CMD_TOPIC 1" "$RAW_TOPIC 3" "$STATUS_TOPIC 1"; do
  # shellcheck disable=SC2086
  "$ROOT/deploy/local/stack" topic $t >/dev/null
done
python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 10 --seed kb
START=1709251200 # 2024-03-01T00:00:00Z: 30 messages an hour apart, 24 on March 1st, 6 on the 2nd
gtool ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":30,\"size\":3000,\"start\":$START,\"interval_s\":3600,\"labelIds\":[\"INBOX\"],\"seed\":$((RUN % 1000))}}" >/dev/null
GCS_VAR=$(lt_secret_env "$TEN" GMAIL_CLIENT_SECRET) GRT_VAR=$(lt_secret_env "$TEN" GMAIL_REFRESH_TOKEN)
export "$GCS_VAR=cs-$RUN" "$GRT_VAR=rt-$RUN"
IMAP_PW_VAR=$(lt_secret_env "$TEN" IMAP_PASSWORD) # the worker reads the password from it
export "$IMAP_PW_VAR=$LATTICE_TEST_IMAP_PASSWORD"
IMAP_CONFIG=$(printf '{"host":"%s","port":%s,"username":"%s","password_env":"'"$IMAP_PW_VAR"'","folders":["%s"]}' \
  "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$LATTICE_TEST_IMAP_USER" "$FOLDER")
GMAIL_CONFIG="{\"user\":\"me\",\"label_ids\":[\"INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$GCS_VAR\",\"refresh_token_env\":\"$GRT_VAR\"}"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES
  ('$TEN', '$IMAP_ACCT', 'imap', '$IMAP_CONFIG'::jsonb), ('$TEN', '$GMAIL_ACCT', 'gmail', '$GMAIL_CONFIG'::jsonb)" >/dev/null

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=test-kb-$RUN LATTICE_WORKER_ID=test-kb-$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
kcat -C -b "$BROKER" -t "$STATUS_TOPIC" -o beginning -u -q -f '%s\n' >"$WORK/status.log" 2>/dev/null &
SPID=$!
lt_wait_assigned "$WORK/worker.log"

wait_result() { # wait_result ACCOUNT KIND -> the final status of the account's latest KIND command
  local end=$((SECONDS + 300 * LT_TF)) # a hang guard
  while [ $SECONDS -lt $end ]; do
    local s
    s=$(grep -F "\"account_id\":\"$1\"" "$WORK/status.log" | grep -F "\"kind\":\"$2\"" \
        | grep -v '"result":"running"' | tail -1 || true)
    [ -n "$s" ] && { echo "$s"; return 0; }
    sleep 0.05
  done
  echo "no $2 status for $1" >&2; tail -20 "$WORK/worker.log" >&2; echo '{}'
}
raw_count() { # committed events of an account on the run's raw topic
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%k\n' 2>/dev/null | grep -cx "$1" || true
}
wm() { psqlq "SELECT watermark_json::text FROM mail_watermarks WHERE tenant_id='$TEN' AND account_id='$1'"; }
incremental() { # incremental ACCOUNT PROVIDER (hand-written, as test_worker_imap.sh does)
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"inc-%s-%s","tenant_id":"%s","account_id":"%s","provider":"%s","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$1" "$RUN" "$1" "$TEN" "$1" "$2" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
}

# ---- IMAP: an incremental first (watermark at UID 10), then the documented backfill of 3..7
incremental "$IMAP_ACCT" imap
s=$(wait_result "$IMAP_ACCT" incremental)
check "imap incremental: 10 messages ($s)" [ "$(jget "$s" messages)" = 10 ]
W=$(wm "$IMAP_ACCT")
check "imap watermark at UID 10 ($W)" grep -q '"last_uid": 10' <<<"$W"
rc=0
(export LATTICE_KAFKA_BOOTSTRAP_SERVERS=$BROKER LATTICE_TOPIC_COMMANDS=$CMD_TOPIC
 TENANT=$TEN ACCOUNT=$IMAP_ACCT FOLDER=$FOLDER START_UID=3 END_UID=7
 # shellcheck disable=SC1090
 . "$WORK/imap.sh") >"$WORK/kcat-imap.log" 2>&1 || rc=$?
check "documented imap kcat line exit 0 ($(cat "$WORK/kcat-imap.log"))" [ "$rc" = 0 ]
s=$(wait_result "$IMAP_ACCT" backfill)
check "imap backfill succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
check "imap backfill: 5 messages (UIDs 3..7)" [ "$(jget "$s" messages)" = 5 ]
check "imap backfill: requested_by and id from the line" \
  bash -c "grep -F '\"account_id\":\"$IMAP_ACCT\"' '$WORK/status.log' | grep -q '\"command_id\":\"bf-'"
check "imap backfill kept the watermark ($(wm "$IMAP_ACCT"))" [ "$(wm "$IMAP_ACCT")" = "$W" ]
check "imap: 15 committed events (10 + 5)" [ "$(raw_count "$IMAP_ACCT")" = 15 ]

# ---- Gmail: an incremental first, then the documented backfill of 2024-03-02
incremental "$GMAIL_ACCT" gmail
s=$(wait_result "$GMAIL_ACCT" incremental)
check "gmail incremental: 30 messages ($s)" [ "$(jget "$s" messages)" = 30 ]
GW=$(wm "$GMAIL_ACCT")
check "gmail watermark set ($GW)" grep -q historyId <<<"$GW"
rc=0
(export LATTICE_KAFKA_BOOTSTRAP_SERVERS=$BROKER LATTICE_TOPIC_COMMANDS=$CMD_TOPIC
 TENANT=$TEN ACCOUNT=$GMAIL_ACCT SCOPE=label:INBOX START_DATE=2024-03-02 END_DATE=2024-03-02
 # shellcheck disable=SC1090
 . "$WORK/gmail.sh") >"$WORK/kcat-gmail.log" 2>&1 || rc=$?
check "documented gmail kcat line exit 0 ($(cat "$WORK/kcat-gmail.log"))" [ "$rc" = 0 ]
s=$(wait_result "$GMAIL_ACCT" backfill)
check "gmail backfill succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
check "gmail backfill: 6 messages (2024-03-02 UTC)" [ "$(jget "$s" messages)" = 6 ]
check "gmail backfill kept the watermark ($(wm "$GMAIL_ACCT"))" [ "$(wm "$GMAIL_ACCT")" = "$GW" ]
check "gmail: 36 committed events (30 + 6)" [ "$(raw_count "$GMAIL_ACCT")" = 36 ]

kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0" [ "$rc" = 0 ]
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/worker.log"; }
lt_summary test_kcat_backfill
