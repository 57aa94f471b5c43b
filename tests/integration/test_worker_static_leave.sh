#!/usr/bin/env bash
# A worker stopped with SIGTERM gives its partitions up before it closes its
# consumer, also as a static group member (LATTICE_KAFKA_GROUP_INSTANCE_ID):
# it unsubscribes, serves the revocation, then closes. librdkafka 2.0.2 can
# wait for good in rd_kafka_consumer_close() when a cooperative assignment
# arrives while it closes (librdkafka #4527; the fault campaign saw a worker
# end by its shutdown deadline, exit 1, when the other's eviction rebalanced
# the group during its close). Two static workers share a 4-partition command
# topic with a 120 s session timeout:
#   - SIGTERM to A: A exits 0, and B owns all 4 partitions long before the
#     session timeout (A left the group; a static member that only closes
#     is evicted after 120 s);
#   - a command on every partition then runs on B (nothing stays unowned);
#   - SIGTERM to B: it exits 0 and logs "stopped".
# Per run: topic, group, worker ids, tenant.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL
CMD_TOPIC=sleave-cmd-$RUN STATUS_TOPIC=sleave-st-$RUN GROUP=sleave-g$RUN
WORK=$(mktemp -d)
APID= BPID=
cleanup() {
  lt_stop "$APID" "$BPID"
  [ "$fail" = 0 ] && rm -rf "$WORK" || echo "logs: $WORK" >&2
}
trap cleanup EXIT
"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 4 >/dev/null
STATUS_TOPIC=$("$REPO/deploy/local/stack" topic "$STATUS_TOPIC")
SESSION_MS=120000

start_worker() { # NAME: its pid in PID
  : >"$WORK/$1.log" # there before the first read
  LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
  LATTICE_WORKER_GROUP_ID=$GROUP LATTICE_WORKER_ID=sleave-$1-$RUN \
  LATTICE_KAFKA_GROUP_INSTANCE_ID=sleave-$1-$RUN LATTICE_KAFKA_SESSION_TIMEOUT_MS=$SESSION_MS \
  LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_LOG_FORMAT=text \
  LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
    "$BUILD/worker/lattice-worker" >"$WORK/$1.log" 2>&1 &
  PID=$!
}

start_worker a; APID=$PID
lt_wait_assigned "$WORK/a.log"
check "A holds the 4 partitions alone" lt_wait_held "$WORK/a.log" 4 $((120 * LT_TF))
start_worker b; BPID=$PID
# the cooperative rebalance moves some partitions to B (a hang guard: 120 s)
end=$((SECONDS + 120 * LT_TF))
while [ $SECONDS -lt $end ] && [ "$(lt_held "$WORK/b.log")" -lt 1 ]; do sleep 0.2; done
ha=$(lt_held "$WORK/a.log") hb=$(lt_held "$WORK/b.log")
check "B joined and holds some partitions ($hb), A the others ($ha)" [ $((ha + hb)) = 4 -a "$hb" -ge 1 ]
sleep 2 # let the group settle (the second round of the cooperative rebalance)

kill -TERM "$APID"; rc=0; t0=$SECONDS; wait "$APID" || rc=$?; APID=
check "A exits 0 on SIGTERM (rc $rc, $((SECONDS - t0)) s)" [ "$rc" = 0 ]
check "A gave its partitions up before closing (unsubscribe, revocation)" \
  grep -qE "revoked [0-9]+ partition" "$WORK/a.log"
check "A holds none when it stops" [ "$(lt_held "$WORK/a.log")" = 0 ]
# left, not evicted: B gets A's partitions well inside the session timeout
check "B owns all 4 partitions within 60 s (session timeout $((SESSION_MS / 1000)) s)" \
  lt_wait_held "$WORK/b.log" 4 60

# a command on each partition runs on B (an account unknown to the
# database: each one ends with a final status, so it was consumed)
for p in 0 1 2 3; do
  printf '{"schema":"lattice.mail.sync.cmd.v1","command_id":"sleave-%s-%s","tenant_id":"t-sleave-%s","account_id":"nope-%s","provider":"imap","kind":"incremental","requested_at":"2026-12-07T12:00:00Z","requested_by":"test"}\n' \
    "$RUN" "$p" "$RUN" "$p" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -p "$p" -k "nope-$p" 2>/dev/null
done
ran=0
for p in 0 1 2 3; do
  st=$(lt_wait_status --final "$STATUS_TOPIC" "sleave-$RUN-$p" "$WORK/b.log" || echo '{}')
  [ "$(jget "$st" worker_id)" = "sleave-b-$RUN" ] && ran=$((ran + 1))
done
check "a command on each of the 4 partitions ran on B ($ran)" [ "$ran" = 4 ]

kill -TERM "$BPID"; rc=0; wait "$BPID" || rc=$?; BPID=
check "B exits 0 on SIGTERM (rc $rc)" [ "$rc" = 0 ]
check "B logged stopped" grep -q "stopped" "$WORK/b.log"
[ "$fail" = 0 ] || tail -n 20 "$WORK/a.log" "$WORK/b.log" >&2
lt_summary test_worker_static_leave
