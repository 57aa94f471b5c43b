#!/usr/bin/env bash
# The wall clock stepped an hour forward, then an hour back, each time
# between two failed attempts of a command, while it is being retried
# (libfaketime moves CLOCK_REALTIME only: FAKETIME_TIMESTAMP_FILE,
# FAKETIME_NO_CACHE=1, FAKETIME_DONT_FAKE_MONOTONIC=1; the monotonic clock
# goes on):
#   - the retry window (120 s, monotonic) does not expire on the +1 h step:
#     the second failure is retried too;
#   - the backoffs (IMAP reconnects, command retries: seconds) do not last an
#     hour after the -1 h step: the command succeeds well before the hang
#     guard;
#   - the object store refuses requests signed an hour off
#     (RequestTimeTooSkewed): the worker signs with the store's time (its
#     Date) from then on, says so, and the sync completes;
#   - every message's event exactly once (read_committed).
# (The step back ends at the true time: the stack's certificates are minutes
# old, a clock an hour behind would find them not yet valid.)
# The failure is a frozen store (lib/fault_proxy.py, LATTICE_S3_LOW_SPEED_TIME_S
# 2 s): the shared MinIO is never stopped. Per run: topics, consumer group,
# worker id, tenant, account, folder; a private Postgres (lib/private_pg.sh).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
FAKETIME_LIB=
for d in /usr/lib/x86_64-linux-gnu/faketime /usr/lib/aarch64-linux-gnu/faketime /usr/lib/faketime; do
  [ -e "$d/libfaketimeMT.so.1" ] && FAKETIME_LIB=$d/libfaketimeMT.so.1 && break
done
[ -n "$FAKETIME_LIB" ] || { echo "test_worker_clock_step: libfaketime missing (deploy/local/install-deps)" >&2; exit 1; }

TENANT=t$RUN ACCOUNT=clock-$RUN FOLDER=clock-$RUN
CMD_TOPIC=clock-cmd-$RUN RAW_TOPIC=clock-raw-$RUN CKPT_TOPIC=clock-ckpt-$RUN STATUS_TOPIC=clock-status-$RUN
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

lt_pg_private_up
PROXY_PORT=$(lt_free_port)
python3 "$HERE/lib/fault_proxy.py" "$PROXY_PORT" "${LATTICE_S3_ENDPOINT#http://}" "$WORK/proxy.pid" 2>"$WORK/proxy.log" &
PPID_=$!
end=$((SECONDS + 30))
until [ -s "$WORK/proxy.pid" ]; do [ $SECONDS -lt $end ] || { echo "proxy did not start" >&2; exit 1; }; sleep 0.1; done

for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CKPT_TOPIC" "$STATUS_TOPIC"; do "$REPO/deploy/local/stack" topic "$t" 1 >/dev/null; done
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 3 --seed c1 >/dev/null
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

echo "+0" >"$WORK/faketime"
PORT=$(lt_free_port)
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 LD_PRELOAD=$FAKETIME_LIB FAKETIME_TIMESTAMP_FILE=$WORK/faketime FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
LATTICE_S3_ENDPOINT=http://127.0.0.1:$PROXY_PORT LATTICE_S3_LOW_SPEED_TIME_S=2 \
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
LATTICE_WORKER_CONCURRENCY=1 LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_WORKER_RETRY_MAX_MS=1000 \
LATTICE_WORKER_RETRY_WINDOW_S=120 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

# 1. at the true time: a first sync
lt_imap_command "$CMD_TOPIC" "c1-$RUN" "$TENANT" "$ACCOUNT" incremental
s=$(lt_wait_status --final "$STATUS_TOPIC" "c1-$RUN" "$WORK/worker.log" || echo '{}')
check "command 1 succeeded at the true time ($(cut -c1-200 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]

# step TO N: command N fails on the frozen store; between its first and its
# second failed attempt the clock steps to TO; the store answers again after
# the second; the command must succeed
failures() { grep -c "command failed temporarily .*retrying in .*command_id=$1 " "$WORK/worker.log" || true; }
step() {
  local to=$1 n=$2 cid=c$2-$RUN end
  python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 3 --seed "c$n" >/dev/null
  kill -USR1 "$PPID_"
  lt_imap_command "$CMD_TOPIC" "$cid" "$TENANT" "$ACCOUNT" incremental
  end=$((SECONDS + 240))
  until [ "$(failures "$cid")" -ge 1 ]; do [ $SECONDS -lt $end ] || break; sleep 0.1; done
  echo "$to" >"$WORK/faketime" # the clock steps while the command is being retried
  until [ "$(failures "$cid")" -ge 2 ]; do [ $SECONDS -lt $end ] || break; sleep 0.1; done
  kill -USR2 "$PPID_"
  check "command $n failed twice on the frozen store, retried each time ($(failures "$cid"))" \
    [ "$(failures "$cid")" -ge 2 ]
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$cid" "$WORK/worker.log" || echo '{}')
  check "command $n succeeded after the clock stepped to $to ($(cut -c1-200 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
}

# 2. an hour forward: the retry window does not run out, the store's time is learnt
step +3600 2
check "the retry window did not expire on the step" \
  bash -c "! grep -q 'beyond the .* retry window' '$WORK/worker.log'"
check "the skew is seen and said: the clock about +3600 s off the store's (ahead)" \
  grep -Eq "RequestTimeTooSkewed: this host's clock is \+3[56][0-9][0-9] s off the store's" "$WORK/worker.log"

# 3. an hour back (to the true time): no backoff lasts an hour
step +0 3
check "no attempt failed for the skew: the store's time was used" \
  bash -c "! grep -q 'command failed.*RequestTimeTooSkewed' '$WORK/worker.log'"

ids=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
  -f '%h\n' 2>/dev/null | grep -o 'lattice.event_id=[0-9a-f-]*' | sort || true)
check "read_committed sees 9 events ($(grep -c . <<<"$ids" || true))" [ "$(grep -c . <<<"$ids" || true)" = 9 ]
check "no event twice" [ "$(uniq -d <<<"$ids" | grep -c . || true)" = 0 ]

grep -E "Skewed|command (failed|succeeded|started|abandoned)|rebalance|revoked|assigned|lost" "$WORK/worker.log" | cut -c1-240 || true
[ "$fail" = 0 ] || { echo "--- worker log"; grep -v ' kafka ' "$WORK/worker.log" | tail -40; }
lt_summary test_worker_clock_step
