#!/usr/bin/env bash
# A server that leaves a message out of its FETCH answer (or answers it with a
# NIL body) must not lose it. lattice-worker against a fake IMAPS server
# (lib/imap_partial_server.py: INBOX with UIDs 1..3, UID 2 never returned),
# one message per batch, one attempt per command:
#   - UID 2 still exists (UID SEARCH finds it): the command fails (temporary),
#     the watermark stays at UID 1 and UID 2 is neither published nor
#     reported; left out and NIL alike;
#   - UID 2 is gone (UID SEARCH no longer finds it): the command succeeds,
#     UIDs 1 and 3 are published, the watermark moves to 3 and the status
#     event reports UID 2 as expunged; left out and NIL alike.
# Per run: topics, consumer group, worker id, tenant and accounts; its own
# server (the certificate of the stack's Gmail emulator: 127.0.0.1, stack CA).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_STACK_DIR
CERT=$LATTICE_STACK_DIR/gmail/server.pem
KEY=$LATTICE_STACK_DIR/gmail/server.key
[ -s "$CERT" ] && [ -s "$KEY" ] || { echo "no server certificate at $CERT" >&2; exit 1; }
TENANT=tmu$RUN
WORK=$(mktemp -d)
WPID=
FPID=
cleanup() { lt_stop "$WPID" "$FPID"; rm -rf "$WORK"; }
trap cleanup EXIT

python3 "$HERE/lib/imap_partial_server.py" "$CERT" "$KEY" "$WORK/ready" "$WORK/imap.log" \
  >"$WORK/server.log" 2>&1 &
FPID=$!
for _ in $(seq 1 600); do [ -s "$WORK/ready" ] && break; sleep 0.1; done # 60 s: a hang guard
[ -s "$WORK/ready" ] || { cat "$WORK/server.log" >&2; exit 1; }
export LATTICE_TEST_IMAP_HOST=127.0.0.1 LATTICE_TEST_IMAP_PORT
LATTICE_TEST_IMAP_PORT=$(cat "$WORK/ready")
export TEST_PARTIAL_PASSWORD=any
for u in exists gone nil-exists nil-gone; do
  lt_imap_account "$TENANT" "$u" "$u-$RUN" TEST_PARTIAL_PASSWORD INBOX
done

CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "test.missing-uid.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "test.missing-uid.raw.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "test.missing-uid.status.$RUN")
: >"$WORK/worker.log" # before the wait below greps it
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=test-mu-$RUN LATTICE_WORKER_ID=test-mu-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=20 LATTICE_WORKER_RETRY_WINDOW_S=0 \
LATTICE_WORKER_BATCH_MESSAGES=1 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

wm() { psqlq "SELECT watermark_json FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$1' AND scope='INBOX'"; }
events() { # committed events of account $1 (all committed before the final status event)
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%k\n' 2>/dev/null | grep -cx "$1" || true
}

for a in exists nil-exists; do
  c=cmd-$a-$RUN
  lt_imap_command "$CMD_TOPIC" "$c" "$TENANT" "$a" incremental
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$c" "$WORK/worker.log")
  check "$a: failed, temporary ($s)" \
    [ "$(jget "$s" result) $(jget "$s" error_class)" = "failed temporary" ]
  check "$a: the error names UID 2" grep -q "UID 2" <<<"$(jget "$s" error)"
  check "$a: nothing reported as gone" [ "$(jget "$s" expunged) $(jget "$s" skipped)" = "None None" ]
  check "$a: watermark not moved past UID 1 ($(wm "$a"))" \
    [ "$(wm "$a")" = '{"last_uid": 1, "uidvalidity": 777}' ]
  check "$a: only UID 1 published" [ "$(events "$a")" = 1 ]
  check "$a: UID 2 looked up again" grep -q "^$a-$RUN A[0-9]* UID SEARCH UID 2\$" "$WORK/imap.log"
done

for a in gone nil-gone; do
  c=cmd-$a-$RUN
  lt_imap_command "$CMD_TOPIC" "$c" "$TENANT" "$a" incremental
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$c" "$WORK/worker.log")
  check "$a: succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
  check "$a: 2 messages" [ "$(jget "$s" messages)" = 2 ]
  check "$a: UID 2 reported as expunged" \
    [ "$(jget "$s" expunged) $(jget "$s" expunged_ids)" = "1 INBOX;UIDVALIDITY=777;UID=2" ]
  check "$a: watermark at UID 3 ($(wm "$a"))" [ "$(wm "$a")" = '{"last_uid": 3, "uidvalidity": 777}' ]
  check "$a: UIDs 1 and 3 published" [ "$(events "$a")" = 2 ]
done

lt_summary test_worker_imap_missing_uid
