#!/usr/bin/env bash
# Crash campaign with mailbox changes, short variant (the long one is `make
# crash-changes`): 600 messages in a QRESYNC folder, 6 kill -9 of
# lattice-worker at random moments, and between and during the kills flags
# set and cleared, messages expunged and moved out of the folder, new mail.
# Then: 0 lost changes (the state replayed from the committed raw and change
# events equals the folder's live UIDs and flags), 0 duplicate change event
# ids and 0 duplicate raw events under read_committed, the known set equals
# the live UIDs, no pending row. No time limit is asserted; the last worker
# gets up to 300 s to finish (a hang guard).
# Seed: LATTICE_CRASH_SEED (default time-based, printed for a re-run).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_S3_ENDPOINT \
  LATTICE_SCHEMA_REGISTRY_URL LATTICE_CA_FILE LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
exec python3 "$HERE/../crash/crash-campaign" --build "$BUILD" --messages 600 --kills 6 --changes \
  --seed "${LATTICE_CRASH_SEED:-$(( $(date +%s) % 100000 ))}" --finish-timeout $((300 * LT_TF))
