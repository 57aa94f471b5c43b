#!/usr/bin/env bash
# Crash campaign, short variant (the long one is `make crash`): 600 messages,
# 5 kill -9 of lattice-worker at random moments, restarts, then nothing lost:
# every .eml stored, every message committed once in Kafka (read_committed),
# watermark at the last UID, no in-doubt row left. No time limit is asserted
# (speed is bench/'s); the last worker gets up to 300 s to finish (a hang guard:
# a sanitizer build on a loaded machine is slow).
# Seed: LATTICE_CRASH_SEED (default time-based, printed for a re-run).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_S3_ENDPOINT \
  LATTICE_SCHEMA_REGISTRY_URL LATTICE_CA_FILE LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
exec python3 "$HERE/../crash/crash-campaign" --build "$BUILD" --messages 600 --kills 5 \
  --seed "${LATTICE_CRASH_SEED:-$(( $(date +%s) % 100000 ))}" --finish-timeout $((300 * LT_TF))
