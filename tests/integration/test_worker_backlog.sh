#!/usr/bin/env bash
# A backlog of 100k commands on the worker's topic: the worker holds at most
# LATTICE_WORKER_QUEUE_MAX of them in memory (it pauses fetching, and
# resumes), stays in its consumer group the whole time (a short
# max.poll.interval.ms: a poll loop held up would be kicked out), and
# processes every command once; a second worker of the group finds nothing
# left of them. The commands are already recorded as succeeded
# (mail_sync_commands), so each costs one lookup: the queue is what is
# tested, not the mail servers.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline
N=${LATTICE_TEST_BACKLOG:-100000}
ACCOUNTS=10
QMAX=2000
TENANT=t$RUN
WORK=$(mktemp -d)
WPID=
cleanup() {
  lt_stop "$WPID"
  psqlq "DELETE FROM mail_sync_commands WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psqlq "INSERT INTO mail_sync_commands (command_id, tenant_id, account_id, provider, kind, status, worker_id, finished_at)
       SELECT 'bk-$RUN-' || i, '$TENANT', 'bk-$RUN-' || (i % $ACCOUNTS), 'imap', 'incremental', 'succeeded', 'seed', now()
       FROM generate_series(1, $N) AS i" >/dev/null
CMD_TOPIC=$("$HERE/../../deploy/local/stack" topic "test.worker-backlog.$RUN.cmd" 3)
python3 - "$N" "$ACCOUNTS" "$RUN" "$TENANT" >"$WORK/commands.txt" <<'EOF'
import sys
n, accounts, run, tenant = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
for i in range(1, n + 1):
    a = f"bk-{run}-{i % accounts}"
    print(f'{a}\t{{"schema":"lattice.mail.sync.cmd.v1","command_id":"bk-{run}-{i}","tenant_id":"{tenant}",'
          f'"account_id":"{a}","provider":"imap","kind":"incremental",'
          f'"requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}}')
EOF
kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' -l "$WORK/commands.txt" 2>/dev/null

PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
worker() { # worker LOG
  : >"$1"
  env LATTICE_TOPIC_COMMANDS="$CMD_TOPIC" LATTICE_WORKER_GROUP_ID="test-$RUN" \
    LATTICE_WORKER_ID="test-$RUN" LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
    LATTICE_KAFKA_MAX_POLL_INTERVAL_MS=10000 LATTICE_KAFKA_SESSION_TIMEOUT_MS=6000 \
    LATTICE_WORKER_QUEUE_MAX=$QMAX LATTICE_LOG_FORMAT=text LATTICE_LOG_LEVEL=info \
    LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
    "$BUILD/worker/lattice-worker" >"$1" 2>&1 &
  WPID=$!
}
SKIPPED='lattice_worker_commands_total{provider="imap",kind="incremental",result="skipped",error_class="none"}'

worker "$WORK/w1.log"
lt_wait_http /readyz "worker 1 ready"
end=$((SECONDS + 900 * LT_TF)) # a hang guard: 100k lookups on a loaded machine
done_n=0
while [ $SECONDS -lt $end ]; do
  scrape now || true
  done_n=$(metric now "$SKIPPED")
  is "$done_n" "$N" && break
  sleep 1
done
check "all $N commands processed ($done_n)" is "$done_n" "$N"
check "fetching paused when $QMAX were queued" grep -q "paused fetching commands: [0-9]* queued (LATTICE_WORKER_QUEUE_MAX $QMAX)" "$WORK/w1.log"
check "and resumed" grep -q "resumed fetching commands" "$WORK/w1.log"
scrape end
check "pauses counted" bash -c "[ \"\$(python3 -c 'import sys; print(float(sys.argv[1]) >= 1)' '$(metric end lattice_worker_consumer_pauses_total)')\" = True ]"
check "the queue never held much more than its bound" \
  bash -c "! grep -o 'paused fetching commands: [0-9]*' '$WORK/w1.log' | awk '{ if (\$4 > 2 * $QMAX) bad=1 } END { exit !bad }'"
check "never out of the group (no revocation, no lost partition)" \
  bash -c "! grep -Eqi 'revoked|lost [0-9]+ partition|max.poll|MAX_POLL' '$WORK/w1.log'"
echo "pauses: $(grep -c 'paused fetching commands' "$WORK/w1.log" || true), most queued at a pause: $(grep -o 'paused fetching commands: [0-9]*' "$WORK/w1.log" | awk '{ if ($4 > m) m = $4 } END { print m + 0 }')"
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker 1 exited 0 on SIGTERM" [ "$rc" = 0 ]

# Every offset committed: a second worker of the group skips none of them;
# one more command per account (unknown accounts: dead-lettered) shows it
# has read each partition to its end.
worker "$WORK/w2.log"
lt_wait_assigned "$WORK/w2.log"
for i in $(seq 0 $((ACCOUNTS - 1))); do
  lt_imap_command "$CMD_TOPIC" "end-$RUN-$i" "$TENANT" "bk-$RUN-$i" incremental
done
for i in $(seq 0 $((ACCOUNTS - 1))); do
  s=$(lt_wait_status --final lattice.mail.sync.status.v1 "end-$RUN-$i" "$WORK/w2.log")
  check "worker 2 ran account $i's next command ($(jget "$s" result))" [ "$(jget "$s" result)" = dead_lettered ]
done
check "worker 2 ran none of the $N again" bash -c "! grep -q 'command already succeeded' '$WORK/w2.log'"
lt_stop "$WPID"; WPID=
[ "$fail" = 0 ] || { echo "--- worker 1 log"; grep -v 'already succeeded' "$WORK/w1.log" | tail -40; }
lt_summary test_worker_backlog
