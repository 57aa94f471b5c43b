#!/usr/bin/env bash
# lattice-mail-parser's observability against the real stack: /healthz, /readyz
# (503 before the first partition assignment, 200 after), and /metrics moving
# with what it did: rows upserted, a message over the cap (parse error
# too_big), two poison records (DLQ reasons undecodable, unknown_schema),
# events consumed, batches and their duration histogram, bytes read from S3,
# assigned partitions, the last commit time. Also: neither the worker nor the
# parser logs a failed consumer close at shutdown. Own topics, groups, worker
# id, tenant and account (test_parser.sh's pattern).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD
TENANT=tpm$RUN
ACCOUNT=imap-parser-metrics-$RUN
FOLDER="parser-metrics-$RUN"
CMD_TOPIC=test.parser-metrics.cmd.$RUN
RAW_TOPIC=test.parser-metrics.raw.$RUN
DLQ_TOPIC=test.parser-metrics.dlq.$RUN
WORK=$(mktemp -d)
WPID= PPID2=
cleanup() {
  lt_stop "$WPID" "$PPID2"
  lt_imap_delete "$FOLDER"
  psqlq "DELETE FROM emails WHERE tenant_id = '$TENANT'; DELETE FROM mail_accounts WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
rows() { psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT'"; }
dlq_count() { kcat -C -b "$BROKER" -t "$DLQ_TOPIC" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c poison || true; }
PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT

for t in "$CMD_TOPIC" "$DLQ_TOPIC"; do "$ROOT/deploy/local/stack" topic "$t" >/dev/null; done

# --- the mail: NGEN ordinary messages and one over the parser's cap ---------
NGEN=9
python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count $NGEN --seed pm$RUN --attachments 1
{ printf 'From: big@example.test\nTo: alice@example.test\nSubject: big one\nMessage-ID: <big.%s@example.test>\n\n' "$RUN"
  head -c 60000 /dev/urandom | base64; } >"$WORK/big.eml"
python3 "$HERE/lib/imap_tool.py" append-files "$FOLDER" "$WORK/big.eml" >/dev/null
TOTAL=$((NGEN + 1))
IMAP_PW_VAR=$(lt_secret_env "$TENANT" IMAP_PASSWORD) # the worker reads the password from it
export "$IMAP_PW_VAR=$LATTICE_TEST_IMAP_PASSWORD"
CONFIG=$(printf '{"host":"%s","port":%s,"username":"%s","password_env":"'"$IMAP_PW_VAR"'","folders":["%s"]}' \
  "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$LATTICE_TEST_IMAP_USER" "$FOLDER")
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$ACCOUNT', 'imap', '$CONFIG'::jsonb)" >/dev/null

# --- 1. the parser, started before its raw topic exists: alive, not ready ---
LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$RAW_TOPIC.changes LATTICE_PARSER_GROUP_ID=test-parser-metrics-$RUN \
LATTICE_PARSER_DLQ_TOPIC=$DLQ_TOPIC LATTICE_PARSER_BATCH_MESSAGES=4 LATTICE_PARSER_CONCURRENCY=2 \
LATTICE_PARSER_MAX_MESSAGE_BYTES=40000 LATTICE_PARSER_RETRY_BASE_MS=200 \
LATTICE_KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS=1000 LATTICE_LOG_FORMAT=text \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
  "$BUILD/parser/lattice-mail-parser" >"$WORK/parser.log" 2>&1 &
PPID2=$!
lt_wait_http /healthz "/healthz 200 while starting"
for _ in $(seq 1 600); do grep -q "parser consuming" "$WORK/parser.log" && break; sleep 0.1; done
sleep 1.5
check "/readyz 503 before the assignment" [ "$(code /readyz)" = 503 ]
check "/readyz says why ($(cat "$WORK/body"))" grep -q "no partition assignment" "$WORK/body"
scrape s0
check "ready gauge 0 before the assignment" is "$(metric s0 lattice_parser_ready)" 0
check "no commit yet" is "$(metric s0 lattice_parser_last_commit_timestamp_seconds)" 0

"$ROOT/deploy/local/stack" topic "$RAW_TOPIC" 2 >/dev/null
lt_wait_http /readyz "/readyz 200 after the assignment"
scrape s1
lt_check_prom_type
check "assigned partitions = 2" is "$(metric s1 lattice_parser_assigned_partitions)" 2
check "ready gauge = 1" is "$(metric s1 lattice_parser_ready)" 1
check "nothing counted yet" is "$(metric s1 lattice_parser_rows_upserted_total)" 0

# --- 2. the worker turns the folder into events on RAW_TOPIC ----------------
T0=$(date +%s)
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC \
LATTICE_WORKER_GROUP_ID=test-parser-metrics-w-$RUN LATTICE_WORKER_ID=test-parser-metrics-w-$RUN \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_BATCH_MESSAGES=5 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
CID=cmd-parser-metrics-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
status=$(lt_wait_status --final lattice.mail.sync.status.v1 "$CID" "$WORK/worker.log") || true
check "worker synced the folder ($status)" grep -q '"result":"succeeded"' <<<"$status"
kill -TERM "$WPID"; wait "$WPID" || true; WPID=
check "worker: no failed consumer close at shutdown" bash -c "! grep -q 'consumer close' '$WORK/worker.log'"

# two poison records: garbage, and a wire header naming an unknown schema id
printf 'poison\tnot avro at all\n' | kcat -P -b "$BROKER" -t "$RAW_TOPIC" -p 0 -K $'\t' 2>/dev/null
printf '\x00\x7f\xff\xff\xf0\x02ab' >"$WORK/badid.bin"
kcat -P -b "$BROKER" -t "$RAW_TOPIC" -p 1 -k poison2 "$WORK/badid.bin" 2>/dev/null

end=$((SECONDS + 300 * LT_TF)) # a hang guard
while [ $SECONDS -lt $end ]; do
  [ "$(rows)" = "$TOTAL" ] && [ "$(dlq_count)" = 2 ] && break
  sleep 0.3
done
check "parser: $TOTAL rows, 2 dead letters" [ "$(rows)/$(dlq_count)" = "$TOTAL/2" ]
# the last batch's counters move after its commit: wait for all records
for _ in $(seq 1 300); do # 60 s: a hang guard
  scrape s2
  is "$(delta s1 s2 lattice_parser_events_consumed_total)" $((TOTAL + 2)) && break
  sleep 0.2
done

# --- 3. the counters moved by what the parser did ---------------------------
check "rows upserted +$TOTAL" is "$(delta s1 s2 lattice_parser_rows_upserted_total)" $TOTAL
check "events consumed +$((TOTAL + 2))" is "$(delta s1 s2 lattice_parser_events_consumed_total)" $((TOTAL + 2))
check "parse errors{too_big} +1" is "$(delta s1 s2 'lattice_parser_parse_errors_total{error_class="too_big"}')" 1
check "parse errors: no other class" is "$(awk '/^lattice_parser_parse_errors_total\{/ {s += $2} END {print s + 0}' "$WORK/s2.prom")" 1
check "dead letters{undecodable} +1" is "$(delta s1 s2 'lattice_parser_dead_letters_total{reason="undecodable"}')" 1
check "dead letters{unknown_schema} +1" is "$(delta s1 s2 'lattice_parser_dead_letters_total{reason="unknown_schema"}')" 1
BATCHES=$(delta s1 s2 lattice_parser_batches_total)
check "batches: at least $(( (TOTAL + 2 + 3) / 4 )) of at most 4 records ($BATCHES)" \
  python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= $(( (TOTAL + 2 + 3) / 4 )))" "$BATCHES"
check "batch duration histogram: one observation per batch" \
  is "$(delta s1 s2 lattice_parser_batch_duration_seconds_count)" "$BATCHES"
check "batch duration +Inf bucket = count" \
  is "$(metric s2 'lattice_parser_batch_duration_seconds_bucket{le="+Inf"}')" "$(metric s2 lattice_parser_batch_duration_seconds_count)"
# every .eml but the one over the cap (skipped on its declared size) was read once
READ=$(psqlq "SELECT sum(raw_size_bytes) FROM emails WHERE tenant_id = '$TENANT' AND parse_error_class IS DISTINCT FROM 'too_big'")
RETRIES=$(metric s2 lattice_parser_batch_retries_total)
BYTES=$(delta s1 s2 lattice_parser_s3_bytes_read_total)
if is "$RETRIES" 0; then
  check "S3 bytes read = the raw sizes of the parsed rows ($BYTES = $READ)" is "$BYTES" "$READ"
else
  check "S3 bytes read >= the raw sizes (after $RETRIES retries)" python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= float(sys.argv[2]))" "$BYTES" "$READ"
fi
LC=$(metric s2 lattice_parser_last_commit_timestamp_seconds)
check "last commit time set ($LC >= $T0)" python3 -c "import sys,time; v=float(sys.argv[1]); sys.exit(not ($T0 <= v <= time.time() + 1))" "$LC"
check "still 2 partitions" is "$(metric s2 lattice_parser_assigned_partitions)" 2

# --- 4. SIGTERM: exits 0, nothing logged about the consumer close -----------
kill -TERM "$PPID2"; rc=0; wait "$PPID2" || rc=$?; PPID2=
check "parser exits 0 on SIGTERM ($rc)" [ "$rc" = 0 ]
check "parser: no failed consumer close at shutdown" bash -c "! grep -q 'consumer close' '$WORK/parser.log'"
check "no secret in the logs" bash -c "! grep -qF -e '$LATTICE_PG_PASSWORD' -e '$LATTICE_S3_SECRET_ACCESS_KEY' -e '$LATTICE_TEST_IMAP_PASSWORD' $WORK/*.log"
if [ "$fail" != 0 ]; then
  echo "--- parser log"; tail -30 "$WORK/parser.log"
  echo "--- metrics"; grep '^lattice_parser' "$WORK/s2.prom" || true
fi
lt_summary test_parser_metrics
