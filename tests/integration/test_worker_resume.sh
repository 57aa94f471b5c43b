#!/usr/bin/env bash
# Long syncs resume where their last committed batch left them after a
# kill -9 (docs/delivery-protocol.md, "Progress of long syncs"):
#   (a) a Gmail first sync of N messages (the emulator slowed down per user),
#   (b) an IMAP backfill of a UID range 1..N against Dovecot,
#   (c) a Gmail backfill of a date range holding N messages.
# Each time the worker is killed once the command's progress_done passes
# about half of N, restarted with the same LATTICE_WORKER_ID (it reads the
# unfinished command again), and the command runs to success. Then, reading
# the raw topic with isolation.level=read_committed: every message has an
# event, and at most one batch of messages has two (the batch the kill may
# have caught between its Kafka commit and anything after it). Before the
# cursors existed both syncs started again from zero: ~N/2 duplicates.
# No time limit is asserted; waits are hang guards.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL LATTICE_GMAIL_API_URL LATTICE_GMAIL_TOKEN_URL \
  LATTICE_TEST_GMAIL_URL LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
N=${LATTICE_RESUME_MESSAGES:-600}
BATCH=50
TENANT=tr$RUN
GACCT=gmail-resume-$RUN
IACCT=imap-resume-$RUN
GUSER=resume$RUN@example.com
BACCT=gmail-backfill-$RUN
BUSER=resumebf$RUN@example.com
FOLDER=Resume$RUN
CMD_TOPIC=test.resume.cmd.$RUN
RAW_TOPIC=test.resume.raw.$RUN
STATUS_TOPIC=test.resume.status.$RUN
CKPT_TOPIC=test.resume.ckpt.$RUN
WID=test-resume-$RUN
WORK=$(mktemp -d)
WPID=
ctl() { # ctl METHOD PATH [JSON]: the emulator's control API
  curl -fsS --max-time 120 --cacert "$LATTICE_CA_FILE" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "$LATTICE_TEST_GMAIL_URL/_emulator$2"
}
cleanup() {
  [ -n "$WPID" ] && kill -KILL "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null || true
  ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  ctl DELETE "/users/$BUSER" >/dev/null 2>&1 || true
  lt_imap_delete "$FOLDER"
  if [ -n "${LATTICE_KEEP_WORK:-}" ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 1 >/dev/null & p1=$!
"$REPO/deploy/local/stack" topic "$RAW_TOPIC" 3 >/dev/null & p2=$!
"$REPO/deploy/local/stack" topic "$CKPT_TOPIC" 1 >/dev/null & p3=$!
"$REPO/deploy/local/stack" topic "$STATUS_TOPIC" 1 >/dev/null
wait $p1 $p2 $p3

# Gmail: N INBOX messages; every API call of this user takes 15 ms more.
ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":$N,\"size\":3000,\"labelIds\":[\"INBOX\"],\"seed\":$((RUN % 1000))}}" >/dev/null
ctl POST "/users/$GUSER/config" '{"latency_ms":15}' >/dev/null
CS_VAR=$(lt_secret_env "$TENANT" CLIENT_SECRET) RT_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN)
RTB_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN_B)
export "$CS_VAR=cs-$RUN" "$RT_VAR=rt-$RUN"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$GACCT', 'gmail',
  '{\"user\":\"$GUSER\",\"label_ids\":[\"INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT_VAR\"}'::jsonb)" >/dev/null

# Gmail backfill: N messages a minute apart from 2024-03-01T00:00Z, slowed down as above.
ctl POST /users "{\"email\":\"$BUSER\",\"refresh_token\":\"rtb-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":$N,\"size\":3000,\"labelIds\":[\"INBOX\"],\"start\":1709251200,\"interval_s\":60,\"seed\":$((RUN % 1000 + 1))}}" >/dev/null
ctl POST "/users/$BUSER/config" '{"latency_ms":15}' >/dev/null
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$BACCT', 'gmail',
  '{\"user\":\"$BUSER\",\"label_ids\":[\"INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RTB_VAR\"}'::jsonb)" >/dev/null
export "$RTB_VAR=rtb-$RUN"

# IMAP: N messages (with an attachment each: S3 work per message) in a folder of its own.
fill=$("$REPO/deploy/local/fill-mailbox" --user "$LATTICE_TEST_IMAP_USER" \
  --password-env LATTICE_TEST_IMAP_PASSWORD --folder "$FOLDER" --create --count "$N" \
  --attachments 1 --seed "$RUN" | tail -1)
check "IMAP folder filled with $N messages ($fill)" grep -q "\"last_uid\": $N\b" <<<"$fill"
lt_imap_account "$TENANT" "$IACCT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

start_worker() { # start_worker LOG
  LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
  LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC LATTICE_WORKER_GROUP_ID=test-resume-$RUN \
  LATTICE_WORKER_ID=$WID LATTICE_KAFKA_GROUP_INSTANCE_ID=$WID LATTICE_KAFKA_SESSION_TIMEOUT_MS=10000 \
  LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
  LATTICE_WORKER_BATCH_MESSAGES=$BATCH LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
  LATTICE_WORKER_PROGRESS_INTERVAL_S=1 LATTICE_GMAIL_MAX_INFLIGHT=2 LATTICE_GMAIL_RETRY_BASE_MS=20 \
    "$BUILD/worker/lattice-worker" >"$1" 2>&1 &
  WPID=$!
}

progress() { # progress COMMAND_ID -> progress_done (0 when none yet)
  local v
  v=$(psqlq "SELECT COALESCE(progress_done, 0) FROM mail_sync_commands WHERE command_id = '$1'")
  echo "${v:-0}"
}

# run_killed NAME ACCOUNT PROVIDER COMMAND_ID COMMAND_JSON_EXTRA
run_killed() {
  local name=$1 acct=$2 provider=$3 cid=$4 extra=$5 end p=0 status
  start_worker "$WORK/$name-1.log"
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"%s"%s,"requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$acct" "$cid" "$TENANT" "$acct" "$provider" "$extra" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
  end=$((SECONDS + 300 * LT_TF))
  while [ $SECONDS -lt $end ]; do
    p=$(progress "$cid")
    [ "$p" -ge $((N / 2)) ] && break
    kill -0 "$WPID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$WPID" 2>/dev/null || true
  wait "$WPID" 2>/dev/null || true
  WPID=
  status=$(psqlq "SELECT status FROM mail_sync_commands WHERE command_id = '$cid'")
  echo "$name: killed at progress_done $p of $N (command $status)"
  check "$name: killed mid-sync (progress $p of $N, command $status)" \
    bash -c '[ "$0" = running ] && [ "$1" -ge "$2" ] && [ "$1" -lt "$3" ]' "$status" "$p" $((N / 2)) "$N"
  start_worker "$WORK/$name-2.log"
  status=$(lt_wait_status --final "$STATUS_TOPIC" "$cid" "$WORK/$name-2.log" || true)
  check "$name: the command succeeded after the restart ($status)" grep -q '"result":"succeeded"' <<<"$status"
  lt_stop "$WPID"
  WPID=
}

# count_events ACCOUNT EXPECTED NAME: every message >= 1 event, at most one batch with 2
count_events() {
  python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$1" >"$WORK/$3.events"
  local r
  r=$(python3 -c '
import collections, json, sys
c = collections.Counter(json.loads(l)["payload"]["provider_message_id"] for l in open(sys.argv[1]))
print(len(c), sum(1 for v in c.values() if v > 1), max(c.values() or [0]))' "$WORK/$3.events")
  read -r ids dups most <<<"$r"
  echo "$3: $ids messages with events, $dups with more than one (at most $most events for one)"
  check "$3: every message has an event ($ids of $2)" [ "$ids" = "$2" ]
  check "$3: at most one batch published twice ($dups messages with duplicates, batch $BATCH)" \
    [ "$dups" -le "$BATCH" ]
}

# (a) Gmail first sync
run_killed gmail "$GACCT" gmail "resume-gmail-$RUN" ',"kind":"incremental"'
count_events "$GACCT" "$N" gmail
check "gmail: the watermark is stored" \
  [ -n "$(psqlq "SELECT 1 FROM mail_watermarks WHERE tenant_id = '$TENANT' AND account_id = '$GACCT'")" ]
check "gmail: the restarted worker resumed the listing" \
  grep -q "resuming the first sync" "$WORK/gmail-2.log"
check "gmail: no in-doubt row left" \
  [ -z "$(psqlq "SELECT 1 FROM mail_watermark_pending WHERE tenant_id = '$TENANT' AND account_id = '$GACCT'")" ]
done_g=$(grep -o "resuming the first sync.*(\([0-9]*\) done before)" "$WORK/gmail-2.log" | head -1 | grep -o '([0-9]* done' | tr -dc 0-9 || true)
check "gmail: progress resumed from the batches done before the kill (${done_g:-none})" \
  [ "${done_g:-0}" -ge $((N / 2 - BATCH)) ]

# (b) IMAP backfill of UIDs 1..N (the incremental watermark is not involved)
run_killed imap "$IACCT" imap "resume-imap-$RUN" \
  ",\"kind\":\"backfill\",\"backfill\":{\"folder\":\"$FOLDER\",\"start_uid\":1,\"end_uid\":$N}"
count_events "$IACCT" "$N" imap
check "imap: the restarted worker resumed after the last UID done" \
  grep -q "backfill of $FOLDER: resuming after UID" "$WORK/imap-2.log"
check "imap: no watermark written by the backfill" \
  [ -z "$(psqlq "SELECT 1 FROM mail_watermarks WHERE tenant_id = '$TENANT' AND account_id = '$IACCT'")" ]
done_i=$(grep -o "resuming after UID [0-9]* ([0-9]* done before)" "$WORK/imap-2.log" | head -1 | grep -o '([0-9]* done' | tr -dc 0-9 || true)
check "imap: progress resumed from the batches done before the kill (${done_i:-none})" \
  [ "${done_i:-0}" -ge $((N / 2 - BATCH)) ]

# (c) Gmail backfill of the day holding the N messages
run_killed gmail-backfill "$BACCT" gmail "resume-gbf-$RUN" \
  ',"kind":"backfill","backfill":{"start_date":"2024-03-01","end_date":"2024-03-01"}'
count_events "$BACCT" "$N" gmail-backfill
check "gmail backfill: the restarted worker resumed the listing" \
  grep -q "resuming the listing after message" "$WORK/gmail-backfill-2.log"
check "gmail backfill: no watermark written" \
  [ -z "$(psqlq "SELECT 1 FROM mail_watermarks WHERE tenant_id = '$TENANT' AND account_id = '$BACCT'")" ]

for f in "$WORK"/*.log; do
  if grep -qiE "AddressSanitizer|runtime error:" "$f"; then check "no sanitizer report in $(basename "$f")" false; fi
done
lt_summary test_worker_resume
