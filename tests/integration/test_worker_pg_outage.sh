#!/usr/bin/env bash
# Postgres unreachable for ~25 s in the middle of a command (a managed
# failover takes 20-60 s): the command must not fail. Temporary failures are
# retried within LATTICE_WORKER_RETRY_WINDOW_S (default 10 min) with capped
# exponential backoff, not a small count of attempts; the command completes
# after the outage, with every message's event exactly once (read_committed)
# and the watermark at the last UID. The attempt numbers agree: every
# "command failed temporarily (attempt n)" warning and every "command started
# (attempt n)" line count on from the one before (also those whose failure
# could not be written to the command's row while Postgres was down), and the
# status event and the row carry the last one.
# Postgres is a private cluster (lib/private_pg.sh; the stack's is shared),
# stopped with an immediate shutdown and started again. Per run: topics,
# consumer group, worker id, tenant, account, folder.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD

TENANT=t$RUN ACCOUNT=pgout-$RUN FOLDER=pgout-$RUN
CMD_TOPIC=pgout-cmd-$RUN RAW_TOPIC=pgout-raw-$RUN CKPT_TOPIC=pgout-ckpt-$RUN STATUS_TOPIC=pgout-status-$RUN
WORK=$(mktemp -d)
WPID=
cleanup() {
  lt_stop "$WPID"
  lt_pg_private_down
  lt_imap_delete "$FOLDER"
  rm -rf "$WORK"
}
trap cleanup EXIT

lt_pg_private_up
"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 1 >/dev/null
"$REPO/deploy/local/stack" topic "$RAW_TOPIC" 1 >/dev/null
"$REPO/deploy/local/stack" topic "$CKPT_TOPIC" 1 >/dev/null
"$REPO/deploy/local/stack" topic "$STATUS_TOPIC" 1 >/dev/null
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

# The retry settings at their defaults (LATTICE_WORKER_RETRY_*): what an
# operator runs. Small batches: the command is still
# syncing when Postgres goes away.
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
LATTICE_WORKER_CONCURRENCY=1 LATTICE_WORKER_BATCH_MESSAGES=2 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

total=0
# phase NAME NEW_MESSAGES OUTAGE_S: a command syncing NEW_MESSAGES more, and
# Postgres stopped for OUTAGE_S once its first batch is committed
phase() {
  local name=$1 n=$2 outage=$3 cid=cmd-$RUN-$1 s end t_down t_up t_done seq consistent last ids V wm log
  python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count "$n" --seed "$name" >/dev/null
  total=$((total + n))
  log=$WORK/worker-$name.log
  : >"$log"
  local from; from=$(wc -l <"$WORK/worker.log")
  local wm0; wm0=$(psqlq "SELECT COALESCE((SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT'), '0')")
  lt_imap_command "$CMD_TOPIC" "$cid" "$TENANT" "$ACCOUNT" incremental
  end=$((SECONDS + 120 * LT_TF))
  until [ "$(psqlq "SELECT COALESCE((SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT'), '0')" 2>/dev/null || echo 0)" -gt "$wm0" ]; do
    [ $SECONDS -lt $end ] || break; sleep 0.05
  done
  # the outage: an immediate shutdown mid-sync, then back
  lt_pg_private_stop
  t_down=$SECONDS
  tail -n +"$((from + 1))" "$WORK/worker.log" >"$log"
  check "$name: the command was still syncing when Postgres went away" \
    bash -c "! grep -q 'command succeeded' '$log'"
  sleep "$outage"
  lt_pg_private_start
  t_up=$SECONDS
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$cid" "$WORK/worker.log" || echo '{}')
  t_done=$SECONDS
  tail -n +"$((from + 1))" "$WORK/worker.log" >"$log"
  echo "$name: outage $((t_up - t_down)) s; the command finished $((t_done - t_up)) s after Postgres was back"
  grep -E "command (started|failed|succeeded)" "$log" | sed -E 's/^([^ ]+ [^ ]+).*(command [a-z]+[^:]*).*/\1 \2/' | cut -c1-160 || true
  check "$name: the command succeeded after the outage ($(cut -c1-300 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
  check "$name: it was retried during the outage" grep -q "command failed temporarily" "$log"

  ids=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%h\n' 2>/dev/null | grep -o 'lattice.event_id=[0-9a-f-]*' | sort || true)
  check "$name: read_committed sees $total events ($(grep -c . <<<"$ids" || true))" [ "$(grep -c . <<<"$ids" || true)" = "$total" ]
  check "$name: no event twice" [ "$(uniq -d <<<"$ids" | grep -c . || true)" = 0 ]
  V=$(python3 "$HERE/lib/imap_tool.py" uidvalidity "$FOLDER")
  wm=$(psqlq "SELECT (watermark_json->>'last_uid') || '/' || (watermark_json->>'uidvalidity') FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT'")
  check "$name: watermark at UID $total ($wm)" [ "$wm" = "$total/$V" ]
  check "$name: no pending row left" [ "$(psqlq "SELECT count(*) FROM mail_watermark_pending WHERE tenant_id='$TENANT'")" = 0 ]

  # attempt numbers: in log order, "failed temporarily (attempt n)" and
  # "command started (..., attempt n)" each count on from the line before
  seq=$(grep -o "command failed temporarily (attempt [0-9]*)\|command started ([a-z]*, attempt [0-9]*)" "$log" |
    sed -E 's/.*failed temporarily \(attempt ([0-9]+)\)/F \1/; s/.*started \([a-z]+, attempt ([0-9]+)\)/S \1/' | tr '\n' ' ')
  consistent=$(python3 - "$seq" <<'PY'
import sys
t = sys.argv[1].split()
ev = [(t[i], int(t[i + 1])) for i in range(0, len(t), 2)]
cur, ok = 0, True
for kind, n in ev:
    # a start is the next attempt; a failure is the current one, or the next
    # when the attempt failed before its start reached the row
    if kind == "S":
        ok = ok and n == cur + 1
    else:
        ok = ok and n in (cur, cur + 1)
    cur = n
print("%s %d" % ("yes" if ok else "no", cur))
PY
)
  check "$name: attempt numbers count on (S start, F failed temporarily: $seq)" [ "${consistent%% *}" = yes ]
  last=${consistent##* }
  check "$name: the status event has the last attempt ($last)" [ "$(jget "$s" attempt)" = "$last" ]
  check "$name: the row has the last attempt ($last)" \
    [ "$(psqlq "SELECT status || ' ' || attempt FROM mail_sync_commands WHERE command_id='$cid'")" = "succeeded $last" ]
}

# a short outage (the retries of the old count of 5 attempts covered it, but
# their numbers contradicted the next start's), then a failover-sized one
phase short 200 5
phase long 400 25

[ "$fail" = 0 ] || { echo "--- worker log"; grep -v ' kafka ' "$WORK/worker.log" | tail -60; }
lt_summary test_worker_pg_outage
