#!/usr/bin/env bash
# End to end: lattice-worker against the real stack (Kafka, Postgres, MinIO,
# Apicurio, Dovecot). Incremental twice, new mail between runs, UIDVALIDITY
# reset, attachments with hostile names, a malformed command to the DLQ, an
# unknown account to the DLQ, a drained SIGTERM.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_S3_ENDPOINT \
  LATTICE_CA_FILE LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
TENANT=t$RUN
ACCOUNT=imap-$RUN
FOLDER="e2e-$RUN-Entwürfe"
WORK=$(mktemp -d)
WPID=
cleanup() { lt_stop "$WPID"; lt_imap_delete "$FOLDER"; rm -rf "$WORK"; }
trap cleanup EXIT

python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 30 --seed a --attachments 2
IMAP_PW_VAR=$(lt_secret_env "$TENANT" IMAP_PASSWORD) # the worker reads the password from it
export "$IMAP_PW_VAR=$LATTICE_TEST_IMAP_PASSWORD"
CONFIG=$(printf '{"host":"%s","port":%s,"username":"%s","password_env":"'"$IMAP_PW_VAR"'","folders":["%s"]}' \
  "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$LATTICE_TEST_IMAP_USER" "$FOLDER")
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$ACCOUNT', 'imap', '$CONFIG'::jsonb)" >/dev/null

# The worker: its own command topic and consumer group (other tests run
# workers against the same stack at the same time). earliest: the topic is
# this run's own, and "latest" is resolved after the assignment is logged, so a
# command sent right after it could be skipped.
CMD_TOPIC=$("$HERE/../../deploy/local/stack" topic "test.worker-imap.$RUN.cmd" 3)
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_WORKER_BATCH_MESSAGES=7 LATTICE_LOG_FORMAT=text \
LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_ATTACHMENTS=${LATTICE_ATTACHMENTS:-ranges} \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"


command() { # command KIND [json extra] -> prints the command id
  local id="cmd-$RUN-$1-$(date +%s%N)"
  lt_imap_command "$CMD_TOPIC" "$id" "$TENANT" "$ACCOUNT" "$1" "${2:-}"
  echo "$id"
}
wait_status() { lt_wait_status --final lattice.mail.sync.status.v1 "$1" "$WORK/worker.log"; }
raw_count() { # committed events of this account
  kcat -C -b "$BROKER" -t lattice.mail.raw.v1 -o beginning -e -q -X isolation.level=read_committed \
    -f '%k\n' 2>/dev/null | grep -cx "$ACCOUNT" || true
}
raw_ids() {
  kcat -C -b "$BROKER" -t lattice.mail.raw.v1 -o beginning -e -q -X isolation.level=read_committed \
    -f '%k %h\n' 2>/dev/null | awk -v a="$ACCOUNT" '$1==a' | grep -o 'lattice.event_id=[0-9a-f-]*' | sort
}
wm() { psqlq "SELECT jsonb_build_object('last_uid', watermark_json->'last_uid', 'uidvalidity', watermark_json->'uidvalidity') FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT'"; }

# 1. first incremental: everything
c1=$(command incremental); s1=$(wait_status "$c1")
check "first run succeeded ($s1)" [ "$(jget "$s1" result)" = succeeded ]
check "first run: 30 messages" [ "$(jget "$s1" messages)" = 30 ]
check "30 committed events" [ "$(raw_count)" = 30 ]
V1=$(python3 "$HERE/lib/imap_tool.py" uidvalidity "$FOLDER")
check "watermark at UID 30 ($(wm))" [ "$(wm)" = "{\"last_uid\": 30, \"uidvalidity\": $V1}" ]
check "events unique" [ "$(raw_ids | uniq -d | wc -l)" = 0 ]

# objects: the .eml and an attachment whose hostile name stayed under its prefix
objs=$(curl -s --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
  --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
  "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET?list-type=2&max-keys=1000&prefix=tenant%2F$TENANT%2F")  # SigV4 wants sorted, encoded query parameters
check "30 raw messages stored" [ "$(grep -o '<Key>[^<]*message.eml</Key>' <<<"$objs" | wc -l)" = 30 ]
# attachments (LATTICE_ATTACHMENTS=ranges, the default): no object of their own; each
# manifest entry is a range of its .eml that decodes to the entry's size and sha256
check "no attachment objects (ranges of the .eml)" [ "$(grep -o '<Key>[^<]*/attachments/[^<]*</Key>' <<<"$objs" | wc -l)" = 0 ]
python3 "$HERE/lib/mail_events.py" --topic lattice.mail.raw.v1 --account "$ACCOUNT" \
  | python3 "$HERE/lib/attachment_check.py" >"$WORK/attachments.txt"
check "60 attachments: ranges of their .eml, decoded = manifest size and sha256 ($(grep -v '^ranged ' "$WORK/attachments.txt" | head -3))" \
  [ "$(grep -c '^ranged ' "$WORK/attachments.txt")" = 60 -a "$(wc -l <"$WORK/attachments.txt")" = 60 ]
check "no key escapes its prefix" bash -c "! grep -o '<Key>[^<]*</Key>' <<<'$objs' | grep -q '/\.\./'"

# 2. again: nothing new, nothing published
c2=$(command incremental); s2=$(wait_status "$c2")
check "second run succeeded" [ "$(jget "$s2" result)" = succeeded ]
check "second run: 0 messages" [ "$(jget "$s2" messages)" = 0 ]
check "still 30 events" [ "$(raw_count)" = 30 ]

# 3. new mail between runs
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 5 --seed b
c3=$(command incremental); s3=$(wait_status "$c3")
check "third run: 5 messages" [ "$(jget "$s3" messages)" = 5 ]
check "35 events" [ "$(raw_count)" = 35 ]

# 4. UIDVALIDITY reset: the folder is recreated; a full resync under the new validity
python3 "$HERE/lib/imap_tool.py" delete "$FOLDER"
python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 3 --seed c
V2=$(python3 "$HERE/lib/imap_tool.py" uidvalidity "$FOLDER")
check "UIDVALIDITY changed" [ "$V1" != "$V2" ]
c4=$(command incremental); s4=$(wait_status "$c4")
check "resync: 3 messages ($s4)" [ "$(jget "$s4" messages)" = 3 ]
check "watermark under the new validity ($(wm))" [ "$(wm)" = "{\"last_uid\": 3, \"uidvalidity\": $V2}" ]
check "38 events" [ "$(raw_count)" = 38 ]

# 5. backfill of UIDs 2..3: events again (same ids), watermark unchanged
c5=$(command backfill ",\"backfill\":{\"folder\":\"$FOLDER\",\"start_uid\":2,\"end_uid\":3}"); s5=$(wait_status "$c5")
check "backfill: 2 messages ($s5)" [ "$(jget "$s5" messages)" = 2 ]
check "backfill kept the watermark" [ "$(wm)" = "{\"last_uid\": 3, \"uidvalidity\": $V2}" ]
check "backfill duplicates only with identical ids" [ "$(raw_ids | uniq | wc -l)" = 38 ]

# 6. a malformed command and an unknown account go to the DLQ, the worker goes on
printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"bad-%s"}\n' "$ACCOUNT" "$RUN" \
  | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
printf 'nobody-%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"ghost-%s","tenant_id":"%s","account_id":"nobody-%s","provider":"imap","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
  "$RUN" "$RUN" "$TENANT" "$RUN" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
sg=$(wait_status "ghost-$RUN")
check "unknown account dead-lettered" [ "$(jget "$sg" result)" = dead_lettered ]
# a file: the shared DLQ can outgrow one command-line argument (128 KiB)
kcat -C -b "$BROKER" -t lattice.mail.sync.cmd.dlq.v1 -o beginning -e -q -f '%h %s\n' >"$WORK/dlq" 2>/dev/null || true
check "DLQ holds the malformed command with its reason" bash -c "grep -F 'bad-$RUN' '$WORK/dlq' | grep -q 'lattice.dlq.reason='"
check "DLQ holds the unknown account's command" bash -c "grep -F 'ghost-$RUN' '$WORK/dlq' | grep -q 'unknown account'"
c6=$(command incremental); s6=$(wait_status "$c6")
check "worker carries on after the DLQ" [ "$(jget "$s6" result)" = succeeded ]

# 7. SIGTERM drains and exits 0
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0 on SIGTERM" [ "$rc" = 0 ]
check "no secret in the log" bash -c "! grep -qF '$LATTICE_TEST_IMAP_PASSWORD' '$WORK/worker.log'"
[ "$fail" = 0 ] || { echo "--- worker log"; tail -50 "$WORK/worker.log"; }
lt_summary test_worker_imap
