#!/usr/bin/env bash
# Partitions a static member left to nobody are assigned again. A static
# member (group.instance.id) that ends between the first round of a
# cooperative rebalance (it revoked partitions for another member) and its
# rejoin, and comes back inside the session timeout, gets its cached
# assignment without a new rebalance: the partitions it revoked belong to
# no member, and their commands wait until the group changes. The fault
# campaign saw it (docs/faults.md, finding 4). The worker's group watch
# (LATTICE_WORKER_GROUP_CHECK_S) sees partitions unowned in a stable group
# and rejoins the group, which assigns them.
#   - member H (tests/tools/group_member, static) owns the 4 partitions;
#   - worker W (static) joins: H revokes 2 for W and ends in its revoke
#     callback (no rejoin); H comes back at once with the same instance id
#     and gets its 2 back, the other 2 are owned by nobody;
#   - W rejoins (its log says why) and owns the 2 within 90 s;
#   - a command on each of them runs on W.
# Per run: topic, group, instance ids, tenant.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL
CMD_TOPIC=orphan-cmd-$RUN STATUS_TOPIC=orphan-st-$RUN GROUP=orphan-g$RUN
WORK=$(mktemp -d)
HPID= WPID=
cleanup() {
  lt_stop "$HPID" "$WPID"
  [ "$fail" = 0 ] && rm -rf "$WORK" || echo "logs: $WORK" >&2
}
trap cleanup EXIT
"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 4 >/dev/null
STATUS_TOPIC=$("$REPO/deploy/local/stack" topic "$STATUS_TOPIC")
BROKER=$LATTICE_KAFKA_BOOTSTRAP_SERVERS
SESSION_MS=60000

start_member() { # LOG [flags]: its pid in PID
  : >"$1"
  "$BUILD/tests/group_member" --bootstrap "$BROKER" --group "$GROUP" --topic "$CMD_TOPIC" \
    --instance "orphan-h-$RUN" --session-ms $SESSION_MS "${@:2}" >"$1" 2>&1 &
  PID=$!
}
wait_line() { # LOG REGEX SECONDS
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do grep -qE "$2" "$1" && return 0; sleep 0.1; done
  return 1
}

start_member "$WORK/h1.log" --exit-on-revoke; HPID=$PID
check "H owns the 4 partitions alone" wait_line "$WORK/h1.log" '^assigned 0,1,2,3$' $((120 * LT_TF))

: >"$WORK/w.log"
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=$GROUP LATTICE_WORKER_ID=orphan-w-$RUN \
LATTICE_KAFKA_GROUP_INSTANCE_ID=orphan-w-$RUN LATTICE_KAFKA_SESSION_TIMEOUT_MS=$SESSION_MS \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_LOG_FORMAT=text \
LATTICE_WORKER_GROUP_CHECK_S=2 LATTICE_WORKER_DRAIN_TIMEOUT_S=3 \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
  "$BUILD/worker/lattice-worker" >"$WORK/w.log" 2>&1 &
WPID=$!

# H revokes 2 partitions for W and ends in the revoke callback
rc=0; wait "$HPID" || rc=$?; HPID=
check "H ended in its revoke callback (rc $rc)" grep -qE '^exiting$' "$WORK/h1.log"
kept=$(grep -E '^revoked ' "$WORK/h1.log" | head -1 | cut -d' ' -f2 | tr ',' '\n' | sort -n | paste -sd,)
# back at once, the same static id: its cached assignment, no rebalance
start_member "$WORK/h2.log"; HPID=$PID
check "H is back with its cached assignment" wait_line "$WORK/h2.log" '^assigned [0-9]' $((60 * LT_TF))
hparts=$(grep -E '^assigned ' "$WORK/h2.log" | head -1 | cut -d' ' -f2)
orphans=$(python3 -c 'import sys; h=set(sys.argv[1].split(",")); print(",".join(p for p in "0123" if p not in h))' "$hparts")
echo "H revoked $kept and holds $hparts; owned by nobody: $orphans (W holds $(lt_held "$WORK/w.log"))"
check "the revoked partitions ($kept) are owned by nobody after H's return" [ "$orphans" = "$kept" ]

check "W rejoins the group for the unowned partitions" \
  wait_line "$WORK/w.log" "partition\(s\) of $CMD_TOPIC \($orphans\) owned by no member" $((90 * LT_TF))
check "W owns the 2 partitions nobody owned" lt_wait_held "$WORK/w.log" 2 $((90 * LT_TF))

# a command on each of them runs on W (an account unknown to the database:
# each one ends with a final status, so it was consumed)
for p in ${orphans//,/ }; do
  printf '{"schema":"lattice.mail.sync.cmd.v1","command_id":"orphan-%s-%s","tenant_id":"t-orphan-%s","account_id":"nope-%s","provider":"imap","kind":"incremental","requested_at":"2026-12-07T12:00:00Z","requested_by":"test"}\n' \
    "$RUN" "$p" "$RUN" "$p" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -p "$p" -k "nope-$p" 2>/dev/null
done
ran=0
for p in ${orphans//,/ }; do
  st=$(lt_wait_status --final "$STATUS_TOPIC" "orphan-$RUN-$p" "$WORK/w.log" || echo '{}')
  [ "$(jget "$st" worker_id)" = "orphan-w-$RUN" ] && ran=$((ran + 1))
done
check "a command on each formerly unowned partition ran on W ($ran)" [ "$ran" = 2 ]

kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "W exits 0 on SIGTERM (rc $rc)" [ "$rc" = 0 ]
[ "$fail" = 0 ] || tail -n 30 "$WORK/h1.log" "$WORK/h2.log" "$WORK/w.log" >&2
lt_summary test_worker_orphaned_partition
