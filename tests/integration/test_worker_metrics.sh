#!/usr/bin/env bash
# lattice-worker's observability against the real stack: /healthz, /readyz
# (503 until the worker has its assignment, 200 after), /metrics moving with
# an IMAP incremental (commands, messages, bytes, events, objects, duration
# histogram, last-success gauges), a malformed command (DLQ counter), a
# backfill reporting progress ("running" status events with done/total, the
# progress gauges, a progress log line), and the context fields of the JSON
# log lines. Own command topic, group, worker id, tenant and account.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_S3_ENDPOINT \
  LATTICE_CA_FILE LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD
STATUS_TOPIC=${LATTICE_TOPIC_STATUS:-lattice.mail.sync.status.v1}
TENANT=tm$RUN
ACCOUNT=imap-metrics-$RUN
FOLDER="metrics-$RUN"
TOPIC=test-metrics-cmd-$RUN
WORK=$(mktemp -d)
WPID=
cleanup() { lt_stop "$WPID"; lt_imap_delete "$FOLDER"; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT

N1=12   # messages for the incremental (2 attachments each)
N2=400  # more for the backfill (long enough to outlast a progress interval)
python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count $N1 --seed m --attachments 2
IMAP_PW_VAR=$(lt_secret_env "$TENANT" IMAP_PASSWORD) # the worker reads the password from it
export "$IMAP_PW_VAR=$LATTICE_TEST_IMAP_PASSWORD"
CONFIG=$(printf '{"host":"%s","port":%s,"username":"%s","password_env":"'"$IMAP_PW_VAR"'","folders":["%s"]}' \
  "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$LATTICE_TEST_IMAP_USER" "$FOLDER")
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$ACCOUNT', 'imap', '$CONFIG'::jsonb)" >/dev/null

# 1. Started before its command topic exists: alive, not ready (no assignment).
LATTICE_TOPIC_COMMANDS=$TOPIC LATTICE_WORKER_GROUP_ID=test-metrics-$RUN LATTICE_WORKER_ID=test-metrics-$RUN \
LATTICE_KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS=1000 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_WORKER_BATCH_MESSAGES=4 LATTICE_WORKER_PROGRESS_INTERVAL_S=1 LATTICE_LOG_FORMAT=json \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_http /healthz "/healthz 200 while starting"
# past "starting" (the worker built; a hang guard: valgrind takes seconds), then no assignment
end=$((SECONDS + 60 * LT_TF))
while [ $SECONDS -lt $end ] && { [ "$(code /readyz)" != 503 ] || grep -q starting "$WORK/body"; }; do sleep 0.2; done
check "/readyz 503 before the assignment" [ "$(code /readyz)" = 503 ]
check "/readyz says why ($(cat "$WORK/body"))" grep -q "no partition assignment" "$WORK/body"
check "unknown path 404" [ "$(code /nope)" = 404 ]

"$ROOT/deploy/local/stack" topic "$TOPIC" >/dev/null
lt_wait_http /readyz "/readyz 200 after the assignment"

scrape s0
lt_check_prom_type
check "assigned partitions = 1" is "$(metric s0 lattice_worker_assigned_partitions)" 1
check "ready gauge = 1" is "$(metric s0 lattice_worker_ready)" 1

command() { # command KIND [json extra] -> prints the command id
  local id="cmd-$RUN-$1-$(date +%s%N)"
  lt_imap_command "$TOPIC" "$id" "$TENANT" "$ACCOUNT" "$1" "${2:-}"
  echo "$id"
}
statuses() { lt_statuses "$STATUS_TOPIC" "$1"; }
wait_final() { lt_wait_status --final "$STATUS_TOPIC" "$1" "$WORK/worker.log"; }

# 2. An incremental: every counter moves by what it did.
T0=$(date +%s)
c1=$(command incremental); s1=$(wait_final "$c1")
check "incremental succeeded ($s1)" [ "$(jget "$s1" result)" = succeeded ]
# the slot is freed (in-flight gauge down) just after the status event is sent
for _ in $(seq 1 150); do scrape s1; is "$(metric s1 lattice_worker_commands_in_flight)" 0 && break; sleep 0.2; done
OK='lattice_worker_commands_total{provider="imap",kind="incremental",result="succeeded",error_class="none"}'
check "commands_total{succeeded} +1" is "$(delta s0 s1 "$OK")" 1
check "messages fetched +$N1" is "$(delta s0 s1 'lattice_worker_messages_fetched_total{provider="imap"}')" $N1
check "bytes fetched = the status event's bytes" \
  is "$(delta s0 s1 'lattice_worker_message_bytes_fetched_total{provider="imap"}')" "$(jget "$s1" bytes)"
check "events published +$N1" is "$(delta s0 s1 'lattice_worker_events_published_total{provider="imap"}')" $N1
check ".eml objects +$N1" is "$(delta s0 s1 'lattice_worker_objects_stored_total{provider="imap",kind="message"}')" $N1
if [ "${LATTICE_ATTACHMENTS:-ranges}" = ranges ]; then # ranges of the .eml, no objects
  check "attachments as ranges +$((2 * N1))" \
    is "$(delta s0 s1 'lattice_worker_attachments_ranged_total{provider="imap"}')" $((2 * N1))
  check "attachment objects +0" \
    is "$(delta s0 s1 'lattice_worker_objects_stored_total{provider="imap",kind="attachment"}')" 0
else
  check "attachment objects +$((2 * N1))" \
    is "$(delta s0 s1 'lattice_worker_objects_stored_total{provider="imap",kind="attachment"}')" $((2 * N1))
fi
check "object bytes = message bytes" \
  is "$(delta s0 s1 'lattice_worker_object_bytes_stored_total{provider="imap",kind="message"}')" "$(jget "$s1" bytes)"
check "duration histogram count +1" \
  is "$(delta s0 s1 'lattice_worker_command_duration_seconds_count{provider="imap",kind="incremental"}')" 1
check "duration +Inf bucket +1" \
  is "$(delta s0 s1 'lattice_worker_command_duration_seconds_bucket{provider="imap",kind="incremental",le="+Inf"}')" 1
LS=$(metric s1 "lattice_worker_account_last_success_timestamp_seconds{tenant=\"$TENANT\",account=\"$ACCOUNT\",provider=\"imap\"}")
check "account last success set ($LS >= $T0)" python3 -c "import sys,time; v=float(sys.argv[1]); sys.exit(not ($T0 <= v <= time.time() + 1))" "$LS"
check "provider last success set" is "$(metric s1 'lattice_worker_last_success_timestamp_seconds{provider="imap"}')" "$LS"
check "nothing in flight after" is "$(metric s1 lattice_worker_commands_in_flight)" 0

# 3. A malformed command goes to the DLQ and is counted.
printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"bad-%s"}\n' "$ACCOUNT" "$RUN" \
  | kcat -P -b "$BROKER" -t "$TOPIC" -K $'\t' 2>/dev/null
for _ in $(seq 1 600); do # 120 s: a hang guard
  scrape s2
  is "$(delta s1 s2 lattice_worker_dead_letters_total)" 1 && break
  sleep 0.2
done
check "dead_letters_total +1" is "$(delta s1 s2 lattice_worker_dead_letters_total)" 1
check "commands_total{dead_lettered} +1" \
  is "$(delta s1 s2 'lattice_worker_commands_total{provider="unknown",kind="unknown",result="dead_lettered",error_class="final"}')" 1

# 4. A backfill of the whole folder reports progress while it runs.
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count $N2 --seed n --attachments 1 --size 20000
NB=$((N1 + N2))
c2=$(command backfill ",\"backfill\":{\"folder\":\"$FOLDER\",\"start_uid\":1}")
# The gauges live only while the command runs (after its first progress
# report): scrape in a tight loop beside the wait, not between kcat calls.
( for _ in $(seq 1 1200); do
    curl -sf "$URL/metrics" 2>/dev/null |
      grep -q "^lattice_worker_command_progress_total{slot=\"[0-9]*\",tenant=\"$TENANT\",account=\"$ACCOUNT\",provider=\"imap\",kind=\"backfill\"} $NB\$" &&
      { touch "$WORK/gauge.seen"; exit 0; }
    sleep 0.05
  done ) &
GPID=$!
s2=$(wait_final "$c2")
kill "$GPID" 2>/dev/null || true; wait "$GPID" 2>/dev/null || true
seen_gauge=0; [ -f "$WORK/gauge.seen" ] && seen_gauge=1
check "backfill succeeded ($s2)" [ "$(jget "$s2" result)" = succeeded ]
check "backfill: $NB messages" [ "$(jget "$s2" messages)" = $NB ]
running=$(statuses "$c2" | grep '"result":"running"' || true)
echo "$running" | head -3
check "at least one running status event" [ -n "$running" ]
check "running events carry done/total/rate/eta" python3 - "$running" $NB <<'EOF'
import json, sys
evs = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
nb = int(sys.argv[2])
# a total known only after the first interval is reported at once, 0 done at rate 0
# (test_sync_progress): seen under valgrind
ok = any(e["progress_done"] > 0 for e in evs)
for e in evs:
    ok &= e["progress_total"] == nb and 0 <= e["progress_done"] <= nb
    ok &= e["rate_per_s"] > 0 if e["progress_done"] > 0 else e["rate_per_s"] == 0
    ok &= e["eta_s"] is None or e["eta_s"] >= 0
    ok &= e["kind"] == "backfill" and e["scope"] and e["worker_id"] and e["duration_ms"] > 0
dones = [e["progress_done"] for e in evs]
ok &= dones == sorted(dones)
sys.exit(0 if ok else 1)
EOF
check "progress gauges seen while it ran" [ "$seen_gauge" = 1 ]
# they go when the slot is freed, just after the status event is sent
for _ in $(seq 1 150); do scrape s3; grep -q 'lattice_worker_command_progress_total{' "$WORK/s3.prom" || break; sleep 0.2; done
check "progress gauges gone after" bash -c "! grep -q 'lattice_worker_command_progress_total{' '$WORK/s3.prom'"
check "duration histogram: the backfill" \
  is "$(metric s3 'lattice_worker_command_duration_seconds_count{provider="imap",kind="backfill"}')" 1
check "progress log line" bash -c "grep -F '\"command_id\":\"$c2\"' '$WORK/worker.log' | grep -q '\"msg\":\"progress: '"

# 5. The JSON log: every line of our commands carries tenant, account,
#    command id and trace id; progress lines the scope too; no secret.
check "command log lines carry their context" python3 - "$WORK/worker.log" "$c1" "$c2" "$TENANT" "$ACCOUNT" <<'EOF'
import json, sys
path, c1, c2, tenant, account = sys.argv[1:]
n = bad = 0
for line in open(path, encoding="utf-8"):
    try:
        r = json.loads(line)
    except ValueError:
        print("not JSON:", line[:200]); bad += 1; continue
    if r.get("command_id") not in (c1, c2):
        continue
    n += 1
    if r.get("tenant") != tenant or r.get("account") != account or len(r.get("trace_id", "")) != 32:
        print("missing context:", line[:300]); bad += 1
    if r["msg"].startswith("progress:") and not r.get("scope"):
        print("progress without scope:", line[:300]); bad += 1
print(n, "lines of the two commands")
sys.exit(0 if n >= 4 and bad == 0 else 1)
EOF
check "no secret in the log" bash -c "! grep -qF '$LATTICE_TEST_IMAP_PASSWORD' '$WORK/worker.log'"
SCRAPE=$(metric s3 lattice_metrics_scrape_duration_seconds)
echo "scrape: $(wc -c <"$WORK/s3.prom") bytes rendered in ${SCRAPE}s"

# 6. SIGTERM: not ready while draining, exits 0.
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0" [ "$rc" = 0 ]
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/worker.log"; }
lt_summary test_worker_metrics
