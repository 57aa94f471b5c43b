#!/usr/bin/env bash
# End to end: lattice-worker turns an IMAP folder into mail.raw.v1 events on
# a per-run raw topic; lattice-mail-parser (its own group) turns them into
# emails rows. Checks: one row per message, headers/body/attachments, RFC
# 2047 subjects, HTML bodies, FTS, parse_error rows (object missing, message
# over the cap), undecodable records to the parser DLQ with reasons, offsets
# committed (a restart reads nothing), a replay in a new group keeps the row
# count, SIGTERM exits 0, no message content in the log.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
TENANT=tp$RUN
ACCOUNT=imap-parser-$RUN
FOLDER="parser-$RUN-Posteingang-ä"
CMD_TOPIC=test.parser.cmd.$RUN
RAW_TOPIC=test.parser.raw.$RUN
DLQ_TOPIC=test.parser.dlq.$RUN
WORD=$(tr 0-9 a-j <<<"$RUN")           # letters only: one FTS lexeme
BODYWORD=quokka$WORD                   # only in m1's text body
HTMLWORD=axolotl$WORD                  # only in m2's HTML body
SUBJWORD=Köln$WORD                     # only in m1's subject
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
q1() { psqlq "SELECT $1 FROM emails WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT' AND message_id = '$2'"; }
fts() { psqlq "SELECT string_agg(message_id, ',' ORDER BY message_id) FROM emails_live WHERE tenant_id = '$TENANT' AND fts @@ plainto_tsquery('simple', '$1')"; }
s3() { # s3 METHOD KEY -> HTTP status (the key percent-encoded for the path)
  local how=(-X "$1"); [ "$1" = HEAD ] && how=(-I)
  curl -s -o /dev/null -w '%{http_code}' "${how[@]}" --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
    --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET/${2//%/%25}"
}

for t in "$CMD_TOPIC" "$DLQ_TOPIC"; do "$ROOT/deploy/local/stack" topic "$t" >/dev/null; done
"$ROOT/deploy/local/stack" topic "$RAW_TOPIC" 3 >/dev/null

# --- the messages -------------------------------------------------------------
# m1: text/plain, RFC 2047 subject and From, To/Cc lists, a Date
cat >"$WORK/m1.eml" <<EOM
From: =?UTF-8?Q?Zo=C3=AB_Example?= <zoe@example.test>
To: Alice <alice@example.test>, bob@example.test
Cc: "Carol, C." <carol@example.test>
Subject: =?UTF-8?B?$(printf 'Grüße aus %s — Rechnung' "$SUBJWORD" | base64 -w0)?=
Date: Tue, 24 Nov 2026 10:15:00 +0100
Message-ID: <m1.$RUN@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hello Alice,

the $BODYWORD invoice is attached. Größe: 3 kB.
EOM
# m2: HTML only, with an attachment
cat >"$WORK/m2.eml" <<EOM
From: Dan <dan@example.test>
To: alice@example.test
Subject: html only
Date: Wed, 25 Nov 2026 08:00:00 +0000
Message-ID: <m2.$RUN@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/html; charset=utf-8

<html><head><style>p {color: red}</style></head><body><p>See the <b>$HTMLWORD</b> &amp; more</p></body></html>
--b1
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

$(head -c 3000 /dev/urandom | base64)
--b1--
EOM
# m3: two attachments, one with an RFC 2231 name
cat >"$WORK/m3.eml" <<EOM
From: eve@example.test
To: alice@example.test
Subject: two files
Message-ID: <m3.$RUN@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b2"

--b2
Content-Type: text/plain

files attached
--b2
Content-Type: image/png
Content-Disposition: attachment; filename*=UTF-8''%C3%BCbersicht.png
Content-Transfer-Encoding: base64

$(head -c 1200 /dev/urandom | base64)
--b2
Content-Type: text/csv; name="data.csv"
Content-Disposition: attachment; filename="data.csv"

a,b
1,2
--b2--
EOM
# m4: over the parser's message cap (LATTICE_PARSER_MAX_MESSAGE_BYTES below)
{ printf 'From: big@example.test\nTo: alice@example.test\nSubject: big one\nMessage-ID: <m4.%s@example.test>\n\n' "$RUN"
  head -c 60000 /dev/urandom | base64; } >"$WORK/m4.eml"
# m5: its .eml is deleted from S3 before the parser runs
printf 'From: gone@example.test\nTo: alice@example.test\nSubject: vanished\nMessage-ID: <m5.%s@example.test>\n\nbody\n' "$RUN" >"$WORK/m5.eml"
NGEN=20

python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append-files "$FOLDER" "$WORK"/m1.eml "$WORK"/m2.eml "$WORK"/m3.eml \
  "$WORK"/m4.eml "$WORK"/m5.eml >"$WORK/uids"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count $NGEN --seed p$RUN --attachments 1
TOTAL=$((NGEN + 5))
IMAP_PW_VAR=$(lt_secret_env "$TENANT" IMAP_PASSWORD) # the worker reads the password from it
export "$IMAP_PW_VAR=$LATTICE_TEST_IMAP_PASSWORD"
CONFIG=$(printf '{"host":"%s","port":%s,"username":"%s","password_env":"'"$IMAP_PW_VAR"'","folders":["%s"]}' \
  "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$LATTICE_TEST_IMAP_USER" "$FOLDER")
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$ACCOUNT', 'imap', '$CONFIG'::jsonb)" >/dev/null

# --- the worker: the folder to events on RAW_TOPIC ---------------------------
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC \
LATTICE_WORKER_GROUP_ID=test-parser-w-$RUN LATTICE_WORKER_ID=test-parser-w-$RUN \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_BATCH_MESSAGES=10 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
CID=cmd-parser-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
status=$(lt_wait_status --final lattice.mail.sync.status.v1 "$CID" "$WORK/worker.log") || true
check "worker synced the folder ($status)" grep -q '"result":"succeeded"' <<<"$status"
check "worker: $TOTAL messages" grep -q "\"messages\":$TOTAL" <<<"$status"
kill -TERM "$WPID"; wait "$WPID" || true; WPID=

# m5's raw message disappears
uid5=$(awk '/m5.eml/ {print $1}' "$WORK/uids")
key5=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed -f '%s\n' 2>/dev/null \
       | grep -ao "tenant/[^[:cntrl:]]*UID%3D${uid5}/message.eml" | head -1)
check "found m5's object key ($key5)" [ -n "$key5" ]
check "deleted m5's object" [ "$(s3 DELETE "$key5")" = 204 ]

# two poison records: garbage, and a wire header naming an unknown schema id
printf 'poison\tnot avro at all\n' | kcat -P -b "$BROKER" -t "$RAW_TOPIC" -p 0 -K $'\t' 2>/dev/null
printf '\x00\x7f\xff\xff\xf0\x02ab' >"$WORK/badid.bin"
kcat -P -b "$BROKER" -t "$RAW_TOPIC" -p 1 -k poison2 "$WORK/badid.bin" 2>/dev/null

# --- the parser ----------------------------------------------------------------
run_parser() { # run_parser GROUP LOG: start in the background
  LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$RAW_TOPIC.changes LATTICE_PARSER_GROUP_ID=$1 LATTICE_PARSER_DLQ_TOPIC=$DLQ_TOPIC \
  LATTICE_PARSER_BATCH_MESSAGES=7 LATTICE_PARSER_CONCURRENCY=3 LATTICE_PARSER_MAX_MESSAGE_BYTES=40000 \
  LATTICE_LOG_FORMAT=text LATTICE_PARSER_RETRY_BASE_MS=200 \
    "$BUILD/parser/lattice-mail-parser" >"$2" 2>&1 &
  PPID2=$!
}
PRC=
stop_parser() { # sets PRC to the exit code
  PRC=0
  kill -TERM "$PPID2"; wait "$PPID2" || PRC=$?; PPID2=
}
dlq_count() { kcat -C -b "$BROKER" -t "$DLQ_TOPIC" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c poison || true; }
wait_for() { # wait_for ROWS DLQ: up to 300 s (a hang guard)
  local end=$((SECONDS + 300 * LT_TF))
  while [ $SECONDS -lt $end ]; do
    [ "$(rows)" = "$1" ] && [ "$(dlq_count)" = "$2" ] && return 0
    sleep 0.3
  done
  return 1
}

G1=test-parser-$RUN
run_parser "$G1" "$WORK/parser1.log"
check "parser: $TOTAL rows and 2 dead letters" wait_for "$TOTAL" 2
sleep 1 # the offsets of the last batch
stop_parser; check "parser exits 0 on SIGTERM ($PRC)" [ "$PRC" = 0 ]

M1=m1.$RUN@example.test M2=m2.$RUN@example.test M3=m3.$RUN@example.test
M4=m4.$RUN@example.test M5=m5.$RUN@example.test
check "m1 subject decoded ($(q1 subject "$M1"))" [ "$(q1 subject "$M1")" = "Grüße aus $SUBJWORD — Rechnung" ]
check "m1 from" [ "$(q1 "from_display || '|' || from_email" "$M1")" = "Zoë Example <zoe@example.test>|zoe@example.test" ]
check "m1 to" [ "$(q1 to_addrs "$M1")" = "{alice@example.test,bob@example.test}" ]
check "m1 cc" [ "$(q1 cc_addrs "$M1")" = "{carol@example.test}" ]
check "m1 date header" [ "$(q1 "date_header AT TIME ZONE 'UTC'" "$M1")" = "2026-11-24 09:15:00" ]
check "m1 body text/plain" [ "$(q1 body_source "$M1")" = text/plain ]
check "m1 body" grep -q "the $BODYWORD invoice is attached. Größe: 3 kB." <<<"$(q1 body_text "$M1")"
check "m1 no attachments, no error" [ "$(q1 "attachment_count || '|' || coalesce(parse_error, 'none')" "$M1")" = "0|none" ]
check "m1 raw object key" grep -q "^tenant/$TENANT/account/$ACCOUNT/provider/imap/message/.*/message.eml$" <<<"$(q1 raw_object_key "$M1")"
check "m1 event id, mailbox, received_at" [ "$(q1 "(event_id IS NOT NULL AND mailbox = '$FOLDER' AND received_at > now() - interval '1 hour')::text" "$M1")" = true ]
check "m2 body from HTML" [ "$(q1 body_source "$M2")" = text/html ]
m2body=$(q1 body_text "$M2")
check "m2 HTML stripped ($m2body)" bash -c "grep -q 'See the $HTMLWORD & more' <<<'$m2body' && ! grep -q '[<>]\|color' <<<'$m2body'"
check "m2 attachment" [ "$(q1 "attachments->0->>'filename' || '|' || (attachments->0->>'content_type') || '|' || (attachments->0->>'size_bytes')" "$M2")" = "report.pdf|application/pdf|3000" ]
check "m3 two attachments" [ "$(q1 "jsonb_path_query_array(attachments, '\$[*].filename')::text" "$M3")" = '["übersicht.png", "data.csv"]' ]
akey=$(q1 "attachments->0->>'object_key'" "$M3")
check "m3 attachment key under the message ($akey)" grep -q "^tenant/$TENANT/account/$ACCOUNT/" <<<"$akey"
check "m3 attachment object exists" [ "$(s3 HEAD "$akey")" = 200 ]
if [ "${LATTICE_ATTACHMENTS:-ranges}" = ranges ]; then
  # a range of the .eml: the row names it, and reading it back gives the row's size and sha256
  check "m3 attachments are ranges of the .eml" [ "$(q1 "(attachments->0->>'object_key' = raw_object_key AND attachments->1->>'object_key' = raw_object_key)::text || '|' || (attachments->0->>'transfer_encoding') || '|' || (attachments->1->>'transfer_encoding') || '|' || ((attachments->0->>'encoded_length')::bigint > 1600)::text" "$M3")" = "true|base64|binary|true" ]
else
  check "m3 attachment object of its own" grep -q "/attachments/" <<<"$akey"
fi
q1 "json_build_object('payload', json_build_object('provider_message_id', provider_message_id, 'raw_object_uri', 's3://' || raw_bucket || '/' || raw_object_key, 'attachments_manifest', (SELECT json_agg(a || jsonb_build_object('object_uri', 's3://' || raw_bucket || '/' || (a->>'object_key'))) FROM jsonb_array_elements(attachments) a)))" "$M3" \
  | python3 "$HERE/lib/attachment_check.py" >"$WORK/m3-attachments.txt"
check "m3 attachments read back from the row's keys = their size and sha256 ($(cat "$WORK/m3-attachments.txt"))" \
  [ "$(grep -c '^\(ranged\|object\) ' "$WORK/m3-attachments.txt")" = 2 -a "$(wc -l <"$WORK/m3-attachments.txt")" = 2 ]
check "m4 over the cap: parse_error too_big" [ "$(q1 "parse_error_class || '|' || body_text || '|' || raw_size_bytes::text" "$M4" | cut -d'|' -f1,2)" = "too_big|" ]
# m4/m5 rows carry the event's message id (no message to read it from)
check "m5 missing object: parse_error not_found" [ "$(q1 parse_error_class "$M5")" = not_found ]
check "generated messages have their attachment" [ "$(psqlq "SELECT count(*) FROM emails WHERE tenant_id='$TENANT' AND subject LIKE 'test p$RUN message %' AND attachment_count = 1 AND body_text LIKE 'Body of message %'")" = $NGEN ]
check "generated subjects decoded (été)" [ "$(psqlq "SELECT count(*) FROM emails WHERE tenant_id='$TENANT' AND subject LIKE '% été'")" = $NGEN ]

# full-text search
check "FTS: body word finds only m1" [ "$(fts "$BODYWORD")" = "$M1" ]
check "FTS: HTML word finds only m2" [ "$(fts "$HTMLWORD")" = "$M2" ]
check "FTS: subject word (any case) finds only m1" [ "$(fts "$(tr '[:lower:]' '[:upper:]' <<<"$SUBJWORD")")" = "$M1" ]
check "FTS: sender name finds m1" [ "$(fts "Zoë")" = "$M1" ]
check "FTS uses the GIN index" bash -c "PGPASSWORD=\$LATTICE_PG_PASSWORD psql \"\$LATTICE_PG_DSN\" -X -A -t -c \"SET enable_seqscan = off; EXPLAIN SELECT 1 FROM emails_live WHERE fts @@ plainto_tsquery('simple', 'x')\" | grep -q emails_fts_live"

# dead letters: the records unchanged, with reasons
dlq=$(kcat -C -b "$BROKER" -t "$DLQ_TOPIC" -o beginning -e -q -f '%k|%h|%s\n' 2>/dev/null | tr -d '\000')
check "DLQ: garbage with its reason" bash -c "grep -q '^poison|.*lattice.dlq.reason=undecodable.*lattice.dlq.source_topic=$RAW_TOPIC.*|not avro at all$' <<<\"\$0\"" "$dlq"
check "DLQ: unknown schema id with its reason" bash -c "grep -a '^poison2|' <<<\"\$0\" | grep -aq 'lattice.dlq.reason=.*404'" "$dlq"

# offsets were committed: the same group again reads nothing
before=$(psqlq "SELECT max(parsed_at) FROM emails WHERE tenant_id = '$TENANT'")
run_parser "$G1" "$WORK/parser2.log"
# it has its partitions (a slow group join must not pass the checks below
# vacuously), then time to read anything it would read again
for _ in $(seq 1 600); do grep -q "assigned" "$WORK/parser2.log" && break; sleep 0.2; done
check "restart: partitions assigned" grep -q "assigned" "$WORK/parser2.log"
sleep 5
stop_parser; check "restart in the same group: exits 0" [ "$PRC" = 0 ]
check "restart: nothing parsed again" [ "$(psqlq "SELECT max(parsed_at) FROM emails WHERE tenant_id = '$TENANT'")" = "$before" ]
check "restart: no new dead letters" [ "$(dlq_count)" = 2 ]
check "restart: log says 0 events" grep -q "stopped after 0 events" "$WORK/parser2.log"

# replay from the start in a new group: same rows, rewritten
run_parser "test-parser-replay-$RUN" "$WORK/parser3.log"
check "replay: dead letters again" wait_for "$TOTAL" 4
end=$((SECONDS + 300 * LT_TF))
while [ $SECONDS -lt $end ]; do
  [ "$(psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$TENANT' AND parsed_at > '$before'")" = "$TOTAL" ] && break
  sleep 0.3
done
check "replay: every row rewritten" [ "$(psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$TENANT' AND parsed_at > '$before'")" = "$TOTAL" ]
stop_parser; check "replay: exits 0" [ "$PRC" = 0 ]
check "replay: still $TOTAL rows" [ "$(rows)" = "$TOTAL" ]

check "no body word in the logs" bash -c "! grep -qF -e '$BODYWORD' -e '$HTMLWORD' $WORK/parser*.log"
check "no secret in the logs" bash -c "! grep -qF -e '$LATTICE_PG_PASSWORD' -e '$LATTICE_S3_SECRET_ACCESS_KEY' $WORK/parser*.log"
[ "$fail" = 0 ] || { echo "--- parser log"; tail -40 "$WORK/parser1.log"; }
lt_summary test_parser
