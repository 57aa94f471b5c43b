#!/usr/bin/env bash
# Forged mail.raw.v1 events against the real stack: lattice-worker syncs two
# messages of tenant A; each of A's events is then copied with only its
# tenant_id rewritten (a valid Avro record, same schema id), once to tenant B
# and once to a tenant whose id is a prefix of A's ("tfa123" vs "tfa123x").
# They point at A's .eml and attachment objects. lattice-mail-parser must
# write A's two rows, no row for B or the prefix tenant, and dead-letter the
# four forged records with the reason (object key outside the event's own
# folder) and the metric dead_letters{reason="foreign_object"}.
# Also: an attachment without a filename is stored as .../unnamed~<hash>
# (docs/storage.md), not under a made-up name.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD
TENANT_A=tfa${RUN}x
TENANT_B=tfb${RUN}x
TENANT_P=tfa${RUN}       # a prefix of TENANT_A
ACCOUNT=imap-forged-$RUN
FOLDER="parser-forged-$RUN"
CMD_TOPIC=test.parser-forged.cmd.$RUN
RAW_TOPIC=test.parser-forged.raw.$RUN
DLQ_TOPIC=test.parser-forged.dlq.$RUN
SECRET=wombat$(tr 0-9 a-j <<<"$RUN")   # only in A's message body
WORK=$(mktemp -d)
WPID= PPID2=
PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
cleanup() {
  lt_stop "$WPID" "$PPID2"
  lt_imap_delete "$FOLDER"
  psqlq "DELETE FROM emails WHERE tenant_id IN ('$TENANT_A', '$TENANT_B', '$TENANT_P'); DELETE FROM mail_accounts WHERE tenant_id = '$TENANT_A'" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
rows() { psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$1'"; }
dlq_count() { kcat -C -b "$BROKER" -t "$DLQ_TOPIC" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c '^forged-' || true; }
s3_head() { # s3_head KEY -> HTTP status
  curl -s -o /dev/null -w '%{http_code}' -I --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
    --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET/$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/-_.~"))' "$1")"
}

for t in "$CMD_TOPIC" "$DLQ_TOPIC"; do "$ROOT/deploy/local/stack" topic "$t" >/dev/null; done
"$ROOT/deploy/local/stack" topic "$RAW_TOPIC" 1 >/dev/null

# --- tenant A's mail: a text message, and one with an unnamed attachment -----
printf 'From: a@example.test\nTo: alice@example.test\nSubject: for A only\nMessage-ID: <f1.%s@example.test>\n\nthe %s is private\n' \
  "$RUN" "$SECRET" >"$WORK/f1.eml"
cat >"$WORK/f2.eml" <<EOM
From: a@example.test
To: alice@example.test
Subject: unnamed attachment
Message-ID: <f2.$RUN@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

see the attachment
--b1
Content-Type: application/octet-stream
Content-Disposition: attachment
Content-Transfer-Encoding: base64

$(head -c 600 /dev/urandom | base64)
--b1--
EOM
python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append-files "$FOLDER" "$WORK/f1.eml" "$WORK/f2.eml" >/dev/null
lt_imap_account "$TENANT_A" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

# attachments as objects of their own (LATTICE_ATTACHMENTS=objects): the unnamed
# attachment's key below (test_parser.sh covers the default, ranges of the .eml)
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC \
LATTICE_WORKER_GROUP_ID=test-parser-forged-w-$RUN LATTICE_WORKER_ID=test-parser-forged-w-$RUN \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_ATTACHMENTS=objects \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
CID=cmd-parser-forged-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT_A" "$ACCOUNT" incremental
status=$(lt_wait_status --final lattice.mail.sync.status.v1 "$CID" "$WORK/worker.log") || true
check "worker synced A's folder ($status)" grep -q '"result":"succeeded"' <<<"$status"
check "worker: 2 messages" grep -q '"messages":2' <<<"$status"
kill -TERM "$WPID"; wait "$WPID" || true; WPID=

# --- the forgeries: A's records with another tenant_id -----------------------
# Avro writes a string as its zig-zag varint length and its bytes; tenant_id
# is the first field holding A's id (after event_id, event_type, event_time),
# so replacing the first encoded occurrence keeps the record valid.
cat >"$WORK/forge.py" <<'EOF'
import sys
def enc(s):
    b = s.encode()
    n, out = len(b) << 1, bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out) + b
        out.append((n & 0x7f) | 0x80)
        n >>= 7
src, old, new, dst = sys.argv[1:5]
data = open(src, "rb").read()
i = data.index(enc(old))
open(dst, "wb").write(data[:i] + enc(new) + data[i + len(enc(old)):])
EOF
offsets=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -p 0 -o beginning -e -q -X isolation.level=read_committed -f '%o\n' 2>/dev/null)
check "two events of A on the raw topic ($(echo $offsets))" [ "$(wc -w <<<"$offsets")" = 2 ]
n=0
for o in $offsets; do
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -p 0 -o "$o" -c 1 -e -q -X isolation.level=read_committed -f '%s' 2>/dev/null >"$WORK/ev$o.bin"
  check "A's event at offset $o names A's objects" grep -aq "tenant/$TENANT_A/account/$ACCOUNT/" "$WORK/ev$o.bin"
  for t in "$TENANT_B" "$TENANT_P"; do
    python3 "$WORK/forge.py" "$WORK/ev$o.bin" "$TENANT_A" "$t" "$WORK/forged$n.bin"
    kcat -P -b "$BROKER" -t "$RAW_TOPIC" -p 0 -k "forged-$t-$o" "$WORK/forged$n.bin" 2>/dev/null
    n=$((n + 1))
  done
done
check "four forged records" [ "$n" = 4 ]

# --- the parser ----------------------------------------------------------------
LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$RAW_TOPIC.changes LATTICE_PARSER_GROUP_ID=test-parser-forged-$RUN \
LATTICE_PARSER_DLQ_TOPIC=$DLQ_TOPIC LATTICE_PARSER_RETRY_BASE_MS=200 LATTICE_LOG_FORMAT=text \
LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
  "$BUILD/parser/lattice-mail-parser" >"$WORK/parser.log" 2>&1 &
PPID2=$!
# all six records handled, whatever became of them (a hang guard, 300 s)
end=$((SECONDS + 300 * LT_TF))
while [ $SECONDS -lt $end ]; do
  [ "$(rows "$TENANT_A")" = 2 ] &&
    [ $(( $(dlq_count) + $(rows "$TENANT_B") + $(rows "$TENANT_P") )) = 4 ] && break
  sleep 0.3
done
check "A's two rows" [ "$(rows "$TENANT_A")" = 2 ]
check "no row for tenant B ($(rows "$TENANT_B"))" [ "$(rows "$TENANT_B")" = 0 ]
check "no row for the prefix tenant $TENANT_P ($(rows "$TENANT_P"))" [ "$(rows "$TENANT_P")" = 0 ]
check "A's text is in no other tenant's row" [ "$(psqlq "SELECT count(*) FROM emails WHERE body_text LIKE '%$SECRET%' AND tenant_id <> '$TENANT_A'")" = 0 ]
check "four forged records dead-lettered ($(dlq_count))" [ "$(dlq_count)" = 4 ]
dlq=$(kcat -C -b "$BROKER" -t "$DLQ_TOPIC" -o beginning -e -q -f '%k|%h\n' 2>/dev/null | tr -d '\000')
for t in "$TENANT_B" "$TENANT_P"; do
  check "DLQ: $t's forgeries with the reason" \
    [ "$(grep -a "^forged-$t-" <<<"$dlq" | grep -ac "lattice.dlq.reason=raw_object_uri: key outside the event's own folder tenant/$t/account/$ACCOUNT/.*: tenant/$TENANT_A/")" = 2 ]
done
check "DLQ: error class invalid" [ "$(grep -ac 'lattice.dlq.error_class=invalid' <<<"$dlq")" = 4 ]
for _ in $(seq 1 150); do # the batch's counters move after its commit (30 s hang guard)
  scrape m
  is "$(metric m 'lattice_parser_dead_letters_total{reason="foreign_object"}')" 4 && break
  sleep 0.2
done
check "metric dead_letters{foreign_object} = 4" is "$(metric m 'lattice_parser_dead_letters_total{reason="foreign_object"}')" 4
check "parser log names the dead letters" [ "$(grep -c "dead-lettered to $DLQ_TOPIC: raw_object_uri: key outside" "$WORK/parser.log")" = 4 ]
kill -TERM "$PPID2"; rc=0; wait "$PPID2" || rc=$?; PPID2=
check "parser exits 0 on SIGTERM ($rc)" [ "$rc" = 0 ]

# --- the unnamed attachment's key ------------------------------------------------
akey=$(psqlq "SELECT attachments->0->>'object_key' FROM emails WHERE tenant_id = '$TENANT_A' AND message_id = 'f2.$RUN@example.test'")
check "unnamed attachment stored as unnamed~<hash of \"\"> ($akey)" \
  grep -q "^tenant/$TENANT_A/account/$ACCOUNT/provider/imap/message/.*/attachments/[^/]*/unnamed~e3b0c44298fc1c14$" <<<"$akey"
check "manifest: filename null" [ "$(psqlq "SELECT coalesce(attachments->0->>'filename', 'null') FROM emails WHERE tenant_id = '$TENANT_A' AND message_id = 'f2.$RUN@example.test'")" = null ]
check "unnamed attachment object exists" [ "$(s3_head "$akey")" = 200 ]

check "no body word in the parser log" bash -c "! grep -qF '$SECRET' '$WORK/parser.log'"
[ "$fail" = 0 ] || { echo "--- parser log"; tail -30 "$WORK/parser.log"; }
lt_summary test_parser_forged
