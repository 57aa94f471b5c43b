#!/usr/bin/env bash
# Scopes fail independently (lattice-worker against Dovecot and the Gmail API
# emulator of the stack):
#   1. IMAP folders ["Archive-<run>" (never created), "<run>-in"]: the missing
#      folder does not keep the other from syncing; the status event is
#      "partial" and lists both scopes (missing / ok with its messages); the
#      good folder's watermark moves, the missing one gets none; metrics count
#      the scope results. New mail: the next command syncs it (still partial).
#   2. A command for the missing folder alone: "failed", final.
#   3. Gmail scopes ["label:Label_<run>gone" (no such label), "label:INBOX"]:
#      the same, for a label scope.
#   4. Gmail: one scope failing temporarily (labels.list answers 503, every
#      try of the first attempt) while INBOX syncs: the command is retried,
#      the retry syncs the failed scope and publishes INBOX's messages only
#      once (its watermark moved on the first attempt).
# Per run: topics, consumer group, worker id, tenant, accounts, folder and
# emulator users (faults only for this test's users).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD LATTICE_GMAIL_API_URL LATTICE_GMAIL_TOKEN_URL LATTICE_TEST_GMAIL_URL
TENANT=tsc$RUN
IMAP_ACCOUNT=imap-scopes-$RUN
GMAIL_ACCOUNT=gmail-scopes-$RUN
GMAIL_ACCOUNT2=gmail-scopes-temp-$RUN
GONE=Archive-$RUN # never created
GOOD=$RUN-in
GUSER=sc$RUN@example.com
GUSER2=st$RUN@example.com
WORK=$(mktemp -d)
PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
WPID=
ctl() { # ctl METHOD PATH [JSON]: the emulator's control API
  curl -fsS --max-time 120 --cacert "$LATTICE_CA_FILE" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "$LATTICE_TEST_GMAIL_URL/_emulator$2"
}
cleanup() {
  lt_stop "$WPID"
  lt_imap_delete "$GOOD"
  ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  ctl DELETE "/users/$GUSER2" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 "$HERE/lib/imap_tool.py" create "$GOOD"
python3 "$HERE/lib/imap_tool.py" append "$GOOD" --count 5 --seed s
lt_imap_account "$TENANT" "$IMAP_ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD \
  "$GONE" "$GOOD"

ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",\"generate\":{\"count\":4,\"labelIds\":[\"INBOX\"]}}" >/dev/null
ctl POST /users "{\"email\":\"$GUSER2\",\"refresh_token\":\"rt2-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",\"labels\":[{\"id\":\"Label_$RUN\",\"name\":\"work-$RUN\"}],\"generate\":{\"count\":3,\"labelIds\":[\"INBOX\"]}}" >/dev/null
ctl POST "/users/$GUSER2/messages/generate" "{\"count\":2,\"labelIds\":[\"Label_$RUN\"],\"seed\":3}" >/dev/null
CS_VAR=$(lt_secret_env "$TENANT" CLIENT_SECRET) RT_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN)
RT2_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN2)
export "$CS_VAR=cs-$RUN" "$RT_VAR=rt-$RUN" "$RT2_VAR=rt2-$RUN"
GCONF="{\"user\":\"me\",\"scopes\":[\"label:Label_${RUN}gone\",\"label:INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT_VAR\"}"
GCONF2="{\"user\":\"me\",\"scopes\":[\"label:Label_$RUN\",\"label:INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT2_VAR\"}"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES
  ('$TENANT', '$GMAIL_ACCOUNT', 'gmail', '$GCONF'::jsonb), ('$TENANT', '$GMAIL_ACCOUNT2', 'gmail', '$GCONF2'::jsonb)" >/dev/null

CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "test.scopes.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "test.scopes.raw.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "test.scopes.status.$RUN")
: >"$WORK/worker.log" # before the wait below greps it
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=test-scopes-$RUN LATTICE_WORKER_ID=test-scopes-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_WORKER_MAX_ATTEMPTS=4 \
LATTICE_GMAIL_RETRY_BASE_MS=20 LATTICE_GMAIL_MAX_RETRIES=1 \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

gmail_command() { # gmail_command ID ACCOUNT
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"gmail","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$2" "$1" "$TENANT" "$2" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
}
wait_status() { lt_wait_status --final "$STATUS_TOPIC" "$1" "$WORK/worker.log"; }
scopes() { # the status event's scopes as "scope:result:messages" lines
  python3 -c 'import json,sys
for s in json.loads(sys.argv[1]).get("scopes", []): print("%s:%s:%s" % (s["scope"], s["result"], s["messages"]))' "$1"
}
scope_field() { # scope_field JSON SCOPE FIELD
  python3 -c 'import json,sys
print(next((s.get(sys.argv[3], "") for s in json.loads(sys.argv[1]).get("scopes", []) if s["scope"] == sys.argv[2]), ""))' "$@"
}
raw_count() { # committed events of ACCOUNT (all committed before the command's final status)
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%k\n' 2>/dev/null | grep -cx "$1" || true
}
wm() { psqlq "SELECT CASE WHEN provider = 'imap' THEN jsonb_build_object('last_uid', watermark_json->'last_uid', 'uidvalidity', watermark_json->'uidvalidity') ELSE watermark_json END FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$1' AND scope='$2'"; }

# 1. IMAP: the missing folder first, the good one still syncs
c1=imap-1-$RUN
lt_imap_command "$CMD_TOPIC" "$c1" "$TENANT" "$IMAP_ACCOUNT" incremental
s1=$(wait_status "$c1")
check "imap: partial ($s1)" [ "$(jget "$s1" result)" = partial ]
check "imap: error_class final" [ "$(jget "$s1" error_class)" = final ]
check "imap: the error names the missing folder" grep -qF "$GONE" <<<"$(jget "$s1" error)"
check "imap: scopes listed in order ($(scopes "$s1" | tr '\n' ' '))" \
  [ "$(scopes "$s1" | tr '\n' ' ')" = "$GONE:missing:0 $GOOD:ok:5 " ]
check "imap: the missing scope says why ($(scope_field "$s1" "$GONE" error))" \
  grep -q "does not exist" <<<"$(scope_field "$s1" "$GONE" error)"
check "imap: the missing scope's class is final" [ "$(scope_field "$s1" "$GONE" error_class)" = final ]
check "imap: 5 messages" [ "$(jget "$s1" messages)" = 5 ]
check "imap: 5 committed events" [ "$(raw_count "$IMAP_ACCOUNT")" = 5 ]
V=$(python3 "$HERE/lib/imap_tool.py" uidvalidity "$GOOD")
check "imap: the good folder's watermark moved ($(wm "$IMAP_ACCOUNT" "$GOOD"))" \
  [ "$(wm "$IMAP_ACCOUNT" "$GOOD")" = "{\"last_uid\": 5, \"uidvalidity\": $V}" ]
check "imap: no watermark for the missing folder" [ -z "$(wm "$IMAP_ACCOUNT" "$GONE")" ]
check "imap: command recorded as failed with the summary" \
  [ "$(psqlq "SELECT status || ' ' || error_class FROM mail_sync_commands WHERE command_id='$c1'")" = "failed final" ]
check "imap: the account stays active" \
  [ "$(psqlq "SELECT status FROM mail_accounts WHERE tenant_id='$TENANT' AND account_id='$IMAP_ACCOUNT'")" = active ]

# new mail: the next command syncs it, the missing folder does not block it
python3 "$HERE/lib/imap_tool.py" append "$GOOD" --count 2 --seed t
c2=imap-2-$RUN
lt_imap_command "$CMD_TOPIC" "$c2" "$TENANT" "$IMAP_ACCOUNT" incremental
s2=$(wait_status "$c2")
check "imap again: partial, 2 new ($(scopes "$s2" | tr '\n' ' '))" \
  [ "$(jget "$s2" result) $(scopes "$s2" | tr '\n' ' ')" = "partial $GONE:missing:0 $GOOD:ok:2 " ]
check "imap again: 7 committed events" [ "$(raw_count "$IMAP_ACCOUNT")" = 7 ]
check "imap again: watermark at 7" \
  [ "$(wm "$IMAP_ACCOUNT" "$GOOD")" = "{\"last_uid\": 7, \"uidvalidity\": $V}" ]

# 2. the missing folder alone: failed, final (nothing synced)
c3=imap-3-$RUN
lt_imap_command "$CMD_TOPIC" "$c3" "$TENANT" "$IMAP_ACCOUNT" incremental ",\"scope\":\"$GONE\""
s3=$(wait_status "$c3")
check "imap, missing scope alone: failed final ($s3)" \
  [ "$(jget "$s3" result) $(jget "$s3" error_class) $(scopes "$s3")" = "failed final $GONE:missing:0" ]

# 3. Gmail: a label scope whose label does not exist, then INBOX
g1=gmail-1-$RUN
gmail_command "$g1" "$GMAIL_ACCOUNT"
t1=$(wait_status "$g1")
check "gmail: partial ($t1)" [ "$(jget "$t1" result)" = partial ]
check "gmail: scopes listed ($(scopes "$t1" | tr '\n' ' '))" \
  [ "$(scopes "$t1" | tr '\n' ' ')" = "label:Label_${RUN}gone:missing:0 label:INBOX:ok:4 " ]
check "gmail: 4 committed events" [ "$(raw_count "$GMAIL_ACCOUNT")" = 4 ]
check "gmail: INBOX has a watermark" [ -n "$(wm "$GMAIL_ACCOUNT" label:INBOX)" ]
check "gmail: none for the missing label" [ -z "$(wm "$GMAIL_ACCOUNT" "label:Label_${RUN}gone")" ]

# 4. Gmail: a temporary failure of one scope: retried, the other not published twice
ctl POST /faults "{\"user\":\"$GUSER2\",\"kind\":\"status\",\"status\":503,\"match\":\"/labels\",\"count\":2}" >/dev/null
g2=gmail-2-$RUN
gmail_command "$g2" "$GMAIL_ACCOUNT2"
t2=$(wait_status "$g2")
check "gmail temp: succeeded ($t2)" [ "$(jget "$t2" result)" = succeeded ]
check "gmail temp: on a retry (attempt $(jget "$t2" attempt))" [ "$(jget "$t2" attempt)" -ge 2 ]
check "gmail temp: the retry synced the failed scope, INBOX had nothing new ($(scopes "$t2" | tr '\n' ' '))" \
  [ "$(scopes "$t2" | tr '\n' ' ')" = "label:Label_$RUN:ok:2 label:INBOX:ok:0 " ]
check "gmail temp: the first attempt synced INBOX while the label scope failed" \
  grep -q "scope label:Label_$RUN not synced (temporary)" "$WORK/worker.log"
check "gmail temp: 5 committed events, none twice" [ "$(raw_count "$GMAIL_ACCOUNT2")" = 5 ]

# metrics: scope results of finished commands
curl -sf "$URL/metrics" >"$WORK/m.prom"
m() { awk -v k="$1" 'index($0, k" ") == 1 { print $2; f=1 } END { if (!f) print 0 }' "$WORK/m.prom"; }
check "metrics: imap missing scopes = 3 ($(m 'lattice_worker_scope_results_total{provider="imap",result="missing",error_class="final"}'))" \
  is "$(m 'lattice_worker_scope_results_total{provider="imap",result="missing",error_class="final"}')" 3
check "metrics: imap ok scopes = 2" \
  is "$(m 'lattice_worker_scope_results_total{provider="imap",result="ok",error_class="none"}')" 2
check "metrics: gmail missing scope = 1" \
  is "$(m 'lattice_worker_scope_results_total{provider="gmail",result="missing",error_class="final"}')" 1
check "metrics: partial commands = 2 (imap)" \
  is "$(m 'lattice_worker_commands_total{provider="imap",kind="incremental",result="partial",error_class="final"}')" 2

lt_summary test_worker_scopes
