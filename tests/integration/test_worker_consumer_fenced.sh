#!/usr/bin/env bash
# A static group member (LATTICE_KAFKA_GROUP_INSTANCE_ID) fenced by the
# broker: another consumer joins with the same group.instance.id (what a
# broker restart can make of the worker's own rejoin, librdkafka issue
# #3437), the broker answers FENCED_INSTANCE_ID and the worker's consumer
# gets a fatal error: it is unusable for good. The worker must not go on
# polling it (it would consume no command ever again while /readyz says
# ready): it reports not ready, drains what runs and exits 1 with the
# reason, so its supervisor starts it again. Per run: topic, group, worker id.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL
CMD_TOPIC=fenced-cmd-$RUN GROUP=fenced-g$RUN WID=fenced-w$RUN
WORK=$(mktemp -d)
WPID= KPID=
cleanup() {
  [ -n "$KPID" ] && kill "$KPID" 2>/dev/null || true
  lt_stop "$WPID"
  [ "$fail" = 0 ] && rm -rf "$WORK" || echo "logs: $WORK" >&2
}
trap cleanup EXIT
"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 1 >/dev/null
PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_WORKER_GROUP_ID=$GROUP LATTICE_WORKER_ID=$WID \
LATTICE_KAFKA_GROUP_INSTANCE_ID=$WID LATTICE_KAFKA_SESSION_TIMEOUT_MS=10000 \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 LATTICE_LOG_FORMAT=text \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"
lt_wait_http /readyz "ready before the fence"

# the same group.instance.id joins: the broker fences the worker's member
kcat -b "$BROKER" -G "$GROUP" -X group.instance.id="$WID" -X session.timeout.ms=10000 \
  -X partition.assignment.strategy=cooperative-sticky \
  -q -f '%s\n' "$CMD_TOPIC" >"$WORK/kcat.out" 2>"$WORK/kcat.err" &
KPID=$!

# the worker exits by itself (120 s: a hang guard; the fence comes with its
# next heartbeat, within seconds)
end=$((SECONDS + 120))
while [ $SECONDS -lt $end ] && kill -0 "$WPID" 2>/dev/null; do sleep 0.2; done
rc=0
if kill -0 "$WPID" 2>/dev/null; then
  rc=running
  check "the fenced worker stays not ready" [ "$(code /readyz)" != 200 ]
else
  wait "$WPID" || rc=$?
fi
WPID=
check "the fenced worker exits 1 (got $rc)" [ "$rc" = 1 ]
check "the fatal consumer error is logged as the reason" \
  grep -q 'consumer: fatal error.*group.instance.id' "$WORK/worker.log"
check "the worker drained and stopped" grep -q 'stopped' "$WORK/worker.log"
[ "$fail" = 0 ] || tail -20 "$WORK/worker.log" >&2
lt_summary test_worker_consumer_fenced
