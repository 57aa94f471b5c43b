#!/usr/bin/env bash
# The IMAP connection drops mid-fetch (Dovecot cuts the session: `doveadm
# kick`), more than once, while lattice-worker syncs a folder in batches:
#   - the worker reconnects with backoff and resumes after the last durable
#     UID: the batch being fetched is dropped and fetched again, the batch
#     read before it commits (its checkpoint waits for the next batch to be
#     read, not for that read to succeed); events already published of a
#     cut batch are aborted (never visible). Which of these a cut meets
#     depends on its moment: aborts with events are counted, not required;
#   - every UID has exactly one committed event (read_committed), the
#     watermark is the highest UID;
#   - the command's result counts each message once: `messages` = the folder
#     size even though cut batches were fetched (maybe published) twice.
# Its own mailbox user (kick@, nobody else's sessions are cut), topics,
# consumer group, worker id, tenant and account.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_KICK_USER \
  LATTICE_TEST_IMAP_BENCH_PASSWORD LATTICE_DOVECOT_CONF
COUNT=${DROP_COUNT:-3000}
# 200 x 40 KB: a FETCH answer larger than the socket buffers, so a cut lands
# inside it; 15 batches, enough to cut into (each batch's checkpoint waits
# until the next is read, so a fast worker passes few watermark moves).
# (the transaction timeout, librdkafka's 60 s, times LT_TF: under valgrind a
# batch takes long and the broker would abort every one of them)
BATCH=200
# A command reconnects up to 5 times; a 6th cut fails the attempt and the
# command is retried, counting anew: 3 cuts keep it in one attempt.
KICKS=3
RUN=drop$(date +%s)$$
TENANT=t-$RUN
ACCOUNT=imap-$RUN
FOLDER=$RUN
USER_=$LATTICE_TEST_IMAP_KICK_USER
WORK=$(mktemp -d /var/tmp/lattice-drop.XXXXXX)
WPID=
imap() { LATTICE_TEST_IMAP_USER=$USER_ LATTICE_TEST_IMAP_PASSWORD=$LATTICE_TEST_IMAP_BENCH_PASSWORD \
  python3 "$HERE/lib/imap_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID"
  imap delete "$FOLDER" >/dev/null 2>&1 || true
  [ "${DROP_KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
kick() { doveadm -c "$LATTICE_DOVECOT_CONF" kick "$USER_" 2>&1; }
check "doveadm can reach the stack's Dovecot ($(doveadm -c "$LATTICE_DOVECOT_CONF" who 2>&1 | head -1))" \
  doveadm -c "$LATTICE_DOVECOT_CONF" who

"$ROOT/deploy/local/fill-mailbox" --user "$USER_" --password-env LATTICE_TEST_IMAP_BENCH_PASSWORD \
  --folder "$FOLDER" --create --count "$COUNT" --seed "$RUN" --size 40000 --attachments 0 \
  >"$WORK/fill.json"
LAST_UID=$(jget "$(tail -1 "$WORK/fill.json")" last_uid)
VALIDITY=$(jget "$(tail -1 "$WORK/fill.json")" uidvalidity)
check "folder filled: $COUNT messages, last UID $LAST_UID" [ "$LAST_UID" = "$COUNT" ]

CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.raw.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.status.$RUN")
lt_imap_account "$TENANT" "$ACCOUNT" "$USER_" LATTICE_TEST_IMAP_BENCH_PASSWORD "$FOLDER"

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=$RUN LATTICE_WORKER_ID=$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
LATTICE_WORKER_BATCH_MESSAGES=$BATCH LATTICE_TMP_DIR=$WORK \
LATTICE_KAFKA_TRANSACTION_TIMEOUT_MS=$((60000 * LT_TF)) \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

CMD_ID="cmd-$RUN"
lt_imap_command "$CMD_TOPIC" "$CMD_ID" "$TENANT" "$ACCOUNT" incremental
wm() { psqlq "SELECT coalesce((SELECT (watermark_json->>'last_uid')::int FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT'), 0)"; }
final() { lt_statuses "$STATUS_TOPIC" "$CMD_ID" | grep -v '"result":"running"' | tail -1; }

# Cut the session each time the watermark has moved on (a batch committed,
# the next one being fetched and published), KICKS times or until the folder
# is done.
aborted=0 kicks=0 last=-1
end=$((SECONDS + 300 * LT_TF))
while [ $SECONDS -lt $end ] && [ "$kicks" -lt "$KICKS" ]; do
  [ -n "$(final)" ] && break
  kill -0 "$WPID" 2>/dev/null || break
  w=$(wm)
  if [ "$w" -gt 0 ] && [ "$w" != "$last" ] && [ "$w" -lt "$COUNT" ]; then
    last=$w
    sleep "0.$((kicks % 4 + 1))" # into the next batch, 0.1 - 0.4 s
    kick >>"$WORK/kick.log" && kicks=$((kicks + 1))
    # wait for the worker to notice, then count the aborts with events in them
    for _ in $(seq 1 100); do
      [ "$(grep -c 'reconnecting' "$WORK/worker.log" || true)" -ge "$kicks" ] && break
      [ -n "$(final)" ] && break
      sleep 0.1
    done
    aborted=$(grep -cE 'batch aborted: [1-9][0-9]* event' "$WORK/worker.log" || true)
  fi
  sleep 0.05
done
echo "kicks: $kicks, batches aborted with events in them: $aborted" >&2

st=$(lt_wait_status --final "$STATUS_TOPIC" "$CMD_ID" "$WORK/worker.log" || echo '{}')
check "the sync succeeded ($st)" [ "$(jget "$st" result)" = succeeded ]
check "the worker reconnected after the cuts ($(grep -c reconnecting "$WORK/worker.log" || true) times)" \
  grep -q "reconnecting (attempt 1), resuming after UID" "$WORK/worker.log"
reconnects=$(grep -c 'reconnecting (attempt' "$WORK/worker.log" || true)
check "at least 2 cuts hit the running sync, each one a reconnect ($reconnects for $kicks cuts)" \
  [ "$reconnects" -ge 2 -a "$reconnects" = "$kicks" ]
check "messages counted once: $(jget "$st" messages) = $COUNT" [ "$(jget "$st" messages)" = "$COUNT" ]
check "watermark = the last UID ($(wm))" [ "$(wm)" = "$LAST_UID" ]

# every UID once, as a read_committed consumer sees the raw topic
kcat -C -b "$BROKER" -t "$RAW_TOPIC" -X isolation.level=read_committed -o beginning -e -q \
  -f '%h\n' 2>/dev/null | grep -o 'lattice.event_id=[0-9a-f-]*' >"$WORK/ids" || true
check "committed events: $(wc -l <"$WORK/ids") = $COUNT" [ "$(wc -l <"$WORK/ids")" = "$COUNT" ]
check "no event id twice" [ "$(sort "$WORK/ids" | uniq -d | wc -l)" = 0 ]
python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" >"$WORK/events.json" 2>"$WORK/events.err" || true
check "every UID 1..$COUNT has its event" python3 - "$WORK/events.json" "$COUNT" "$VALIDITY" "$FOLDER" <<'EOF'
import json, sys
n, validity, folder = int(sys.argv[2]), sys.argv[3], sys.argv[4]
uids = []
for line in open(sys.argv[1]):
    p = json.loads(line)["payload"]["provider_message_id"]
    assert p.startswith("%s;UIDVALIDITY=%s;UID=" % (folder, validity)), p
    uids.append(int(p.rsplit("=", 1)[1]))
assert sorted(uids) == list(range(1, n + 1)), (len(uids), len(set(uids)))
EOF

kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0 on SIGTERM" [ "$rc" = 0 ]
[ "$fail" = 0 ] || { echo "--- worker log"; grep -E "reconnect|abort|command|error" "$WORK/worker.log" | tail -40; }
lt_summary test_worker_imap_drop
