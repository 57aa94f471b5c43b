#!/usr/bin/env bash
# Mailbox changes of IMAP folders end to end: lattice-worker AND
# lattice-mail-parser on this run's own raw and change topics, against the
# stack's Dovecot. After every step (the mailbox changed, one incremental
# command finished, the parser caught up) the parser's rows must say what
# the mailbox says: lib/mailbox_state.py exits 0 for each folder (every
# message of the folder live in emails_live with its flags, every other row
# of the folder not live), and a deleted message's own subject word is no
# longer found by the full-text search of emails_live.
#   QRESYNC account, folders A and B: first sync; new mail; flags set and
#   cleared; an expunge; a move A -> B; B's UIDVALIDITY changed (the folder
#   deleted and created again with other messages).
#   fallback account (imap_disable_caps QRESYNC, CONDSTORE), folder C: first
#   sync, then flags, an expunge and new mail in one step.
# "Caught up" is waited for by the clock: mailbox_state.py is asked again
# until it matches or 120 s passed (a hang guard), then asserted.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT \
  LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
TENANT=te2e$RUN
FA="e2e-$RUN-A"
FB="e2e-$RUN-B"
FC="e2e-$RUN-C"
WORD=$(tr 0-9 a-j <<<"$RUN") # letters only: one FTS lexeme per subject word
WORK=$(mktemp -d)
WPID= PPID2=
imap() { python3 "$HERE/lib/imap_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID" "$PPID2"
  for f in "$FA" "$FB" "$FC"; do lt_imap_delete "$f"; done
  psqlq "DELETE FROM emails WHERE tenant_id = '$TENANT'; DELETE FROM emails_changes_pending WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# one message with its own subject word: "test <seed> message 1 été"
put() { imap append "$1" --count 1 --seed "$2" >/dev/null; }
for f in "$FA" "$FB" "$FC"; do imap create "$f"; done
for i in 1 2 3 4; do put "$FA" "a${i}x$WORD"; done
put "$FB" "b1x$WORD"
for i in 1 2 3; do put "$FC" "c${i}x$WORD"; done
lt_imap_account "$TENANT" qr "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FA" "$FB"
lt_imap_account "$TENANT" fb "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FC"
psqlq "UPDATE mail_accounts SET config_json = config_json || '{\"imap_disable_caps\": [\"QRESYNC\", \"CONDSTORE\"]}'::jsonb WHERE tenant_id = '$TENANT' AND account_id = 'fb'" >/dev/null

CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2ei.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2ei.raw.$RUN" 3)
CHG_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2ei.change.$RUN" 3)
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2ei.status.$RUN")
DLQ_TOPIC=$("$ROOT/deploy/local/stack" topic "test.e2ei.dlq.$RUN")
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$CHG_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-e2ei-w-$RUN \
LATTICE_WORKER_ID=test-e2ei-$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=50 \
LATTICE_WORKER_BATCH_MESSAGES=2 LATTICE_IMAP_FLAGS_SCAN_INTERVAL_S=0 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$CHG_TOPIC LATTICE_PARSER_GROUP_ID=test-e2ei-p-$RUN \
LATTICE_PARSER_DLQ_TOPIC=$DLQ_TOPIC LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_PARSER_BATCH_MESSAGES=3 LATTICE_LOG_FORMAT=text LATTICE_PARSER_RETRY_BASE_MS=200 \
  "$BUILD/parser/lattice-mail-parser" >"$WORK/parser.log" 2>&1 &
PPID2=$!
lt_wait_assigned "$WORK/worker.log"

run_sync() { # run_sync ACCOUNT: one incremental command, waits for its final status
  local c="cmd-$1-$(date +%s%N)" s
  lt_imap_command "$CMD_TOPIC" "$c" "$TENANT" "$1" incremental
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$c" "$WORK/worker.log")
  check "$1: sync succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
}
state() { # state ACCOUNT FOLDER: mailbox_state.py's verdict, its output in WORK/state
  python3 "$HERE/lib/mailbox_state.py" imap --host "$LATTICE_TEST_IMAP_HOST" \
    --port "$LATTICE_TEST_IMAP_PORT" --user "$LATTICE_TEST_IMAP_USER" \
    --password-env LATTICE_TEST_IMAP_PASSWORD --folder "$2" --account-id "$1" \
    --tenant-id "$TENANT" >"$WORK/state" 2>&1
}
matches() { # matches STEP ACCOUNT FOLDER...: each folder's rows match (waits for the parser)
  local step=$1 acc=$2 f st end
  shift 2
  for f in "$@"; do
    end=$((SECONDS + 120 * LT_TF))
    st=1
    while [ $SECONDS -lt $end ]; do
      st=0; state "$acc" "$f" || st=$?
      [ "$st" = 0 ] && break
      sleep 0.5
    done
    check "$step: rows of $f match the mailbox ($(tr '\n' ' ' <"$WORK/state" | head -c 600))" [ "$st" = 0 ]
  done
}
fts() { # the live rows the search finds for a word
  psqlq "SELECT count(*) FROM emails_live WHERE tenant_id = '$TENANT' AND fts @@ plainto_tsquery('simple', '$1')"
}
gone() { check "$1: '$2' no longer found by the search" [ "$(fts "$2")" = 0 ]; }
found() { check "$1: '$2' found by the search once" [ "$(fts "$2")" = 1 ]; }
VA=$(imap uidvalidity "$FA")

# 1. first sync
run_sync qr
matches "1 first sync" qr "$FA" "$FB"
found "1" "a3x$WORD"
check "1: flags are set (not NULL) on every row" \
  [ "$(psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$TENANT' AND account_id = 'qr' AND flags IS NULL")" = 0 ]

# 2. new mail
put "$FA" "a5x$WORD"
run_sync qr
matches "2 new mail" qr "$FA"
found "2" "a5x$WORD"

# 3. flags set on two messages, cleared on one of them again, keyword on a third
imap store "$FA" 1 '\Seen' '\Flagged'
imap store "$FA" 2 '\Seen'
imap store "$FA" 4 '$Label1'
run_sync qr
matches "3 flags" qr "$FA"
imap store "$FA" 1 '\Seen'
run_sync qr
matches "3b flag cleared" qr "$FA"
check "3b: UID 1's row has flags {\\Seen}" \
  [ "$(psqlq "SELECT flags::text FROM emails WHERE tenant_id = '$TENANT' AND provider_message_id = '$FA;UIDVALIDITY=$VA;UID=1'")" = '{"\\Seen"}' ]

# 4. expunge
imap expunge "$FA" 3
run_sync qr
matches "4 expunge" qr "$FA"
gone "4 expunge" "a3x$WORD"
check "4: the expunged message's row is kept, marked deleted" \
  [ "$(psqlq "SELECT (deleted_at IS NOT NULL)::text FROM emails WHERE tenant_id = '$TENANT' AND provider_message_id = '$FA;UIDVALIDITY=$VA;UID=3'")" = true ]

# 5. move A -> B (with its flags)
imap move "$FA" 2 "$FB"
run_sync qr
matches "5 move" qr "$FA" "$FB"
found "5 move: the moved message, once" "a2x$WORD"

# 6. B's UIDVALIDITY changes: the folder deleted and created again
imap delete "$FB"
imap create "$FB"
put "$FB" "b9x$WORD"
imap store "$FB" 1 '\Answered'
run_sync qr
check "6: the worker saw the UIDVALIDITY change" grep -q "folder $FB: UIDVALIDITY changed" "$WORK/worker.log"
matches "6 UIDVALIDITY change" qr "$FB"
gone "6 UIDVALIDITY change" "b1x$WORD"
found "6" "b9x$WORD"
matches "6: A untouched" qr "$FA"

# fallback account: QRESYNC and CONDSTORE masked
run_sync fb
matches "fb first sync" fb "$FC"
imap store "$FC" 1 '\Flagged'
imap expunge "$FC" 2
put "$FC" "c4x$WORD"
run_sync fb
check "fb: fallback used" grep -q "folder $FC: changes by fallback" "$WORK/worker.log"
matches "fb flags, expunge, new mail" fb "$FC"
gone "fb expunge" "c2x$WORD"
found "fb new mail" "c4x$WORD"

check "no dead letters" [ -z "$(kcat -C -b "$BROKER" -t "$DLQ_TOPIC" -o beginning -e -q -f '%k\n' 2>/dev/null)" ]
check "no change left pending" [ "$(psqlq "SELECT count(*) FROM emails_changes_pending WHERE tenant_id = '$TENANT'")" = 0 ]
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/worker.log"; echo "--- parser log"; tail -30 "$WORK/parser.log"; }
lt_summary test_changes_e2e_imap
