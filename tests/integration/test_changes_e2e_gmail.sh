#!/usr/bin/env bash
# Gmail mailbox changes end to end: lattice-worker AND lattice-mail-parser
# on this run's own raw and change topics, against the stack's Gmail
# emulator. After every step (the mailbox changed, one incremental command
# finished, the parser caught up) the parser's rows must say what the
# mailbox says: lib/mailbox_state.py gmail exits 0 (every message of the
# mailbox live in emails_live with its labels, every other row of the
# account not live), and a deleted message's own subject word is no longer
# found by the full-text search of emails_live.
# Steps: first sync; new mail; a label added, another removed; archived
# (INBOX removed); trash, untrash; deleted for good (one of them archived
# before); the history expired with a deletion, a relabel and new mail in
# the gap.
# A trashed message is still a message of the mailbox (a `labels` change
# with TRASH: docs/gmail.md), so the comparison counts TRASH as present
# (--include-spam-trash); only a deletion takes a row out of the search.
# "Caught up" is waited for by the clock: mailbox_state.py is asked again
# until it matches or 120 s passed (a hang guard), then asserted.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL LATTICE_TEST_GMAIL_URL
TENANT=tge2e$RUN
ACCOUNT=gmail-e2e-$RUN
GUSER=ge2e$RUN@example.com
WORD=$(tr 0-9 a-j <<<"$RUN") # letters only: one FTS lexeme per subject word
WORK=$(mktemp -d)
WPID= PPID2=
cleanup() {
  lt_stop "$WPID" "$PPID2"
  lt_gmail_ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  psqlq "DELETE FROM emails WHERE tenant_id = '$TENANT'; DELETE FROM emails_changes_pending WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

curl -fsS --max-time 10 --cacert "$LATTICE_CA_FILE" "$LATTICE_TEST_GMAIL_URL/healthz" | grep -q '"modify"' ||
  { echo "the stack's Gmail emulator predates mailbox changes (no \"modify\" feature): restart the stack" >&2; exit 1; }
lt_gmail_ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\"}" >/dev/null
put() { # put NAME -> the new message's id; its subject word: NAME x WORD
  local raw
  raw=$(printf 'From: a@example.test\r\nTo: b@example.test\r\nSubject: about %sx%s\r\nMessage-ID: <%s.%s@example.test>\r\n\r\nbody of %s\r\n' \
    "$1" "$WORD" "$1" "$RUN" "$1" | base64 -w0)
  lt_gmail_ctl POST "/users/$GUSER/messages" "{\"raw\":\"$raw\",\"labelIds\":[\"INBOX\",\"UNREAD\"]}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
relabel() { lt_gmail_ctl POST "/users/$GUSER/messages/$1/labels" "$2" >/dev/null; }
declare -A M
for n in m1 m2 m3 m4; do M[$n]=$(put $n); done

CS_VAR=$(lt_secret_env "$TENANT" CLIENT_SECRET) RT_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN)
export "$CS_VAR=cs-$RUN" "$RT_VAR=rt-$RUN"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES
  ('$TENANT', '$ACCOUNT', 'gmail', '{\"user\":\"$GUSER\",\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT_VAR\"}'::jsonb)" >/dev/null

CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2eg.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2eg.raw.$RUN" 3)
CHG_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2eg.change.$RUN" 3)
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2eg.status.$RUN")
DLQ_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2eg.dlq.$RUN")
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_TOPIC_CHANGES=$CHG_TOPIC LATTICE_WORKER_BATCH_MESSAGES=2 LATTICE_WORKER_RETRY_BASE_MS=200 \
LATTICE_WORKER_GROUP_ID=test-e2eg-w-$RUN LATTICE_WORKER_ID=test-e2eg-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
LATTICE_GMAIL_API_URL=$LATTICE_TEST_GMAIL_URL LATTICE_GMAIL_TOKEN_URL=$LATTICE_TEST_GMAIL_URL/token \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$CHG_TOPIC LATTICE_PARSER_GROUP_ID=test-e2eg-p-$RUN \
LATTICE_PARSER_DLQ_TOPIC=$DLQ_TOPIC LATTICE_PARSER_BATCH_MESSAGES=3 LATTICE_LOG_FORMAT=text \
LATTICE_PARSER_RETRY_BASE_MS=200 \
  "$BUILD/parser/lattice-mail-parser" >"$WORK/parser.log" 2>&1 &
PPID2=$!
lt_wait_assigned "$WORK/worker.log"

run_sync() { # one incremental command, waits for its final status
  local id="e2eg-$RUN-$(date +%s%N)" s
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"gmail","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$ACCOUNT" "$id" "$TENANT" "$ACCOUNT" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$id" "$WORK/worker.log")
  check "$1: sync succeeded ($s)" [ "$(jgetq "$s" result)" = succeeded ]
}
matches() { # matches STEP: the account's rows match the mailbox (waits for the parser)
  local st=1 end=$((SECONDS + 120 * LT_TF))
  while [ $SECONDS -lt $end ]; do
    st=0
    python3 "$HERE/lib/mailbox_state.py" gmail --emulator-url "$LATTICE_TEST_GMAIL_URL" \
      --user "$GUSER" --account-id "$ACCOUNT" --tenant-id "$TENANT" --include-spam-trash \
      >"$WORK/state" 2>&1 || st=$?
    [ "$st" = 0 ] && break
    sleep 0.5
  done
  check "$1: rows match the mailbox ($(tr '\n' ' ' <"$WORK/state" | head -c 600))" [ "$st" = 0 ]
}
step() { run_sync "$1"; matches "$1"; }
fts() { psqlq "SELECT count(*) FROM emails_live WHERE tenant_id = '$TENANT' AND fts @@ plainto_tsquery('simple', '$1')"; }
gone() { check "$1: '$2x$WORD' no longer found by the search" [ "$(fts "$2x$WORD")" = 0 ]; }
found() { check "$1: '$2x$WORD' found by the search once" [ "$(fts "$2x$WORD")" = 1 ]; }
labels() { psqlq "SELECT array_to_string(labels, ',') FROM emails WHERE tenant_id = '$TENANT' AND provider_message_id = '$1'"; }

step "1 first sync"
found "1" m1

M[m5]=$(put m5)
step "2 new mail"
found "2" m5

relabel "${M[m1]}" '{"add":["STARRED"],"remove":["UNREAD"]}'
step "3 label added and removed"
check "3: m1's row has labels INBOX,STARRED" [ "$(labels "${M[m1]}")" = INBOX,STARRED ]

relabel "${M[m2]}" '{"remove":["INBOX"]}'
step "4 archived"
found "4: still searchable" m2

lt_gmail_ctl POST "/users/$GUSER/messages/${M[m3]}/trash" >/dev/null
step "5 trash"
check "5: m3's row has TRASH" grep -q TRASH <<<"$(labels "${M[m3]}")"
lt_gmail_ctl POST "/users/$GUSER/messages/${M[m3]}/untrash" >/dev/null
step "5b untrash"

lt_gmail_ctl DELETE "/users/$GUSER/messages/${M[m4]}" >/dev/null
lt_gmail_ctl DELETE "/users/$GUSER/messages/${M[m2]}" >/dev/null
step "6 deleted"
gone "6" m4
gone "6: archived, then deleted" m2

# history expired: in the gap m5 deleted, m1 relabelled, m6 new
lt_gmail_ctl DELETE "/users/$GUSER/messages/${M[m5]}" >/dev/null
relabel "${M[m1]}" '{"add":["IMPORTANT"],"remove":["STARRED"]}'
M[m6]=$(put m6)
lt_gmail_ctl POST "/users/$GUSER/history/expire" '{}' >/dev/null
step "7 history expired"
check "7: the worker took the expiry" grep -q "known message(s) not listed" "$WORK/worker.log"
gone "7: deleted in the gap" m5
found "7: new in the gap" m6
check "7: m1's row has labels IMPORTANT,INBOX" [ "$(labels "${M[m1]}")" = IMPORTANT,INBOX ]

check "no dead letters" [ -z "$(kcat -C -b "$BROKER" -t "$DLQ_TOPIC" -o beginning -e -q -f '%k\n' 2>/dev/null)" ]
check "no change left pending" [ "$(psqlq "SELECT count(*) FROM emails_changes_pending WHERE tenant_id = '$TENANT'")" = 0 ]
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/worker.log"; echo "--- parser log"; tail -30 "$WORK/parser.log"; }
lt_summary test_changes_e2e_gmail
