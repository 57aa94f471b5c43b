#!/usr/bin/env bash
# The fault campaign's short variant (tests/faults/fault-campaign; `make faults`
# runs the full one): a 300-message IMAP folder and 4 Gmail accounts (private
# emulator, 50 ms latency) sync with 2 workers while 2 faults of each kind are
# injected (Kafka, Postgres, MinIO, network, disk), then 2 mixed ones.
# Kafka, Postgres and MinIO are private to the run (they are stopped), every
# server is reached through Toxiproxy. The clock kind is left out here while
# librdkafka's wall-clock waits misbehave under a clock step (docs/faults.md,
# findings; `make faults` runs it). Fails when a message is lost (no
# committed event or no object), a duplicate is seen by a read_committed
# consumer, a fault is not recovered from within the bound, a watermark,
# pending row or command status is wrong, or a worker does not exit 0.
# Needs root (the workers' LATTICE_TMP_DIR is a small tmpfs).
# FAULTS_SHORT_FLAGS adds campaign flags (e.g. "--seed 7").
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD LATTICE_SCHEMA_REGISTRY_URL
WORK=$(mktemp -d)
chmod 711 "$WORK" # the private cluster runs as the postgres user under it
rc=0
# shellcheck disable=SC2086
python3 "$HERE/../faults/fault-campaign" --build "$BUILD" --messages 300 --gmail-messages 40 \
  --faults-per-kind 2 --kinds kafka,pg,s3,net,disk,mixed --hold 1.5 --long-hold 4 \
  --topup 100 --gmail-topup 10 --recover-timeout 240 --json-out "$WORK/faults.json" \
  --work-dir "$WORK/run" ${FAULTS_SHORT_FLAGS:-} || rc=$?
# the logs stay for a failed run (the campaign printed where)
[ "$rc" = 0 ] && rm -rf "$WORK"
exit "$rc"
