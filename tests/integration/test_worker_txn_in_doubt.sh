#!/usr/bin/env bash
# A batch whose Kafka commit outcome is unknown (docs/delivery-protocol.md,
# step 5): the broker dies after the batch's pending row is written and before
# commit_transaction reaches it. commit_transaction then fails (retriable) three
# times, the batch is left in doubt and the command fails temporarily. The
# slot's producer is stuck in its commit: it must be replaced, so that the
# retry (same slot: LATTICE_WORKER_CONCURRENCY=1) begins new transactions, the
# new producer's init_transactions settles the old transaction, and recovery
# resolves the pending row from the marker. Checked from the outside: the
# command succeeds, a read_committed consumer sees every message's event
# exactly once, the watermark covers all messages, no pending row is left.
# A second phase fences the slot's producer at the same moment (another
# producer with its transactional.id: a fatal error for it, as after a zombie
# worker's restart): the slot must replace it the same way, not fail the
# command for good or keep refusing transactions.
# LT_TEST_PHASES (default "indoubt fenced") runs a subset, in that order.
#
# The broker is a private single-node KRaft broker started here on its own
# ports and data directory (the stack's broker is shared), from the stack's
# cached Kafka jars. The moment is made exact with a Postgres row lock: a side
# session holds an uncommitted row with the key of the account's pending row,
# so the worker's UPSERT of step 4 waits; the broker is killed while it waits,
# then the side session rolls back and the worker goes on to commit.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_kafka.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
# the stack's Kafka version and cache (deploy/local/stack)

TENANT=t$RUN
ACCOUNT=indoubt-$RUN
FOLDER="indoubt-$RUN"
WORK=$(mktemp -d)
WPID= KPID= SIDE_PID=
cleanup() {
  [ -n "$SIDE_PID" ] && kill "$SIDE_PID" 2>/dev/null || true
  lt_stop "$WPID"
  [ -n "$KPID" ] && kill -KILL "$KPID" 2>/dev/null && wait "$KPID" 2>/dev/null || true
  lt_imap_delete "$FOLDER"
  psqlq "DELETE FROM mail_watermarks WHERE tenant_id='$TENANT'; DELETE FROM mail_watermark_pending WHERE tenant_id='$TENANT'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the private broker ------------------------------------------------------
lt_kafka_private_up

# --- account, mail, worker ---------------------------------------------------
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

# The side session: an uncommitted row with the pending row's key, so the
# worker's UPSERT (step 4) waits for it.
side_lock() {
  rm -f "$WORK/side.in" "$WORK/side.out"; mkfifo "$WORK/side.in"
  PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -A -t -q -v ON_ERROR_STOP=1 \
    <"$WORK/side.in" >"$WORK/side.out" 2>&1 &
  SIDE_PID=$!
  exec 7>"$WORK/side.in"
  echo "SELECT 'pid=' || pg_backend_pid(); BEGIN; INSERT INTO mail_watermark_pending (tenant_id, account_id, scope, provider, watermark_json, command_id, marker_topic, marker_partition, marker_offset) VALUES ('$TENANT', '$ACCOUNT', '$FOLDER', 'imap', '{\"last_uid\": 1, \"uidvalidity\": 1}', 'side-$RUN', 'side', 0, 0); SELECT 'locked';" >&7
  local end=$((SECONDS + 60 * LT_TF))
  until grep -q '^locked' "$WORK/side.out"; do
    [ $SECONDS -lt $end ] || { echo "side session: $(cat "$WORK/side.out")" >&2; exit 1; }
    sleep 0.1
  done
  SIDE=$(sed -n 's/^pid=//p' "$WORK/side.out")
}
side_wait_blocked() { # the worker's pending-row UPSERT waits for the side session
  local end=$((SECONDS + 120 * LT_TF))
  until [ "$(psqlq "SELECT count(*) FROM pg_stat_activity WHERE $SIDE = ANY(pg_blocking_pids(pid))")" = 1 ]; do
    [ $SECONDS -lt $end ] || { echo "the worker never reached the pending row" >&2; tail -30 "$WORK/worker.log" >&2; exit 1; }
    sleep 0.1
  done
}
side_release() {
  echo "ROLLBACK;" >&7
  exec 7>&-
  wait "$SIDE_PID" || true; SIDE_PID=
}

# transaction.timeout.ms 4 s: each commit_transaction try waits that long.
LATTICE_KAFKA_BOOTSTRAP_SERVERS=$BROKER LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC \
LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_TOPIC_DLQ=$DLQ_TOPIC \
LATTICE_TOPIC_CHANGES=$CHG_TOPIC \
LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_KAFKA_TRANSACTION_TIMEOUT_MS=4000 LATTICE_WORKER_CONCURRENCY=1 LATTICE_WORKER_BATCH_MESSAGES=5 \
LATTICE_WORKER_RETRY_BASE_MS=500 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

total=0
check_after() { # check_after PHASE: what a user relies on, from the outside
  local s ids wm V
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$CID" "$WORK/worker.log" || true)
  [ -n "$s" ] || s="{}"
  check "$1: the command succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
  ids=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%k %h\n' 2>/dev/null | awk -v a="$ACCOUNT" '$1==a' | grep -o 'lattice.event_id=[0-9a-f-]*' | sort || true)
  check "$1: read_committed sees $total events ($(grep -c . <<<"$ids" || true))" [ "$(grep -c . <<<"$ids" || true)" = "$total" ]
  check "$1: read_committed sees no event twice" [ "$(uniq -d <<<"$ids" | grep -c . || true)" = 0 ]
  V=$(python3 "$HERE/lib/imap_tool.py" uidvalidity "$FOLDER")
  wm=$(psqlq "SELECT jsonb_build_object('last_uid', watermark_json->'last_uid', 'uidvalidity', watermark_json->'uidvalidity') FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT'")
  check "$1: watermark at UID $total ($wm)" [ "$wm" = "{\"last_uid\": $total, \"uidvalidity\": $V}" ]
  check "$1: no pending row left" [ "$(psqlq "SELECT count(*) FROM mail_watermark_pending WHERE tenant_id='$TENANT'")" = 0 ]
}

# --- in doubt: the broker dies while a batch's pending row is written ---------
phase_indoubt() {
  python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 20 --seed d; total=$((total + 20))
  side_lock
  CID=cmd-$RUN-indoubt
  lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
  side_wait_blocked
  { kill -KILL "$KPID"; wait "$KPID"; } 2>/dev/null || true; KPID=
  side_release
  local end=$((SECONDS + 120 * LT_TF))
  until grep -q "command failed" "$WORK/worker.log"; do [ $SECONDS -lt $end ] || break; sleep 0.2; done
  check "in doubt: commit_transaction failed while the broker was down" grep -q "commit_transaction: .*retrying" "$WORK/worker.log"
  check "in doubt: the command failed for a retry" grep -q "command failed temporarily" "$WORK/worker.log"
  check "in doubt: the pending row is left to recovery" [ "$(psqlq "SELECT count(*) FROM mail_watermark_pending WHERE tenant_id='$TENANT'")" = 1 ]
  kafka_start
  check_after "in doubt"
  check "in doubt: the slot replaced its producer" [ "$(grep -c "replacing it" "$WORK/worker.log" || true)" -ge 1 ]
  check "in doubt: recovery resolved the batch" grep -q "recovered in-doubt batch" "$WORK/worker.log"
}

# --- fenced: another producer with the slot's transactional.id ---------------
# (a fatal error for the slot's producer, as after a zombie's restart)
phase_fenced() {
  python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 10 --seed e; total=$((total + 10))
  local n0
  n0=$(grep -c "replacing it" "$WORK/worker.log" || true)
  side_lock
  CID=cmd-$RUN-fenced
  lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
  side_wait_blocked
  echo fence | kcat -P -b "$BROKER" -t "$DLQ_TOPIC" -X transactional.id="lattice-worker-test-$RUN-0" 2>>"$WORK/fence.log"
  side_release
  check_after "fenced"
  check "fenced: the slot replaced its producer" [ "$(grep -c "replacing it" "$WORK/worker.log" || true)" -gt "$n0" ]
}

python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
for phase in ${LT_TEST_PHASES:-indoubt fenced}; do "phase_$phase"; done

kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0 on SIGTERM" [ "$rc" = 0 ]
check "no sanitizer report in the worker log" bash -c "! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' '$WORK/worker.log'"
echo "--- the worker's Kafka transaction errors, replacements and recoveries"
grep -E 'commit_transaction|begin_transaction|replacing it|recovered in-doubt|command (failed|succeeded)' "$WORK/worker.log" | cut -c1-260 || true
[ "$fail" = 0 ] || { echo "--- worker log"; grep -v ' kafka ' "$WORK/worker.log" | tail -60; }
lt_summary test_worker_txn_in_doubt
