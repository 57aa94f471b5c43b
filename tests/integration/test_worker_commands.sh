#!/usr/bin/env bash
# The worker's guards around a command, against the real stack:
#   1. a topic it produces to (here the DLQ) missing: it fails at start,
#      naming the setting and the topic, exit status non-zero;
#   2. spill files a killed predecessor with its worker id left in
#      LATTICE_TMP_DIR are removed at start, other workers' are kept;
#   3. a command id is one account's: the id of a command that succeeded
#      for account A, sent for account B, is dead-lettered with its reason
#      (not skipped as done), and A's row is untouched;
#   4. a command whose row already has LATTICE_WORKER_MAX_ATTEMPTS runs that
#      never finished nor made progress is dead-lettered with its reason
#      instead of run;
#   5. a command that takes its worker down (kill -9 during it, every time)
#      is run LATTICE_WORKER_MAX_ATTEMPTS times, then dead-lettered.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD LATTICE_TEST_IMAP_HOST
TENANT=t$RUN
A=cmd-a-$RUN
B=cmd-b-$RUN
HANG=cmd-hang-$RUN
FOLDER="cmds-$RUN"
WORK=$(mktemp -d)
WPID= HPID=
STATUS=lattice.mail.sync.status.v1
DLQ=lattice.mail.sync.cmd.dlq.v1
cleanup() {
  lt_stop "$WPID" "$HPID"
  lt_imap_delete "$FOLDER"
  psqlq "DELETE FROM mail_sync_commands WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 2 --seed c
lt_imap_account "$TENANT" "$A" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"
lt_imap_account "$TENANT" "$B" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"
# An IMAP server that accepts and never answers: a command for it runs
# until its worker is killed.
HPORT=$(lt_free_port)
python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64); c=[]
while True: c.append(s.accept()[0])' "$HPORT" &
HPID=$!
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$HANG', 'imap', '{\"host\":\"127.0.0.1\",\"port\":$HPORT,\"username\":\"u\",\"password_env\":\"$(lt_secret_env "$TENANT" IMAP_PASSWORD)\",\"folders\":[\"INBOX\"]}'::jsonb)" >/dev/null

CMD_TOPIC=$("$HERE/../../deploy/local/stack" topic "test.worker-commands.$RUN.cmd" 3)
mkdir -p "$WORK/tmp"
worker() { # worker LOG [VAR=VALUE...]: a worker of this run in the background
  local log=$1; shift
  : >"$log"
  env LATTICE_TOPIC_COMMANDS="$CMD_TOPIC" LATTICE_WORKER_GROUP_ID="test-$RUN" \
    LATTICE_WORKER_ID="test-$RUN" LATTICE_KAFKA_GROUP_INSTANCE_ID="test-$RUN" \
    LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE="$LATTICE_CA_FILE" \
    LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_WORKER_MAX_ATTEMPTS=2 \
    LATTICE_TMP_DIR="$WORK/tmp" "$@" "$BUILD/worker/lattice-worker" >"$log" 2>&1 &
  WPID=$!
}
final() { lt_wait_status --final "$STATUS" "$1" "$2"; }
command_for() { # command_for ID ACCOUNT
  lt_imap_command "$CMD_TOPIC" "$1" "$TENANT" "$2" incremental
}

# 1. a missing DLQ topic: no start (a hang guard only; the check is the exit)
rc=0
worker "$WORK/nodlq.log" LATTICE_TOPIC_DLQ="missing.dlq.$RUN"
NPID=$WPID
end=$((SECONDS + 120 * LT_TF))
while [ $SECONDS -lt $end ] && kill -0 "$NPID" 2>/dev/null; do sleep 0.2; done
if kill -0 "$NPID" 2>/dev/null; then lt_stop "$NPID"; rc=running; else wait "$NPID" || rc=$?; fi
WPID=
check "worker without its DLQ topic exits non-zero at start (rc $rc)" \
  bash -c "[ '$rc' != 0 ] && [ '$rc' != running ]"
check "the error names the setting and the topic" \
  grep -q "cannot start: LATTICE_TOPIC_DLQ: .*missing.dlq.$RUN" "$WORK/nodlq.log"

# 2. spill files: this worker id's removed at start, others kept
touch "$WORK/tmp/lattice-test-$RUN-msg-Ab12Cd" "$WORK/tmp/lattice-test-$RUN-x-msg-Ab12Cd" \
  "$WORK/tmp/lattice-test-$RUN-msg-Ab12Cd-keep" "$WORK/tmp/lattice-other-msg-Zz9Yy8"
worker "$WORK/w1.log"
lt_wait_assigned "$WORK/w1.log"
check "own stale spill file removed" [ ! -e "$WORK/tmp/lattice-test-$RUN-msg-Ab12Cd" ]
check "spill file of worker test-$RUN-x kept" [ -e "$WORK/tmp/lattice-test-$RUN-x-msg-Ab12Cd" ]
check "file that is no spill file kept" [ -e "$WORK/tmp/lattice-test-$RUN-msg-Ab12Cd-keep" ]
check "another worker's spill file kept" [ -e "$WORK/tmp/lattice-other-msg-Zz9Yy8" ]

# 3. one command id, two accounts
X=same-$RUN
command_for "$X" "$A"
sa=$(final "$X" "$WORK/w1.log")
check "A's command succeeded ($sa)" [ "$(jget "$sa" result)" = succeeded ]
command_for "$X" "$B"
command_for "after-$RUN" "$B" # B's commands run in order: X is done before it
sb=$(final "after-$RUN" "$WORK/w1.log")
check "B's next command succeeded ($sb)" [ "$(jget "$sb" result)" = succeeded ]
xb=$(lt_statuses "$STATUS" "$X" | grep -F "\"account_id\":\"$B\"" | tail -1 || true)
[ -n "$xb" ] || xb='{}' # none: skipped as if it were A's
check "B's command with A's id dead-lettered ($xb)" [ "$(jget "$xb" result)" = dead_lettered ]
check "its reason says the id is another account's" \
  bash -c "grep -q 'already used by another account' <<<'$xb'"
dlq() { kcat -C -b "$BROKER" -t "$DLQ" -o beginning -e -q -f '%k %h %s\n' 2>/dev/null || true; }
dlq >"$WORK/dlq" # a file: the shared DLQ can outgrow one command-line argument (128 KiB)
check "the DLQ holds it with its reason" \
  bash -c "grep -F '\"command_id\":\"$X\"' '$WORK/dlq' | grep '^$B ' | grep -q 'lattice.dlq.reason=command id $X is already used by another account'"
check "A's row untouched (succeeded, attempt 1)" \
  [ "$(psqlq "SELECT account_id || ' ' || status || ' ' || attempt FROM mail_sync_commands WHERE command_id = '$X'")" = "$A succeeded 1" ]

# 4. a row that already has the maximum of attempts
Z=spent-$RUN
# (its previous run never finished, nor the one still running: 2 stalled runs)
psqlq "INSERT INTO mail_sync_commands (command_id, tenant_id, account_id, provider, kind, status, attempt, stalled_runs, worker_id, heartbeat_at) VALUES ('$Z', '$TENANT', '$A', 'imap', 'incremental', 'running', 2, 1, 'gone', now() - interval '1 hour')" >/dev/null
command_for "$Z" "$A"
sz=$(final "$Z" "$WORK/w1.log")
check "a command with its attempts spent is dead-lettered ($sz)" [ "$(jget "$sz" result)" = dead_lettered ]
check "with the reason" bash -c "grep -q 'gave up after 2 attempts' <<<'$sz'"
check "its row says so" \
  [ "$(psqlq "SELECT status || ' ' || attempt || ' ' || error_class FROM mail_sync_commands WHERE command_id = '$Z'")" = "dead_lettered 2 final" ]
check "not run: no message of it" [ "$(jget "$sz" messages)" = 0 ]

# 5. a command that kills its worker every time
H=hang-$RUN
command_for "$H" "$HANG"
for n in 1 2; do
  log="$WORK/w$n.log"
  end=$((SECONDS + 120 * LT_TF))
  while [ $SECONDS -lt $end ] && ! grep -q "command started (incremental, attempt $n).*command_id=$H" "$log"; do sleep 0.2; done
  check "run $n of the command started" grep -q "command started (incremental, attempt $n).*command_id=$H" "$log"
  kill -9 "$WPID"; wait "$WPID" 2>/dev/null || true
  worker "$WORK/w$((n + 1)).log"
done
sh=$(final "$H" "$WORK/w3.log")
check "after 2 runs that killed the worker: dead-lettered ($sh)" [ "$(jget "$sh" result)" = dead_lettered ]
check "the reason says it never finished" bash -c "grep -q 'never finished' <<<'$sh'"
check "its row: dead_lettered after 2 attempts" \
  [ "$(psqlq "SELECT status || ' ' || attempt FROM mail_sync_commands WHERE command_id = '$H'")" = "dead_lettered 2" ]
check "the third worker did not start it" bash -c "! grep -q 'command started.*command_id=$H' '$WORK/w3.log'"

lt_stop "$WPID"; WPID=
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/w3.log"; }
lt_summary test_worker_commands
