#!/usr/bin/env bash
# The object store sheds load and loses answers (lib/s3_fault_proxy.py in
# front of the stack's MinIO, which is never touched):
#   1. five requests in a row answered 503 SlowDown: each is sent again after
#      a backoff by the S3 client itself: neither the command nor the IMAP
#      session is failed for it, no line is logged per answer;
#      lattice_worker_s3_slowdowns_total counts the five answers, the
#      lattice_worker_s3_slowed_down gauge is 0 again after; the log says it
#      once when the SlowDowns begin and once when a request succeeds again,
#      not once per answer;
#   2. a PUT the store stored whose answer never comes (the connection stays
#      open and silent): the low-speed limit (LATTICE_S3_LOW_SPEED_TIME_S 3 s)
#      gives it up, the PUT is sent again under the same key, and the event
#      of that message is published once; the object is the message's bytes.
# Uploads one at a time (LATTICE_WORKER_S3_PARALLEL=1) so that the spell of
# SlowDowns is one. Per run: topics, consumer group, worker id, tenant,
# account, folder; a private Postgres (lib/private_pg.sh).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD

TENANT=t$RUN ACCOUNT=s3slow-$RUN FOLDER=s3slow-$RUN
CMD_TOPIC=s3slow-cmd-$RUN RAW_TOPIC=s3slow-raw-$RUN CKPT_TOPIC=s3slow-ckpt-$RUN STATUS_TOPIC=s3slow-status-$RUN
WORK=$(mktemp -d)
WPID= PPID_=
cleanup() {
  lt_stop "$WPID" "$PPID_"
  lt_pg_private_down
  lt_imap_delete "$FOLDER"
  rm -rf "$WORK"
}
trap cleanup EXIT

lt_pg_private_up
python3 "$HERE/lib/s3_fault_proxy.py" --upstream "${LATTICE_S3_ENDPOINT#http://}" \
  --port-file "$WORK/proxy.port" --log "$WORK/proxy.log" 2>"$WORK/proxy.err" &
PPID_=$!
end=$((SECONDS + 30))
until [ -s "$WORK/proxy.port" ]; do [ $SECONDS -lt $end ] || { echo "proxy did not start" >&2; exit 1; }; sleep 0.1; done
PROXY=http://127.0.0.1:$(cat "$WORK/proxy.port")
fault() { curl -sf "$PROXY/_fault/$1"; }

for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CKPT_TOPIC" "$STATUS_TOPIC"; do "$REPO/deploy/local/stack" topic "$t" 1 >/dev/null; done
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 3 --seed sd1 >/dev/null
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
LATTICE_S3_ENDPOINT=$PROXY LATTICE_S3_LOW_SPEED_TIME_S=3 LATTICE_S3_TIMEOUT_S=120 \
LATTICE_WORKER_S3_PARALLEL=1 LATTICE_WORKER_S3_PARALLEL_MAX=1 \
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
LATTICE_WORKER_CONCURRENCY=1 LATTICE_WORKER_RETRY_BASE_MS=500 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

# 1. five SlowDowns in a row
check "five SlowDowns armed" [ "$(fault 'slowdown?n=5')" = "slowdown=5 drop=0" ]
lt_imap_command "$CMD_TOPIC" "c1-$RUN" "$TENANT" "$ACCOUNT" incremental
s=$(lt_wait_status --final "$STATUS_TOPIC" "c1-$RUN" "$WORK/worker.log" || echo '{}')
check "command 1 succeeded through the SlowDowns ($(cut -c1-200 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
check "the proxy answered 5 SlowDowns ($(grep -c '^slowdown' "$WORK/proxy.log" || true))" \
  [ "$(grep -c '^slowdown' "$WORK/proxy.log" || true)" = 5 ]
check "no attempt failed for them: the S3 client backed off and sent again" \
  bash -c "! grep -q 'command failed temporarily' '$WORK/worker.log'"
check "no line per answer, no IMAP session dropped for them ($(grep -c 'SlowDown.*reconnecting' "$WORK/worker.log" || true))" \
  bash -c "! grep -q 'SlowDown.*reconnecting' '$WORK/worker.log'"
scrape slow
check "lattice_worker_s3_slowdowns_total = 5 ($(metric slow lattice_worker_s3_slowdowns_total))" \
  is "$(metric slow lattice_worker_s3_slowdowns_total)" 5
check "lattice_worker_s3_slowed_down is 0 once requests succeed ($(metric slow lattice_worker_s3_slowed_down))" \
  is "$(metric slow lattice_worker_s3_slowed_down)" 0
check "the log says it once when the SlowDowns begin ($(grep -c 'S3 asks to slow down' "$WORK/worker.log" || true))" \
  [ "$(grep -c 'S3 asks to slow down' "$WORK/worker.log" || true)" = 1 ]
check "and once when requests succeed again" \
  [ "$(grep -c 'S3 accepts requests again .* after 5 SlowDown answer(s)' "$WORK/worker.log" || true)" = 1 ]

# 2. a PUT stored, its answer lost
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 2 --seed sd2 >/dev/null
check "one lost answer armed" [ "$(fault 'drop?n=1')" = "slowdown=0 drop=1" ]
lt_imap_command "$CMD_TOPIC" "c2-$RUN" "$TENANT" "$ACCOUNT" incremental
s=$(lt_wait_status --final "$STATUS_TOPIC" "c2-$RUN" "$WORK/worker.log" || echo '{}')
check "command 2 succeeded after the lost answer ($(cut -c1-200 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
dropped=$(awk '/^drop PUT/ {print $3; exit}' "$WORK/proxy.log")
check "the store stored the PUT whose answer was lost ($(grep '^drop' "$WORK/proxy.log" || true))" \
  grep -q "^drop PUT .* stored 200$" "$WORK/proxy.log"
check "the low-speed limit gave it up (stalled, logged)" grep -q "S3 PUT .*: stalled" "$WORK/worker.log"
scrape lost
check "lattice_worker_s3_stalls_total counts it ($(metric lost lattice_worker_s3_stalls_total))" \
  is "$(metric lost lattice_worker_s3_stalls_total)" 1
check "the same key was PUT again and answered" grep -qF "pass PUT $dropped 200" "$WORK/proxy.log"

python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" >"$WORK/events.jsonl"
python3 - "$WORK" "$dropped" <<'EOF' >"$WORK/verdicts"
import collections, json, os, sys, urllib.parse
work, dropped = sys.argv[1], sys.argv[2]
ev = [json.loads(l) for l in open(os.path.join(work, "events.jsonl"))]
def out(ok, what):
    print("%s\t%s" % ("ok" if ok else "FAIL", what))
ids = collections.Counter(e["event_id"] for e in ev)
pm = collections.Counter(e["payload"]["provider_message_id"] for e in ev)
out(len(ev) == 5 and len(pm) == 5, "5 events, one per message (%d events, %d messages)" % (len(ev), len(pm)))
out(max(ids.values()) == 1 and max(pm.values()) == 1, "no event twice")
bucket = "/" + os.environ["LATTICE_S3_BUCKET"] + "/"
for e in ev:
    p = e["payload"]
    path = bucket + urllib.parse.quote(p["raw_object_uri"][len("s3:/" + bucket):], safe="/-._~")
    if path == dropped:
        print("obj\t%s\t%s" % (path, p["raw_sha256"]))
EOF
while IFS=$'\t' read -r verdict what; do
  case $verdict in
    ok) pass=$((pass+1)) ;;
    FAIL) fail=$((fail+1)); echo "FAILED: $what" >&2 ;;
  esac
done < <(grep -E '^(ok|FAIL)' "$WORK/verdicts")
read -r _ path sha < <(grep '^obj' "$WORK/verdicts" || echo "obj - -")
check "the event of the lost answer's message names its object ($path)" [ "$path" = "$dropped" ]
got=$(curl -sf --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
  --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
  "$LATTICE_S3_ENDPOINT$path" | sha256sum | cut -d' ' -f1 || true)
check "the object is the event's bytes (sha256 $got)" [ "$got" = "$sha" ]

grep -E "slow down|accepts requests|stalled|command (failed|succeeded|started)" "$WORK/worker.log" | cut -c1-240 || true
[ "$fail" = 0 ] || { echo "--- worker log"; grep -v ' kafka ' "$WORK/worker.log" | tail -40; echo "--- proxy"; cat "$WORK/proxy.log" "$WORK/proxy.err"; }
lt_summary test_worker_s3_slowdown
