#!/usr/bin/env bash
# A Kafka outage is visible, and not by its noise: the broker killed (kill
# -9) under a running worker gives ONE log line when every broker is
# unreachable and one when they answer again (the clients' repeated
# librdkafka errors are counted, logged at debug), the metrics
# lattice_worker_kafka_brokers_up / _unreachable_seconds / _outages_total /
# _client_errors_total say it, and /readyz answers 503 while the brokers are
# unreachable, 200 again after. A command sent after the outage succeeds.
# The broker is a private single-node KRaft broker (own ports and data
# directory, the stack's cached jars; the stack's broker is shared); Postgres
# a private cluster with this tree's migrations (lib/private_pg.sh).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
. "$HERE/lib/private_kafka.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD

TENANT=t$RUN ACCOUNT=kout-$RUN FOLDER=kout-$RUN
WORK=$(mktemp -d)
WPID= KPID=
cleanup() {
  lt_stop "$WPID"
  [ -n "$KPID" ] && kill -KILL "$KPID" 2>/dev/null && wait "$KPID" 2>/dev/null || true
  lt_pg_private_down
  lt_imap_delete "$FOLDER"
  rm -rf "$WORK"
}
trap cleanup EXIT
lt_pg_private_up

# --- the private broker ------------------------------------------------------
lt_kafka_private_up


python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 3 --seed k >/dev/null
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
LATTICE_KAFKA_BOOTSTRAP_SERVERS=$BROKER LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC \
LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_TOPIC_DLQ=$DLQ_TOPIC \
LATTICE_TOPIC_CHANGES=$CHG_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN LATTICE_WORKER_CONCURRENCY=2 \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"
lt_wait_http /readyz "/readyz 200 with the broker up"
scrape before
check "brokers_up 1 before" is "$(metric before lattice_worker_kafka_brokers_up)" 1

# the outage
from=$(wc -l <"$WORK/worker.log")
{ kill -KILL "$KPID"; wait "$KPID"; } 2>/dev/null || true; KPID=
end=$((SECONDS + 90 * LT_TF))
until grep -q "kafka: all brokers unreachable" "$WORK/worker.log" && [ "$(code /readyz)" = 503 ]; do
  [ $SECONDS -lt $end ] || break; sleep 0.2
done
check "one line says the brokers are unreachable" [ "$(grep -c "kafka: all brokers unreachable" "$WORK/worker.log" || true)" = 1 ]
check "/readyz 503 while the brokers are unreachable ($(cat "$WORK/body" 2>/dev/null))" [ "$(code /readyz)" = 503 ]
sleep 15 # the outage goes on: librdkafka keeps reconnecting meanwhile
scrape down
check "brokers_up 0 during the outage" is "$(metric down lattice_worker_kafka_brokers_up)" 0
check "outages_total 1" is "$(metric down lattice_worker_kafka_outages_total)" 1
check "unreachable_seconds counts the outage ($(metric down lattice_worker_kafka_unreachable_seconds))" \
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 10 else 1)' "$(metric down lattice_worker_kafka_unreachable_seconds)"
check "client errors are counted ($(metric down lattice_worker_kafka_client_errors_total))" \
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)' "$(metric down lattice_worker_kafka_client_errors_total)"
noisy=$(tail -n +"$((from + 1))" "$WORK/worker.log" | grep -E '^[^ ]+ (warn|error) ' | grep -ci kafka || true)
tail -n +"$((from + 1))" "$WORK/worker.log" | grep -E '^[^ ]+ (warn|error) ' | grep -i kafka | cut -c1-200 | head -20 || true
check "the outage logged at most 3 warn/error lines about Kafka ($noisy)" [ "$noisy" -le 3 ]

# the broker back
kafka_start
end=$((SECONDS + 120 * LT_TF))
until grep -q "kafka: brokers reachable again" "$WORK/worker.log" && [ "$(code /readyz)" = 200 ]; do
  [ $SECONDS -lt $end ] || break; sleep 0.2
done
check "one line says they answer again" [ "$(grep -c "kafka: brokers reachable again" "$WORK/worker.log" || true)" = 1 ]
check "/readyz 200 again" [ "$(code /readyz)" = 200 ]
scrape up
check "brokers_up 1 again" is "$(metric up lattice_worker_kafka_brokers_up)" 1
check "unreachable_seconds 0 again" is "$(metric up lattice_worker_kafka_unreachable_seconds)" 0

CID=cmd-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
s=$(lt_wait_status --final "$STATUS_TOPIC" "$CID" "$WORK/worker.log" || echo '{}')
check "a command after the outage succeeds ($(cut -c1-200 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
scrape after
check "txn_coordinator_up 1 after a transaction" is "$(metric after lattice_worker_kafka_txn_coordinator_up)" 1

grep -E "kafka: (all brokers|brokers reachable|transaction coordinator)" "$WORK/worker.log" | cut -c1-220 || true
[ "$fail" = 0 ] || { echo "--- worker log"; tail -60 "$WORK/worker.log"; }
lt_summary test_worker_kafka_outage
