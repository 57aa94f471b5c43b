#!/usr/bin/env bash
# INBOX is case-insensitive (RFC 3501 5.1): commands with scope "INBOX" and
# "inbox", and an account configured with folders ["inbox"], sync one folder
# with one watermark. The second and third commands continue from the first
# one's watermark: nothing is published again, one mail_watermarks row with
# scope "INBOX", every event's provider_message_id starts with "INBOX;".
# Uses the stack's second mailbox (bob@, LATTICE_TEST_IMAP_USER2), whose INBOX
# no other test syncs; each run appends two messages to it.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER2 \
  LATTICE_TEST_IMAP_PASSWORD2
TENANT=ti$RUN
ACCOUNT=imap-inbox-$RUN
CMD_TOPIC=test.worker-inbox.cmd.$RUN
RAW_TOPIC=test.worker-inbox.raw.$RUN
WORK=$(mktemp -d)
WPID=
cleanup() {
  lt_stop "$WPID"
  psqlq "DELETE FROM mail_watermarks WHERE tenant_id = '$TENANT'; DELETE FROM mail_accounts WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for t in "$CMD_TOPIC" "$RAW_TOPIC"; do "$ROOT/deploy/local/stack" topic "$t" >/dev/null; done
LATTICE_TEST_IMAP_USER=$LATTICE_TEST_IMAP_USER2 LATTICE_TEST_IMAP_PASSWORD=$LATTICE_TEST_IMAP_PASSWORD2 \
  python3 "$HERE/lib/imap_tool.py" append INBOX --count 2 --seed inbox$RUN
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER2" LATTICE_TEST_IMAP_PASSWORD2 inbox

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC \
LATTICE_WORKER_GROUP_ID=test-inbox-$RUN LATTICE_WORKER_ID=test-inbox-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

run() { # run ID [json extra] -> the final status event
  lt_imap_command "$CMD_TOPIC" "$1" "$TENANT" "$ACCOUNT" incremental "${2:-}"
  lt_wait_status --final lattice.mail.sync.status.v1 "$1" "$WORK/worker.log"
}
events() { # the committed events' bytes (provider_message_id is in them)
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%s\n' 2>/dev/null | tr -d '\000'
}
nevents() {
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%o\n' 2>/dev/null | wc -l
}

s1=$(run "cmd-inbox-$RUN-1" ',"scope":"INBOX"') || true
check "scope INBOX succeeded ($s1)" [ "$(jget "$s1" result)" = succeeded ]
N=$(jget "$s1" messages)
check "scope INBOX: the mailbox's messages, at least the 2 appended ($N)" [ "$N" -ge 2 ]
s2=$(run "cmd-inbox-$RUN-2" ',"scope":"inbox"') || true
check "scope inbox succeeded ($s2)" [ "$(jget "$s2" result)" = succeeded ]
check "scope inbox: its status names INBOX" [ "$(jget "$s2" scope)" = INBOX ]
check "scope inbox: continued from INBOX's watermark, nothing again ($(jget "$s2" messages))" \
  [ "$(jget "$s2" messages)" = 0 ]
s3=$(run "cmd-inbox-$RUN-3") || true
check "configured folder \"inbox\" succeeded ($s3)" [ "$(jget "$s3" result)" = succeeded ]
check "configured folder \"inbox\": nothing again ($(jget "$s3" messages))" [ "$(jget "$s3" messages)" = 0 ]

check "one watermark, scope INBOX" \
  [ "$(psqlq "SELECT string_agg(scope, ',') FROM mail_watermarks WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT'")" = INBOX ]
check "$N events on the raw topic ($(nevents))" [ "$(nevents)" = "$N" ]
check "every provider_message_id is INBOX;... ($(events | grep -aoiE 'inbox;UIDVALIDITY=' | sort | uniq -c | tr '\n' ' '))" \
  [ "$(events | grep -aoiE 'inbox;UIDVALIDITY=' | sort | uniq -c | awk '{print $1, $2}')" = "$N INBOX;UIDVALIDITY=" ]

kill -TERM "$WPID"; wait "$WPID" || true; WPID=
[ "$fail" = 0 ] || { echo "--- worker log"; tail -30 "$WORK/worker.log"; }
lt_summary test_worker_imap_inbox
