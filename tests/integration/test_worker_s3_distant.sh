#!/usr/bin/env bash
# A distant object store (a proxy in front of MinIO that delays every answer
# by 30 ms): the upload pool of a command grows from LATTICE_WORKER_S3_PARALLEL
# (2) towards LATTICE_WORKER_S3_PARALLEL_MAX (16), and the delivery guarantee
# holds all the same:
#   - the sync succeeds, `messages` = the folder, one committed event per UID,
#     produced in UID order, each naming an object that exists;
#   - the worker says how far the pool grew (more than 2, at most 16);
#   - with _MAX = _PARALLEL the pool stays fixed (no growth).
# Its own folder, topics, group, worker ids, tenant and accounts.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_BENCH_USERS \
  LATTICE_TEST_IMAP_BENCH_PASSWORD
COUNT=120
RUN=far$(date +%s)$$
TENANT=t-$RUN
FOLDER=$RUN
USER_=${LATTICE_TEST_IMAP_BENCH_USERS%% *}
WORK=$(mktemp -d /var/tmp/lattice-far.XXXXXX)
WPID= PPID_=
imap() { LATTICE_TEST_IMAP_USER=$USER_ LATTICE_TEST_IMAP_PASSWORD=$LATTICE_TEST_IMAP_BENCH_PASSWORD \
  python3 "$HERE/lib/imap_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID" "$PPID_"
  imap delete "$FOLDER" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$ROOT/deploy/local/fill-mailbox" --user "$USER_" --password-env LATTICE_TEST_IMAP_BENCH_PASSWORD \
  --folder "$FOLDER" --create --count "$COUNT" --seed "$RUN" >"$WORK/fill.json"
check "folder filled: $COUNT messages" [ "$(jget "$(tail -1 "$WORK/fill.json")" last_uid)" = "$COUNT" ]

python3 "$HERE/lib/delay_proxy.py" --upstream "${LATTICE_S3_ENDPOINT#http://}" --delay-ms 30 \
  --port-file "$WORK/port" --log "$WORK/proxy.log" &
PPID_=$!
for _ in $(seq 1 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
check "delay proxy listening" [ -s "$WORK/port" ]
FAR=http://127.0.0.1:$(cat "$WORK/port")

RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.raw.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.status.$RUN")

sync_once() { # sync_once NAME PARALLEL MAX -> the final status on stdout
  local name=$1 acct=imap-$RUN-$1
  local cmd_topic
  cmd_topic=$("$ROOT/deploy/local/stack" topic "lattice.test.cmd.$RUN.$name")
  lt_imap_account "$TENANT" "$acct" "$USER_" LATTICE_TEST_IMAP_BENCH_PASSWORD "$FOLDER"
  LATTICE_TOPIC_COMMANDS=$cmd_topic LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
  LATTICE_WORKER_GROUP_ID=$RUN-$name LATTICE_WORKER_ID=$RUN-$name LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
  LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
  LATTICE_S3_ENDPOINT=$FAR LATTICE_WORKER_S3_PARALLEL=$2 LATTICE_WORKER_S3_PARALLEL_MAX=$3 \
    "$BUILD/worker/lattice-worker" >"$WORK/$name.log" 2>&1 &
  WPID=$!
  lt_wait_assigned "$WORK/$name.log" >&2
  lt_imap_command "$cmd_topic" "cmd-$RUN-$name" "$TENANT" "$acct" incremental
  lt_wait_status --final "$STATUS_TOPIC" "cmd-$RUN-$name" "$WORK/$name.log" || echo '{}'
  lt_stop "$WPID"
  WPID=
}

st=$(sync_once grow 2 16)
check "grow: the sync succeeded ($st)" [ "$(jget "$st" result)" = succeeded ]
check "grow: messages = $COUNT" [ "$(jget "$st" messages)" = "$COUNT" ]
grew=$(grep -o 'S3 uploads: [0-9]* threads (grew from 2' "$WORK/grow.log" | grep -o '[0-9]* threads' | cut -d' ' -f1 || true)
check "grow: the pool grew from 2 (to ${grew:-none}), within 16" \
  [ -n "$grew" ] && [ "$grew" -gt 2 ] && [ "$grew" -le 16 ]
check "grow: the objects went through the distant store ($(grep -c '^PUT ' "$WORK/proxy.log" || true) PUTs)" \
  [ "$(grep -c '^PUT ' "$WORK/proxy.log" || true)" -ge "$COUNT" ]

st=$(sync_once fixed 2 2)
check "fixed: the sync succeeded" [ "$(jget "$st" result)" = succeeded ]
check "fixed: no growth with _MAX = _PARALLEL" bash -c "! grep -q 'S3 uploads: .* threads (grew' '$WORK/fixed.log'"

# both accounts: one committed event per UID, in UID order, objects present
python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" >"$WORK/events.json" 2>"$WORK/events.err" || true
check "events: every UID once per account, in UID order" python3 - "$WORK/events.json" "$COUNT" <<'EOF'
import json, sys
n = int(sys.argv[2])
per = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    per.setdefault(e["source"]["account_id"], []).append(
        int(e["payload"]["provider_message_id"].rsplit("=", 1)[1]))
assert len(per) == 2, per.keys()
for acct, uids in per.items():
    assert uids == list(range(1, n + 1)), (acct, len(uids), uids[:10])
EOF
# each raw object exists (the first and last event of each account)
# (the request path: the URI's key %-encoded once more)
python3 -c 'import json,sys,urllib.parse
e=[json.loads(l)["payload"] for l in open(sys.argv[1])]
for p in e[:1] + e[-1:] + e[len(e)//2:len(e)//2+1]:
    print(urllib.parse.quote(p["raw_object_uri"].split("/", 3)[3], safe="/-._~"))' \
  "$WORK/events.json" >"$WORK/keys" || true
while read -r key; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -I --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
    --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET/$key")
  check "object of an event exists: $key ($code)" [ "$code" = 200 ]
done <"$WORK/keys"
check "objects checked" [ "$(wc -l <"$WORK/keys")" -ge 2 ]
[ "$fail" = 0 ] || { echo "--- grow log"; tail -20 "$WORK/grow.log"; }
lt_summary test_worker_s3_distant
