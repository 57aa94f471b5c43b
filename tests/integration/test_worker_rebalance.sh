#!/usr/bin/env bash
# Rebalances under load: worker A syncs three accounts (one per partition of
# a 3-partition command topic); mid-sync worker B joins the group and leaves,
# first with SIGTERM, then (new mail, new commands) with kill -9. Checks that
# every message of every account has its object and committed event, the
# watermarks are at the highest UID, no command is lost and no account's
# command ran on two workers at once (tests/crash/worker-rebalance).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_S3_ENDPOINT \
  LATTICE_SCHEMA_REGISTRY_URL LATTICE_CA_FILE LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
exec python3 "$HERE/../crash/worker-rebalance" --build "$BUILD" --messages 300
