#!/usr/bin/env bash
# End to end through lattice-worker and lattice-mail-parser against the real
# stack: messages that fail the same way on every attempt must not block
# their folder. Between normal messages, one folder gets
#   - poison-ctype:   an attachment whose Content-Type is over 300 bytes
#                     (sent as the S3 PUT's Content-Type);
#   - poison-wide:    1,000 attachments with 600-byte names (the whole
#                     manifest makes an event over librdkafka's default
#                     message.max.bytes of 1,000,000);
#   - poison-refused: a MIME structure over the parser's caps.
# The worker runs with the default Kafka producer settings. Checks: the
# command succeeds and the folder's watermark reaches the last UID; every
# normal message has its event; every poison message is either published
# (raw object present, event present, parse_error set or the manifest moved
# to an object the event references) or named in the status event's
# skipped_ids; a second command publishes nothing; the parser reads the full
# manifest object (1,000 attachments in the emails row).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD
RUN=poison$RUN
TENANT=t-$RUN
ACCOUNT=imap-$RUN
FOLDER="$RUN-inbox"
WORK=$(mktemp -d /var/tmp/lattice-poison.XXXXXX)
WPID= PPID2=
imap() { python3 "$HERE/lib/imap_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID" "$PPID2"
  lt_imap_delete "$FOLDER"
  psqlq "DELETE FROM emails WHERE tenant_id = '$TENANT'; DELETE FROM mail_accounts WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true
  [ "${POISON_KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

# 1. the folder: normal, poison, normal, ... (7 UIDs)
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" poison
C=$WORK/c
imap create "$FOLDER"
imap append-files "$FOLDER" "$C/normal-00.eml" "$C/poison-ctype.eml" "$C/normal-01.eml" \
  "$C/poison-wide.eml" "$C/normal-02.eml" "$C/poison-refused.eml" "$C/normal-03.eml" >"$WORK/uids"
LAST_UID=$(awk 'END {print $1}' "$WORK/uids")
VALIDITY=$(imap uidvalidity "$FOLDER")

# 2. topics, account, worker (default producer settings: message.max.bytes 1,000,000)
CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.raw.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.status.$RUN")
DLQ_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.dlq.$RUN")
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=$RUN LATTICE_WORKER_ID=$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
LATTICE_WORKER_MAX_ATTEMPTS=2 LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!

lt_imap_command "$CMD_TOPIC" "cmd1-$RUN" "$TENANT" "$ACCOUNT" incremental
st=$(lt_wait_status --final "$STATUS_TOPIC" "cmd1-$RUN" "$WORK/worker.log" || echo '{}')
check "first command succeeded ($(jget "$st" result): $(jget "$st" error))" [ "$(jget "$st" result)" = succeeded ]
wm=$(psqlq "SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT' AND scope='$FOLDER'")
check "watermark reaches the last UID $LAST_UID ($wm)" [ "$wm" = "$LAST_UID" ]

# 3. the events, per UID
python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$ACCOUNT" >"$WORK/events.jsonl"
kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
  -f '%S\n' 2>/dev/null >"$WORK/sizes" || true
python3 - "$WORK" "$FOLDER" "$VALIDITY" "$st" <<'EOF' >"$WORK/verdicts"
import json, os, sys
work, folder, validity, status = sys.argv[1:5]
status = json.loads(status)
skipped = set(filter(None, (status.get("skipped_ids") or "").split(",")))
ev = {}
for l in open(os.path.join(work, "events.jsonl")):
    e = json.loads(l)
    ev[int(e["payload"]["provider_message_id"].rsplit(";UID=", 1)[1])] = e
def out(ok, what):
    print("%s\t%s" % ("ok" if ok else "FAIL", what))
for l in open(os.path.join(work, "uids")):
    uid, path = l.split(None, 1)
    uid, base = int(uid), os.path.basename(path.strip())
    pmid = "%s;UIDVALIDITY=%s;UID=%d" % (folder, validity, uid)
    e = ev.get(uid)
    if base.startswith("normal-"):
        out(e is not None and e["payload"].get("parse_error") is None, "%s (UID %d): event, no parse error" % (base, uid))
        continue
    if e is None:
        out(pmid in skipped, "%s (UID %d): no event, so named in skipped_ids (%s)" % (base, uid, sorted(skipped)))
        continue
    p = e["payload"]
    out(pmid not in skipped, "%s: published, not also skipped" % base)
    print("raw\t%s\t%s" % (p["raw_object_uri"], base))
    if base == "poison-wide.eml":
        out(p.get("attachments_manifest_truncated") and p.get("attachments_manifest_ref") and
            len(p["attachments_manifest"]) < 1000,
            "%s: manifest truncated inline (%d entries) and referenced (%s)" %
            (base, len(p["attachments_manifest"]), p.get("attachments_manifest_ref")))
        print("manifest\t%s\t%s" % (p.get("attachments_manifest_ref"), base))
    else:
        out(bool(p.get("parse_error")), "%s: parse_error marked (%r)" % (base, p.get("parse_error")))
    if base == "poison-ctype.eml":
        m = p["attachments_manifest"]
        out(len(m) == 1 and m[0]["content_type"] == "application/octet-stream",
            "%s: attachment stored as application/octet-stream (%s)" % (base, [a["content_type"] for a in m]))
out(len(ev) == 7 - len(skipped), "7 messages = %d events + %d skipped" % (len(ev), len(skipped)))
EOF
while IFS=$'\t' read -r verdict what; do
  case $verdict in
    ok) pass=$((pass+1)) ;;
    FAIL) fail=$((fail+1)); echo "FAILED: $what" >&2 ;;
  esac
done < <(grep -E '^(ok|FAIL)' "$WORK/verdicts")
maxsize=$(sort -n "$WORK/sizes" | tail -1)
check "every event is under 1,000,000 bytes (largest ${maxsize:-none})" [ -n "$maxsize" ] && [ "${maxsize:-0}" -lt 1000000 ]

s3get() { # s3get s3://bucket/key -> the object on stdout
  local k=${1#s3://$LATTICE_S3_BUCKET/}
  k=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/-._~"))' "$k")
  curl -sf --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
    --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET/$k"
}
while IFS=$'\t' read -r kind uri name; do
  case $kind in
    raw) check "$name: raw object present" bash -c "$(declare -f s3get); s3get '$uri' >/dev/null" ;;
    manifest)
      n=$(s3get "$uri" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["attachments_manifest"]))' || echo 0)
      check "$name: the manifest object lists 1000 attachments ($n)" [ "$n" = 1000 ] ;;
  esac
done < <(grep -E '^(raw|manifest)' "$WORK/verdicts")
check "the worker counted the poison messages (log)" grep -q "not fully derived\|skipped" "$WORK/worker.log"

# 4. a second command: nothing new is published (nothing is retried for ever)
nev=$(wc -l <"$WORK/events.jsonl")
lt_imap_command "$CMD_TOPIC" "cmd2-$RUN" "$TENANT" "$ACCOUNT" incremental
st2=$(lt_wait_status --final "$STATUS_TOPIC" "cmd2-$RUN" "$WORK/worker.log" || echo '{}')
check "second command succeeded ($(jget "$st2" result): $(jget "$st2" error))" [ "$(jget "$st2" result)" = succeeded ]
check "second command: 0 messages ($(jget "$st2" messages))" [ "$(jget "$st2" messages)" = 0 ]
n2=$(python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$ACCOUNT" | wc -l)
check "no new event after the second command ($nev -> $n2)" [ "$n2" = "$nev" ]

# 5. the parser reads the full manifest of the wide message
LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_PARSER_GROUP_ID=parser-$RUN LATTICE_PARSER_DLQ_TOPIC=$DLQ_TOPIC \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_LOG_FORMAT=text LATTICE_PARSER_RETRY_BASE_MS=200 \
  "$BUILD/parser/lattice-mail-parser" >"$WORK/parser.log" 2>&1 &
PPID2=$!
rows() { psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT'"; }
end=$((SECONDS + 180)) # a hang guard
while [ $SECONDS -lt $end ] && [ "$(rows)" != "$nev" ]; do sleep 0.5; done
check "parser: one row per event ($(rows) of $nev)" [ "$(rows)" = "$nev" ]
wide=$(psqlq "SELECT attachment_count FROM emails WHERE tenant_id = '$TENANT' AND message_id = 'poison.wide@edge.example.test'")
check "parser: the wide message has its 1000 attachments ($wide)" [ "$wide" = 1000 ]

check "no sanitizer report or crash in the logs" bash -c "! grep -qE 'ERROR: (Address|Undefined|Leak)Sanitizer|runtime error|Segmentation' '$WORK/worker.log' '$WORK/parser.log'"
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0 on SIGTERM" [ "$rc" = 0 ]
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/worker.log"; echo "--- parser log"; tail -20 "$WORK/parser.log"; }
lt_summary test_worker_poison
