#!/usr/bin/env bash
# The stop has a deadline on the monotonic clock: after SIGTERM a worker
# whose drain cannot finish (its command waits on a frozen object store,
# with no stall detection and a long request timeout) logs what it was
# waiting for and exits 1 once LATTICE_WORKER_SHUTDOWN_TIMEOUT_S (10 s here)
# has passed, instead of outliving the pod's grace period (in the fault
# campaign a wall-clock step made librdkafka's CLOCK_REALTIME waits last an
# hour: workers did not exit within 90 s of SIGTERM, docs/faults.md). Then
# nothing is lost: a new worker runs the command again and it succeeds,
# every message's event exactly once (read_committed).
# The hang guard (60 s after SIGTERM) is far below the frozen request's
# LATTICE_S3_TIMEOUT_S (600 s) and the drain's own wait (drain timeout +
# 60 s), so only the deadline can end the process in time. The store is
# the stack's MinIO behind a private proxy (lib/fault_proxy.py) that this
# test freezes. Per run: topics, consumer group, worker id, tenant, account,
# folder; a private Postgres (lib/private_pg.sh) with this tree's migrations.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD

TENANT=t$RUN ACCOUNT=sdl-$RUN FOLDER=sdl-$RUN
CMD_TOPIC=sdl-cmd-$RUN RAW_TOPIC=sdl-raw-$RUN CKPT_TOPIC=sdl-ckpt-$RUN STATUS_TOPIC=sdl-status-$RUN
N=5
WORK=$(mktemp -d)
WPID= PPID_=
cleanup() {
  lt_stop "$WPID"
  [ -n "$PPID_" ] && kill -CONT "$PPID_" 2>/dev/null; lt_stop "$PPID_"
  lt_pg_private_down
  lt_imap_delete "$FOLDER"
  [ "$fail" = 0 ] && rm -rf "$WORK" || echo "logs: $WORK" >&2
}
trap cleanup EXIT

lt_pg_private_up # the schema of this tree, whatever the stack's has
PROXY_PORT=$(lt_free_port)
python3 "$HERE/lib/fault_proxy.py" "$PROXY_PORT" "${LATTICE_S3_ENDPOINT#http://}" "$WORK/proxy.pid" 2>"$WORK/proxy.log" &
PPID_=$!
end=$((SECONDS + 30))
until [ -s "$WORK/proxy.pid" ]; do [ $SECONDS -lt $end ] || { echo "proxy did not start" >&2; exit 1; }; sleep 0.1; done

for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CKPT_TOPIC" "$STATUS_TOPIC"; do "$REPO/deploy/local/stack" topic "$t" 1 >/dev/null; done
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count $N --seed sdl >/dev/null
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

worker() { # LOG: one worker of the group, behind the proxy
  LATTICE_S3_ENDPOINT=http://127.0.0.1:$PROXY_PORT LATTICE_S3_LOW_SPEED_TIME_S=0 LATTICE_S3_TIMEOUT_S=600 \
  LATTICE_WORKER_DRAIN_TIMEOUT_S=2 LATTICE_WORKER_SHUTDOWN_TIMEOUT_S=10 \
  LATTICE_KAFKA_SESSION_TIMEOUT_MS=10000 \
  LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC \
  LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
  LATTICE_WORKER_CONCURRENCY=1 LATTICE_WORKER_RETRY_BASE_MS=500 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
  LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
    "$BUILD/worker/lattice-worker" >"$1" 2>&1 &
  WPID=$!
}
worker "$WORK/worker1.log"
lt_wait_assigned "$WORK/worker1.log"

# the store freezes: connections are accepted, nothing is answered
kill -USR1 "$PPID_"
CID=cmd-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
end=$((SECONDS + 120))
until grep -q "command started" "$WORK/worker1.log"; do [ $SECONDS -lt $end ] || break; sleep 0.2; done
check "the command started" grep -q "command started" "$WORK/worker1.log"
sleep 2 # its first object request is in flight, frozen

kill -TERM "$WPID"
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ] && kill -0 "$WPID" 2>/dev/null; do sleep 0.2; done
rc=0
if kill -0 "$WPID" 2>/dev/null; then
  rc=running
  kill -KILL "$WPID" 2>/dev/null || true
  wait "$WPID" 2>/dev/null || true
else
  wait "$WPID" || rc=$?
fi
WPID=
check "the worker ends after SIGTERM with exit 1 (got $rc)" [ "$rc" = 1 ]
check "the error names the deadline and what the stop waited for" \
  grep -q "error .*stopping: not done within LATTICE_WORKER_SHUTDOWN_TIMEOUT_S (10 s), still waiting for the \(running commands\|slots\)" \
  "$WORK/worker1.log"

# the store answers again; a new worker runs the command again
kill -USR2 "$PPID_"
worker "$WORK/worker2.log"
lt_wait_assigned "$WORK/worker2.log"
s=$(lt_wait_status --final "$STATUS_TOPIC" "$CID" "$WORK/worker2.log" || echo '{}')
check "the command succeeded in the new worker ($(cut -c1-300 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
check "the new worker ran it" grep -q "command succeeded" "$WORK/worker2.log"
ids=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
  -f '%h\n' 2>/dev/null | grep -o 'lattice.event_id=[0-9a-f-]*' | sort || true)
check "read_committed sees $N events ($(grep -c . <<<"$ids" || true))" [ "$(grep -c . <<<"$ids" || true)" = "$N" ]
check "no event twice" [ "$(uniq -d <<<"$ids" | grep -c . || true)" = 0 ]
# an ordinary stop stays an ordinary stop: exit 0, long before the deadline
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "the new worker exits 0 on SIGTERM (got $rc)" [ "$rc" = 0 ]

grep -E "stopping|command (failed|succeeded|started|abandoned)" "$WORK"/worker*.log | cut -c1-300 || true
lt_summary test_worker_shutdown_deadline
