#!/usr/bin/env bash
# A Kafka client the worker cannot create ends the process: rd_kafka_new()
# failing is not retried in it (after a failure past its threads' start,
# librdkafka 2.0.2 may leave those threads running on freed memory; a clock
# step caused one in the fault campaign, docs/faults.md). The reproducible
# case is a configuration librdkafka refuses only for the slots'
# transactional producers (message.timeout.ms above transaction.timeout.ms):
# the worker starts, its slot cannot create its producer, and the worker
# must log that and exit 1 instead of retrying it with every command.
# Before: the slot logged "(retried with its first command)" and the worker
# ran on. Per run: topic, group, worker id.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL
CMD_TOPIC=kfatal-cmd-$RUN GROUP=kfatal-g$RUN WID=kfatal-w$RUN
WORK=$(mktemp -d)
WPID=
cleanup() {
  lt_stop "$WPID"
  [ "$fail" = 0 ] && rm -rf "$WORK" || echo "logs: $WORK" >&2
}
trap cleanup EXIT
"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 1 >/dev/null
LATTICE_KAFKA_MESSAGE_TIMEOUT_MS=120000 LATTICE_KAFKA_TRANSACTION_TIMEOUT_MS=60000 \
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_WORKER_GROUP_ID=$GROUP LATTICE_WORKER_ID=$WID \
LATTICE_WORKER_CONCURRENCY=1 LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
# the worker exits by itself (120 s: a hang guard; the slot opens at start)
end=$((SECONDS + 120))
while [ $SECONDS -lt $end ] && kill -0 "$WPID" 2>/dev/null; do sleep 0.2; done
rc=0
if kill -0 "$WPID" 2>/dev/null; then rc=running; else wait "$WPID" || rc=$?; WPID=; fi
check "the worker exits 1 (got $rc)" [ "$rc" = 1 ]
check "one error line names the client and the reason" \
  grep -q 'error .*slot 0: kafka: cannot create the producer: .*transaction.timeout.ms.*; exiting 1' \
  "$WORK/worker.log"
check "the creation is not retried in the process" \
  sh -c "! grep -q 'retried with its' '$WORK/worker.log'"
[ "$fail" = 0 ] || tail -20 "$WORK/worker.log" >&2
lt_summary test_worker_kafka_client_fatal
