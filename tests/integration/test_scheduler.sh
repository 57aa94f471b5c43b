#!/usr/bin/env bash
# lattice-scheduler against the real stack, in a throwaway Postgres schema
# (all migrations applied there) with its own command topics and tenants:
#   - one command per enabled, active account and configured scope of the
#     tenant/provider; none for disabled or flagged accounts; filters;
#   - every command valid against schemas/sync-command.v1.schema.json, keyed
#     by account_id, traceparent header = field, one trace per run;
#   - no pile-up: a second run while the commands are queued (issued, not
#     started) or running sends none; a stale one gets a new command;
#   - a real lattice-worker (own topic, group, id) runs the commands it sent
#     (so the worker's parser accepts them), and finished commands do not
#     block the next run;
#   - --interval runs until SIGTERM and exits 0; a missing topic fails;
#   - --interval serves /metrics: runs, commands sent, skips, accounts seen.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_CA_FILE \
  LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD
STACK="$ROOT/deploy/local/stack"
SCHED="$BUILD/scheduler/lattice-scheduler"
SCHEMA=sched_$RUN
TEN=sched-$RUN
OTHER=sched-other-$RUN
F1="sched-$RUN-a" F2="sched-$RUN-b"
WORK=$(mktemp -d)
WPID= SPID=
psqlq() { PGPASSWORD=$LATTICE_PG_PASSWORD psql "$DSN" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
cleanup() {
  lt_stop "$WPID" "$SPID"
  PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  lt_imap_delete "$F1" "$F2"
  rm -rf "$WORK"
}
trap cleanup EXIT

# python3 with jsonschema >= 4 (as test_command_schema.sh)
PY=
for cand in python3 /usr/bin/python3; do
  "$cand" -c 'import jsonschema, sys; sys.exit(0 if hasattr(jsonschema.Draft202012Validator, "FORMAT_CHECKER") else 1)' 2>/dev/null && { PY=$cand; break; }
done
[ -n "$PY" ] || { echo "python3 jsonschema >= 4.5 missing (python3-jsonschema)" >&2; exit 1; }
validate() { "$PY" "$HERE/lib/check_commands.py" --schema "$ROOT/schemas/sync-command.v1.schema.json" "$@"; }
jq1() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); exec("print(" + sys.argv[2] + ")")' "$1" "$2"; }

# ---- a private schema with every migration, accounts, topics
PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA"
DSN="$LATTICE_PG_DSN options='-csearch_path=$SCHEMA'"
LATTICE_PG_DSN=$DSN "$BUILD/tools/lattice-migrate" --dir "$ROOT/migrations" >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }
TOPIC=$("$STACK" topic "sched-$RUN" 3)
TOPIC2=$("$STACK" topic "sched-w-$RUN" 3)

python3 "$HERE/lib/imap_tool.py" create "$F1"
python3 "$HERE/lib/imap_tool.py" append "$F1" --count 3 --seed s1
python3 "$HERE/lib/imap_tool.py" create "$F2"
python3 "$HERE/lib/imap_tool.py" append "$F2" --count 2 --seed s2
IMAP_PW_VAR=$(lt_secret_env "$TEN" IMAP_PASSWORD) # the worker reads the password from it
export "$IMAP_PW_VAR=$LATTICE_TEST_IMAP_PASSWORD"
imapconf() { # folders as JSON list
  printf '{"host":"%s","port":%s,"username":"%s","password_env":"'"$IMAP_PW_VAR"'","folders":%s}' \
    "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$LATTICE_TEST_IMAP_USER" "$1"
}
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, enabled, config_json, status) VALUES
  ('$TEN', 'imap-1', 'imap', true, '$(imapconf "[\"$F1\",\"$F2\"]")', 'active'),
  ('$TEN', 'imap-2', 'imap', true, '$(imapconf "[\"$F1\"]")', 'active'),
  ('$TEN', 'imap-off', 'imap', false, '$(imapconf "[\"$F1\"]")', 'active'),
  ('$TEN', 'imap-flagged', 'imap', true, '$(imapconf "[\"$F1\"]")', 'flagged'),
  ('$TEN', 'gmail-1', 'gmail', true, '{\"user\":\"me\",\"label_ids\":[\"INBOX\"]}', 'active'),
  ('$OTHER', 'imap-x', 'imap', true, '$(imapconf "[\"$F1\"]")', 'active')" >/dev/null

sched() { # sched LOGNAME args... (topic TOPIC unless LATTICE_TOPIC_COMMANDS is set)
  local log=$1; shift
  LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=${LATTICE_TOPIC_COMMANDS:-$TOPIC} LATTICE_LOG_FORMAT=text \
    "$SCHED" "$@" >"$WORK/$log.out" 2>"$WORK/$log.log"
}
summary() { grep -o "$2=[0-9]*" "$WORK/$1.log" | tail -1 | cut -d= -f2; }
topic_lines() { kcat -C -b "$BROKER" -t "${2:-$TOPIC}" -o beginning -e -q -f '%k\t%h\t%s\n' 2>/dev/null | awk 'NF' > "$WORK/$1.topic"; wc -l < "$WORK/$1.topic"; }
new_lines() { comm -13 <(sort "$WORK/$1.topic") <(sort "$WORK/$2.topic"); } # in $2, not in $1
issued() { psqlq "SELECT count(*) FROM mail_sync_issued"; }

# ---- 1. dry runs: what would be sent, nothing written
rc=0; sched dry --once --dry-run --tenant "$TEN" || rc=$?
check "dry run exit 0" [ "$rc" = 0 ]
s=$(validate <"$WORK/dry.out") || { check "dry-run commands valid" false; s='{"count":0,"by_account":{},"scopes":{},"trace_ids":[]}'; }
check "dry run: 4 commands (imap-1 x2 scopes, imap-2, gmail-1): $s" [ "$(jq1 "$s" 'd["count"]')" = 4 ]
check "dry run: per account" [ "$(jq1 "$s" 'sorted(d["by_account"].items())')" = "[('gmail-1', 1), ('imap-1', 2), ('imap-2', 1)]" ]
check "dry run: scopes are the configured folders" [ "$(jq1 "$s" 'd["scopes"]["imap-1"]')" = "['$F1', '$F2']" ]
check "dry run: gmail scope = label id" [ "$(jq1 "$s" 'd["scopes"]["gmail-1"]')" = "['label:INBOX']" ]
check "dry run: one trace per run" [ "$(jq1 "$s" 'len(d["trace_ids"])')" = 1 ]
check "dry run: summary" [ "$(summary dry accounts_seen)/$(summary dry skipped_inactive)/$(summary dry commands_sent)" = 4/1/4 ]
check "dry run wrote nothing" [ "$(issued)" = 0 ]
check "dry run sent nothing" [ "$(topic_lines none)" = 0 ]

sched dryg --once --dry-run --tenant "$TEN" --provider gmail
check "--provider gmail: gmail-1 only" [ "$(jq1 "$(validate <"$WORK/dryg.out")" 'sorted(d["by_account"].items())')" = "[('gmail-1', 1)]" ]
LATTICE_SCHEDULER_PROVIDER=imap LATTICE_SCHEDULER_TENANT=$TEN sched dryi --once --dry-run
check "LATTICE_SCHEDULER_PROVIDER/TENANT settings filter" [ "$(jq1 "$(validate <"$WORK/dryi.out")" 'sorted(d["by_account"].items())')" = "[('imap-1', 2), ('imap-2', 1)]" ]
sched dryall --once --dry-run --provider imap
check "no tenant filter: the other tenant too" [ "$(jq1 "$(validate <"$WORK/dryall.out")" 'sorted(d["by_account"].items())')" = "[('imap-1', 2), ('imap-2', 1), ('imap-x', 1)]" ]
LATTICE_SCHEDULER_PER_SCOPE=false sched dryacc --once --dry-run --tenant "$TEN"
sa=$(validate <"$WORK/dryacc.out")
check "PER_SCOPE=false: one command per account, no scope" \
  [ "$(jq1 "$sa" 'sorted((k, v) for k, v in d["scopes"].items())')" = "[('gmail-1', [None]), ('imap-1', [None]), ('imap-2', [None])]" ]
rc=0; sched bad --once --provider pop3 || rc=$?
check "bad --provider: exit 2" [ "$rc" = 2 ]
rc=0; LATTICE_TOPIC_COMMANDS=no-such-topic-$RUN sched notopic --once --tenant "$TEN" || rc=$?
check "missing topic: exit 1" [ "$rc" = 1 ]
check "missing topic: nothing issued" [ "$(issued)" = 0 ]

# ---- 2. real run: imap of the tenant
rc=0; sched r1 --once --tenant "$TEN" --provider imap || rc=$?
check "run 1 exit 0" [ "$rc" = 0 ]
check "run 1: 3 delivered" [ "$(summary r1 commands_sent)" = 3 ]
check "run 1: 3 on the topic" [ "$(topic_lines r1)" = 3 ]
s=$(validate --kcat <"$WORK/r1.topic") || check "run 1 commands valid, keyed, traced ($(cat "$WORK/r1.topic"))" false
check "run 1: imap-1 x2, imap-2 x1" [ "$(jq1 "$s" 'sorted(d["by_account"].items())')" = "[('imap-1', 2), ('imap-2', 1)]" ]
check "run 1: 3 issued rows" [ "$(issued)" = 3 ]
check "run 1: issued rows = sent ids" \
  [ "$(psqlq "SELECT string_agg(command_id, ' ' ORDER BY command_id) FROM mail_sync_issued")" = "$(jq1 "$s" '" ".join(sorted(d["command_ids"]))')" ]

# ---- 3. no pile-up: queued commands block; other providers go on
rc=0; sched r2 --once --tenant "$TEN" --provider imap || rc=$?
check "run 2 exit 0" [ "$rc" = 0 ]
check "run 2: none sent, 2 accounts in flight" [ "$(summary r2 commands_sent)/$(summary r2 skipped_in_flight)" = 0/2 ]
check "run 2: still 3 on the topic" [ "$(topic_lines r2)" = 3 ]
sched r3 --once --tenant "$TEN"
check "run 3 (all providers): only gmail-1" [ "$(summary r3 commands_sent)/$(summary r3 skipped_in_flight)/$(summary r3 skipped_inactive)" = 1/2/1 ]
check "run 3: 4 on the topic" [ "$(topic_lines r3)" = 4 ]
check "run 3: the new one is gmail-1's" [ "$(new_lines r2 r3 | cut -f1)" = gmail-1 ]

# a worker started imap-2's command (running, fresh heartbeat), its issued row is old:
# still in flight; once the heartbeat is stale too, a new command
c2=$(psqlq "SELECT command_id FROM mail_sync_issued WHERE account_id = 'imap-2'")
psqlq "INSERT INTO mail_sync_commands (command_id, tenant_id, account_id, provider, kind, status, worker_id)
       VALUES ('$c2', '$TEN', 'imap-2', 'imap', 'incremental', 'running', 'test')" >/dev/null
psqlq "UPDATE mail_sync_issued SET issued_at = now() - interval '2 hours' WHERE account_id = 'imap-2'" >/dev/null
sched r4 --once --tenant "$TEN" --provider imap
check "running with a fresh heartbeat: in flight" [ "$(summary r4 commands_sent)/$(summary r4 skipped_in_flight)" = 0/2 ]
check "the stale issued row was pruned" [ "$(summary r4 pruned_issued)" = 1 ]
psqlq "UPDATE mail_sync_commands SET heartbeat_at = now() - interval '2 hours', started_at = now() - interval '2 hours' WHERE command_id = '$c2'" >/dev/null
sched r5 --once --tenant "$TEN" --provider imap
check "stale heartbeat: imap-2 gets a new command" [ "$(summary r5 commands_sent)/$(summary r5 skipped_in_flight)" = 1/1 ]
check "run 5: 5 on the topic, the new one imap-2's" [ "$(topic_lines r5)/$(new_lines r3 r5 | cut -f1)" = 5/imap-2 ]
# an issued command never started, stale by the threshold setting
sleep 2
LATTICE_SCHEDULER_STALE_AFTER_S=1 sched r6 --once --tenant "$TEN" --provider imap
check "STALE_AFTER_S=1: queued commands count as lost after 1 s" [ "$(summary r6 commands_sent)" = 3 ]
# a finished command does not block
psqlq "UPDATE mail_sync_commands SET status = 'succeeded', finished_at = now(), heartbeat_at = now() WHERE command_id = '$c2'" >/dev/null
psqlq "DELETE FROM mail_sync_issued WHERE account_id = 'imap-2'" >/dev/null
sched r7 --once --tenant "$TEN" --provider imap
check "finished command: imap-2 again, imap-1 in flight" [ "$(summary r7 commands_sent)/$(summary r7 skipped_in_flight)" = 1/1 ]
s=$(validate --kcat < <(topic_lines all >/dev/null; cat "$WORK/all.topic")) || check "all commands valid" false
check "every run its own trace (5 runs sent)" [ "$(jq1 "$s" 'len(d["trace_ids"])')" = 5 ]

# ---- 4. --interval: repeated runs, no pile-up, SIGTERM exits 0
psqlq "DELETE FROM mail_sync_issued" >/dev/null
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$TOPIC LATTICE_LOG_FORMAT=text \
  "$SCHED" --interval 1 --tenant "$TEN" --provider imap >/dev/null 2>"$WORK/loop.log" &
SPID=$!
for _ in $(seq 1 600); do [ "$(grep -c 'summary:' "$WORK/loop.log")" -ge 3 ] && break; sleep 0.1; done # 60 s: a hang guard
kill -TERM "$SPID"; rc=0; wait "$SPID" || rc=$?; SPID=
check "--interval: several runs" [ "$(grep -c 'summary:' "$WORK/loop.log")" -ge 3 ]
check "--interval: SIGTERM exits 0" [ "$rc" = 0 ]
check "--interval: commands only in the first run" \
  [ "$(grep -o 'commands_sent=[0-9]*' "$WORK/loop.log" | cut -d= -f2 | tr '\n' ' ')" = "3 $(grep -c 'summary:' "$WORK/loop.log" | xargs -I{} sh -c 'for i in $(seq 2 {}); do printf "0 "; done')" ]

# ---- 4b. --interval serves /metrics: the run counters move (by provider)
psqlq "DELETE FROM mail_sync_issued" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
T0=$(date +%s)
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$TOPIC LATTICE_LOG_FORMAT=text \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
  "$SCHED" --interval 4 --tenant "$TEN" --provider imap >/dev/null 2>"$WORK/mloop.log" &
SPID=$!
# two runs (at 0 s and 4 s; each takes milliseconds): scrape right after the second
for _ in $(seq 1 600); do [ "$(grep -c 'summary:' "$WORK/mloop.log")" -ge 2 ] && break; sleep 0.1; done # 60 s: a hang guard
curl -sf "http://127.0.0.1:$PORT/metrics" >"$WORK/m.prom" || true
rcode=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz" || true)
kill -TERM "$SPID"; rc=0; wait "$SPID" || rc=$?; SPID=
m() { awk -v k="$1" 'index($0, k" ") == 1 { print $2; f=1 } END { if (!f) print "absent" }' "$WORK/m.prom"; }
check "metrics: two runs in the log" [ "$(grep -c 'summary:' "$WORK/mloop.log")" = 2 ]
check "metrics: /readyz 200 between runs" [ "$rcode" = 200 ]
check "metrics: 2 runs succeeded" [ "$(m 'lattice_scheduler_runs_total{result="succeeded"}')" = 2 ]
check "metrics: run duration histogram count 2" [ "$(m lattice_scheduler_run_duration_seconds_count)" = 2 ]
check "metrics: accounts seen 2 x 3 (imap-1, imap-2, imap-flagged)" [ "$(m 'lattice_scheduler_accounts_seen_total{provider="imap"}')" = 6 ]
check "metrics: 3 commands sent (first run)" [ "$(m 'lattice_scheduler_commands_sent_total{provider="imap"}')" = 3 ]
check "metrics: 2 skipped in flight (second run)" [ "$(m 'lattice_scheduler_skipped_in_flight_total{provider="imap"}')" = 2 ]
check "metrics: 2 x 1 skipped inactive" [ "$(m 'lattice_scheduler_skipped_inactive_total{provider="imap"}')" = 2 ]
check "metrics: no delivery failure" [ "$(m 'lattice_scheduler_delivery_failures_total{provider="imap"}')" = 0 ]
check "metrics: gmail exported at 0 (filtered out)" [ "$(m 'lattice_scheduler_commands_sent_total{provider="gmail"}')" = 0 ]
LS=$(m lattice_scheduler_last_success_timestamp_seconds)
check "metrics: last success time set ($LS >= $T0)" python3 -c "import sys,time; v=float(sys.argv[1]); sys.exit(not ($T0 <= v <= time.time() + 1))" "$LS"
check "metrics: SIGTERM exits 0" [ "$rc" = 0 ]

# ---- 5. a real worker runs what the scheduler sends
psqlq "UPDATE mail_sync_issued SET issued_at = now() - interval '2 hours'" >/dev/null
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$TOPIC2 LATTICE_WORKER_GROUP_ID=sched-$RUN \
LATTICE_WORKER_ID=sched-$RUN LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
LATTICE_WORKER_RETRY_BASE_MS=200 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"
wait_status() { lt_wait_status --final lattice.mail.sync.status.v1 "$1" "$WORK/worker.log"; }
LATTICE_TOPIC_COMMANDS=$TOPIC2 sched w1 --once --tenant "$TEN" --provider imap
check "worker phase: 3 sent" [ "$(summary w1 commands_sent)" = 3 ]
topic_lines w1 "$TOPIC2" >/dev/null
msgs=
while IFS=$'\t' read -r key _ value; do
  id=$(jq1 "$value" 'd["command_id"]'); scope=$(jq1 "$value" 'd.get("scope")')
  st=$(wait_status "$id") || st='{}'
  check "worker ran $key/$scope: $st" [ "$(jq1 "$st" 'd.get("result")')" = succeeded ]
  msgs="$msgs $key/$scope=$(jq1 "$st" 'd.get("messages")')"
done <"$WORK/w1.topic"
check "messages per command ($msgs)" [ "$(tr ' ' '\n' <<<"$msgs" | sort | tr '\n' ' ')" = " imap-1/$F1=3 imap-1/$F2=2 imap-2/$F1=3 " ]
check "worker recorded 3 succeeded commands" \
  [ "$(psqlq "SELECT count(*) FROM mail_sync_commands WHERE status = 'succeeded' AND worker_id = 'sched-$RUN'")" = 3 ]
LATTICE_TOPIC_COMMANDS=$TOPIC2 sched w2 --once --tenant "$TEN" --provider imap
check "finished commands do not block: 3 sent again" [ "$(summary w2 commands_sent)/$(summary w2 skipped_in_flight)" = 3/0 ]
topic_lines w2 "$TOPIC2" >/dev/null
check "second round: 3 new commands" [ "$(new_lines w1 w2 | wc -l)" = 3 ]
for id in $(new_lines w1 w2 | cut -f3 | while read -r v; do jq1 "$v" 'd["command_id"]'; done); do
  st=$(wait_status "$id") || st='{}'
  check "second round: succeeded, nothing new ($st)" [ "$(jq1 "$st" 'd.get("result"), d.get("messages")')" = "succeeded 0" ]
done
kill -TERM "$WPID"; wait "$WPID" || true; WPID=

check "no secret in the logs" bash -c "! grep -qF '$LATTICE_TEST_IMAP_PASSWORD' '$WORK'/*.log"
if [ "$fail" != 0 ]; then
  for f in "$WORK"/*.log; do echo "--- $f"; tail -15 "$f"; done
fi
lt_summary test_scheduler
