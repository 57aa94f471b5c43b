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
# to an object the event references; the hostile part stored as
# application/octet-stream) or named in the status event's skipped_ids; the
# worker's metrics count them; a second command publishes
# nothing; the parser reads the full manifest object (1,000 attachments in
# the emails row) and marks the rows of partly derived messages.
# Then the same poison messages in a second folder, through the one-thread
# S3 path, with LATTICE_EVENT_MAX_BYTES above the producer's limit: the
# producer refuses the whole 1,000-attachment event (its size is printed) on
# every attempt, so the message is published as its bare envelope with
# parse_error saying so, and the folder still reaches its last UID.
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
ACCOUNT2=imap2-$RUN
FOLDER2="$RUN-serial"
WORK=$(mktemp -d /var/tmp/lattice-poison.XXXXXX)
WPID= PPID2= WPID2=
imap() { python3 "$HERE/lib/imap_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID" "$WPID2" "$PPID2"
  lt_imap_delete "$FOLDER" "$FOLDER2"
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
PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT

# attachments as objects of their own (LATTICE_ATTACHMENTS=objects): their URIs carry the
# 600-byte names, so the 1000-attachment event is over the bound (as a range of the .eml
# each entry names the shorter .eml URI and that event fits)
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=$RUN LATTICE_WORKER_ID=$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
LATTICE_WORKER_MAX_ATTEMPTS=2 LATTICE_TMP_DIR=$WORK LATTICE_METRICS_PORT=$PORT \
LATTICE_METRICS_BIND=127.0.0.1 LATTICE_ATTACHMENTS=objects \
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
        for a in m:  # an object of its own (LATTICE_ATTACHMENTS=objects): its PUT's Content-Type
            if a.get("encoded_offset") is None:
                print("att\t%s\t%s" % (a["object_uri"], base))
            else:  # a range of the .eml: no PUT with the declared type at all
                out(a["object_uri"] == p["raw_object_uri"] and a["transfer_encoding"] == "base64",
                    "%s: attachment is a base64 range of its .eml" % base)
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

s3get() { # s3get s3://bucket/key [curl args] -> the object on stdout
  local k=${1#s3://$LATTICE_S3_BUCKET/}
  k=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/-._~"))' "$k")
  curl -sf --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
    --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "${@:2}" "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET/$k"
}
while IFS=$'\t' read -r kind uri name; do
  case $kind in
    raw) check "$name: raw object present" bash -c "$(declare -f s3get); s3get '$uri' >/dev/null" ;;
    manifest)
      n=$(s3get "$uri" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["attachments_manifest"]))' || echo 0)
      check "$name: the manifest object lists 1000 attachments ($n)" [ "$n" = 1000 ] ;;
    att) # the PUT's Content-Type, as S3 keeps it
      ct=$(s3get "$uri" -I | tr -d '\r' | awk -F': ' 'tolower($1) == "content-type" { print $2 }')
      check "$name: its attachment object has Content-Type application/octet-stream ($ct)" \
        [ "$ct" = application/octet-stream ] ;;
  esac
done < <(grep -E '^(raw|manifest|att)' "$WORK/verdicts")
check "the worker counted the poison messages (log)" grep -q "not fully derived\|skipped" "$WORK/worker.log"
scrape m1
check "metric: 2 messages published partly derived (ctype, refused)" \
  is "$(metric m1 'lattice_worker_messages_partial_total{provider="imap"}')" 2
check "metric: 0 messages skipped" is "$(metric m1 'lattice_worker_messages_skipped_total{provider="imap"}')" 0
check "metric: 1 manifest object stored" \
  is "$(metric m1 'lattice_worker_objects_stored_total{provider="imap",kind="manifest"}')" 1

# 4. a second command: nothing new is published (nothing is retried for ever)
nev=$(wc -l <"$WORK/events.jsonl")
lt_imap_command "$CMD_TOPIC" "cmd2-$RUN" "$TENANT" "$ACCOUNT" incremental
st2=$(lt_wait_status --final "$STATUS_TOPIC" "cmd2-$RUN" "$WORK/worker.log" || echo '{}')
check "second command succeeded ($(jget "$st2" result): $(jget "$st2" error))" [ "$(jget "$st2" result)" = succeeded ]
check "second command: 0 messages ($(jget "$st2" messages))" [ "$(jget "$st2" messages)" = 0 ]
n2=$(python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$ACCOUNT" | wc -l)
check "no new event after the second command ($nev -> $n2)" [ "$n2" = "$nev" ]

# 5. the parser reads the full manifest of the wide message
LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$RAW_TOPIC.changes LATTICE_PARSER_GROUP_ID=parser-$RUN LATTICE_PARSER_DLQ_TOPIC=$DLQ_TOPIC \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_LOG_FORMAT=text LATTICE_PARSER_RETRY_BASE_MS=200 \
  "$BUILD/parser/lattice-mail-parser" >"$WORK/parser.log" 2>&1 &
PPID2=$!
rows() { psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT'"; }
end=$((SECONDS + 180 * LT_TF)) # a hang guard
while [ $SECONDS -lt $end ] && [ "$(rows)" != "$nev" ]; do sleep 0.5; done
check "parser: one row per event ($(rows) of $nev)" [ "$(rows)" = "$nev" ]
wide=$(psqlq "SELECT attachment_count FROM emails WHERE tenant_id = '$TENANT' AND message_id = 'poison.wide@edge.example.test'")
check "parser: the wide message has its 1000 attachments ($wide)" [ "$wide" = 1000 ]
perr() { # perr ACCOUNT UIDS-FILE NAME.eml -> "class error" of its row ("- -": none)
  local uid
  uid=$(awk -v f="/$3" 'substr($2, length($2) - length(f) + 1) == f { print $1 }' "$2")
  psqlq "SELECT coalesce(parse_error_class, '-') || ' ' || coalesce(parse_error, '-') FROM emails WHERE tenant_id = '$TENANT' AND account_id = '$1' AND provider_message_id LIKE '%;UID=$uid'"
}
pe=$(perr "$ACCOUNT" "$WORK/uids" poison-ctype.eml)
check "parser: the ctype row carries the worker's parse_error ($pe)" \
  bash -c '[[ $1 == "invalid ingest: an attachment"*"application/octet-stream"* ]]' _ "$pe"
pe=$(perr "$ACCOUNT" "$WORK/uids" poison-refused.eml)
check "parser: the refused row has the parser's own parse_error ($pe)" \
  bash -c '[[ $1 == "too_big MIME: "*"over the caps"* ]]' _ "$pe"
pe=$(perr "$ACCOUNT" "$WORK/uids" poison-wide.eml)
check "parser: the wide row has no parse_error ($pe)" [ "$pe" = "- -" ]

# 6. the one-thread S3 path, and an event bound above the producer's limit
imap create "$FOLDER2"
imap append-files "$FOLDER2" "$C/poison-ctype.eml" "$C/poison-wide.eml" "$C/poison-refused.eml" \
  "$C/normal-00.eml" >"$WORK/uids2"
LAST_UID2=$(awk 'END {print $1}' "$WORK/uids2")
CMD2_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.cmd2.$RUN")
lt_imap_account "$TENANT" "$ACCOUNT2" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER2"
LATTICE_TOPIC_COMMANDS=$CMD2_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=$RUN-2 LATTICE_WORKER_ID=$RUN-2 LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
LATTICE_WORKER_MAX_ATTEMPTS=2 LATTICE_TMP_DIR=$WORK LATTICE_WORKER_S3_PARALLEL=1 \
LATTICE_EVENT_MAX_BYTES=4194304 LATTICE_ATTACHMENTS=objects \
  "$BUILD/worker/lattice-worker" >"$WORK/worker2.log" 2>&1 &
WPID2=$!
lt_imap_command "$CMD2_TOPIC" "cmd3-$RUN" "$TENANT" "$ACCOUNT2" incremental
st3=$(lt_wait_status --final "$STATUS_TOPIC" "cmd3-$RUN" "$WORK/worker2.log" || echo '{}')
check "unbounded: command succeeded ($(jget "$st3" result): $(jget "$st3" error))" \
  [ "$(jget "$st3" result)" = succeeded ]
wm=$(psqlq "SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT2' AND scope='$FOLDER2'")
check "unbounded: watermark reaches the last UID $LAST_UID2 ($wm)" [ "$wm" = "$LAST_UID2" ]
whole=$(sed -n 's/.*produce: event of \([0-9]*\) bytes: Broker: Message size too large.*/\1/p' \
  "$WORK/worker2.log" | head -1)
echo "the whole event of poison-wide.eml (1,000 manifest entries, real object URIs): ${whole:-?} bytes"
check "unbounded: the producer refused the whole event (${whole:-no log line} bytes > 1000000)" \
  [ "${whole:-0}" -gt 1000000 ]
python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$ACCOUNT2" >"$WORK/events2.jsonl"
python3 - "$WORK" >"$WORK/verdicts2" <<'PY'
import json, os, sys
ev = {}
for l in open(os.path.join(sys.argv[1], "events2.jsonl")):
    p = json.loads(l)["payload"]
    ev[p["provider_message_id"].rsplit(";UID=", 1)[1]] = p
uid = {os.path.basename(l.split(None, 1)[1].strip()): l.split()[0]
       for l in open(os.path.join(sys.argv[1], "uids2"))}
def out(ok, what):
    print("%s\t%s" % ("ok" if ok else "FAIL", what))
c, w, r, n = (ev.get(uid[f]) for f in ("poison-ctype.eml", "poison-wide.eml",
                                       "poison-refused.eml", "normal-00.eml"))
out(len(ev) == 4, "unbounded: 4 events (%d)" % len(ev))
out(c is not None and "application/octet-stream" in (c.get("parse_error") or "") and
    [a["content_type"] for a in c["attachments_manifest"]] == ["application/octet-stream"],
    "unbounded: ctype published, its attachment as application/octet-stream, parse_error set")
out(w is not None and "Message size too large" in (w.get("parse_error") or "") and
    not w["attachments_manifest"] and not w["attachments_manifest_truncated"] and
    w["attachments_manifest_ref"] is None,
    "unbounded: wide published as its bare envelope, parse_error says why (%r)" %
    (w.get("parse_error") if w else None))
out(r is not None and "over the caps" in (r.get("parse_error") or ""),
    "unbounded: refused published, parse_error set")
out(n is not None and n.get("parse_error") is None, "unbounded: normal published, no parse_error")
PY
while IFS=$'\t' read -r verdict what; do
  case $verdict in
    ok) pass=$((pass+1)) ;;
    FAIL) fail=$((fail+1)); echo "FAILED: $what" >&2 ;;
  esac
done <"$WORK/verdicts2"
rows2() { psqlq "SELECT count(*) FROM emails WHERE tenant_id = '$TENANT' AND account_id = '$ACCOUNT2'"; }
end=$((SECONDS + 180 * LT_TF)) # a hang guard
while [ $SECONDS -lt $end ] && [ "$(rows2)" != 4 ]; do sleep 0.5; done
check "unbounded: parser wrote 4 rows ($(rows2))" [ "$(rows2)" = 4 ]
pe=$(perr "$ACCOUNT2" "$WORK/uids2" poison-wide.eml)
check "unbounded: the wide row says its manifest was dropped ($pe)" \
  bash -c '[[ $1 == "invalid ingest: event not publishable as derived"*"Message size too large"* ]]' _ "$pe"

check "no sanitizer report or crash in the logs" bash -c "! grep -qE 'ERROR: (Address|Undefined|Leak)Sanitizer|runtime error|Segmentation' '$WORK/worker.log' '$WORK/worker2.log' '$WORK/parser.log'"
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0 on SIGTERM" [ "$rc" = 0 ]
kill -TERM "$WPID2"; rc=0; wait "$WPID2" || rc=$?; WPID2=
check "second worker exited 0 on SIGTERM" [ "$rc" = 0 ]
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/worker.log"; echo "--- worker 2 log";
  tail -20 "$WORK/worker2.log"; echo "--- parser log"; tail -20 "$WORK/parser.log"; }
lt_summary test_worker_poison
