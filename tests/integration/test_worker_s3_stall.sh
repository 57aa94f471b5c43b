#!/usr/bin/env bash
# A frozen object store (MinIO stopped with SIGSTOP, or a network black
# hole: connections accepted, nothing answered) must be detected by the
# speed of the transfer, not after LATTICE_S3_TIMEOUT_S (120 s): the request
# is given up as stalled after LATTICE_S3_LOW_SPEED_TIME_S (3 s here), with a
# log line and lattice_worker_s3_stalls_total, and the command is retried;
# once the store answers again it succeeds, every message's event exactly
# once (read_committed).
# The store is the stack's MinIO behind a private proxy
# (lib/fault_proxy.py) that this test freezes: the shared MinIO is never
# stopped. The hang guard (60 s) is half of LATTICE_S3_TIMEOUT_S, so only the
# low-speed limit can end the frozen request in time. Per run: topics,
# consumer group, worker id, tenant, account, folder; a private Postgres
# (lib/private_pg.sh) with this tree's migrations.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD

TENANT=t$RUN ACCOUNT=s3stall-$RUN FOLDER=s3stall-$RUN
CMD_TOPIC=s3stall-cmd-$RUN RAW_TOPIC=s3stall-raw-$RUN CKPT_TOPIC=s3stall-ckpt-$RUN STATUS_TOPIC=s3stall-status-$RUN
N=5
WORK=$(mktemp -d)
WPID= PPID_=
cleanup() {
  lt_stop "$WPID"
  [ -n "$PPID_" ] && kill -CONT "$PPID_" 2>/dev/null; lt_stop "$PPID_"
  lt_pg_private_down
  lt_imap_delete "$FOLDER"
  rm -rf "$WORK"
}
trap cleanup EXIT

lt_pg_private_up # the schema of this tree, whatever the stack's has
PROXY_PORT=$(lt_free_port)
python3 "$HERE/lib/fault_proxy.py" "$PROXY_PORT" "${LATTICE_S3_ENDPOINT#http://}" "$WORK/proxy.pid" 2>"$WORK/proxy.log" &
PPID_=$!
end=$((SECONDS + 30 * LT_TF))
until [ -s "$WORK/proxy.pid" ]; do [ $SECONDS -lt $end ] || { echo "proxy did not start" >&2; exit 1; }; sleep 0.1; done

for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CKPT_TOPIC" "$STATUS_TOPIC"; do "$REPO/deploy/local/stack" topic "$t" 1 >/dev/null; done
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count $N --seed s3 >/dev/null
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
LATTICE_S3_ENDPOINT=http://127.0.0.1:$PROXY_PORT LATTICE_S3_LOW_SPEED_TIME_S=3 LATTICE_S3_TIMEOUT_S=120 \
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
LATTICE_WORKER_CONCURRENCY=1 LATTICE_WORKER_RETRY_BASE_MS=500 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

# the store freezes: connections are accepted, nothing is answered
kill -USR1 "$PPID_"
CID=cmd-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
end=$((SECONDS + 60 * LT_TF))
# until the retry names the stall (logged after the request's own "stalled" line)
until grep -q "stalled: under .*\(reconnecting\|retrying\)" "$WORK/worker.log"; do
  [ $SECONDS -lt $end ] || break; sleep 0.2
done
check "the stalled request is logged" grep -q "S3 PUT .*: stalled" "$WORK/worker.log"
check "the work is retried, naming the stall" \
  grep -q "stalled: under .*LATTICE_S3_LOW_SPEED_TIME_S.*\(reconnecting\|retrying\)" "$WORK/worker.log"
scrape frozen
check "lattice_worker_s3_stalls_total counts it ($(metric frozen lattice_worker_s3_stalls_total))" \
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)' "$(metric frozen lattice_worker_s3_stalls_total)"

# the store answers again: the command completes
kill -USR2 "$PPID_"
s=$(lt_wait_status --final "$STATUS_TOPIC" "$CID" "$WORK/worker.log" || echo '{}')
check "the command succeeded once the store answered ($(cut -c1-300 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
ids=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
  -f '%h\n' 2>/dev/null | grep -o 'lattice.event_id=[0-9a-f-]*' | sort || true)
check "read_committed sees $N events ($(grep -c . <<<"$ids" || true))" [ "$(grep -c . <<<"$ids" || true)" = "$N" ]
check "no event twice" [ "$(uniq -d <<<"$ids" | grep -c . || true)" = 0 ]

grep -E "stalled|command (failed|succeeded|started)" "$WORK/worker.log" | cut -c1-240 || true
[ "$fail" = 0 ] || { echo "--- worker log"; grep -v ' kafka ' "$WORK/worker.log" | tail -40; }
lt_summary test_worker_s3_stall
