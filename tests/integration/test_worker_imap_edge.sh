#!/usr/bin/env bash
# End to end through lattice-worker against the real stack: IMAP edge cases.
#   - a 25 MiB message with a large attachment: .eml object of the exact size,
#     attachment object present, event committed;
#   - a message over LATTICE_MAX_MESSAGE_BYTES: skipped AND reported (status
#     event "skipped"/"skipped_ids", worker log), the folder goes on past it;
#   - 60 attachments in one message: 60 manifest entries, 60 objects;
#   - a non-ASCII folder (modified UTF-7 on the wire): the event's mailbox is
#     the UTF-8 name;
#   - 8-bit headers/bodies without MIME, malformed MIME, a NUL byte: every
#     .eml is what the server serves, byte for byte (sha256 of the object =
#     event raw_sha256 = server's BODY[]; = the appended file except where
#     Dovecot rewrites on APPEND: NUL becomes 0x80), every event published;
#   - a bulk folder (EDGE_BULK_COUNT messages, default 2000; `make
#     test-imap-10k` runs 10000): one event per message, watermark = max UID;
#   - batches of 2 across a message over the cap and a 25 MiB one (spilled
#     to a file, so published in order: it performs the previous batch's
#     deferred checkpoint in the middle of its fetch): every other message
#     once, the skip reported once, watermark = max UID.
# Its own command/raw/status topics, consumer group, worker id, tenant and
# account: other helpers' workers never see these commands.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD
BULK=${EDGE_BULK_COUNT:-2000}
RUN=edge$(date +%s)$$
TENANT=t-$RUN
ACCOUNT=imap-$RUN
CAP=$((30 << 20)) # LATTICE_MAX_MESSAGE_BYTES of this worker
F_BIG="$RUN-big"
F_MANY="$RUN-many"
F_UNI="$RUN/Entwürfe/Ünïcødé 日本"
F_WEIRD="$RUN-weird"
F_BULK="$RUN-bulk"
F_SPILL="$RUN-spill"
WORK=$(mktemp -d /var/tmp/lattice-edge.XXXXXX)
WPID=
imap() { python3 "$HERE/lib/imap_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID"
  for f in "$F_BIG" "$F_MANY" "$F_UNI" "$RUN/Entwürfe" "$RUN" "$F_WEIRD" "$F_BULK" "$F_SPILL"; do
    imap delete "$f" >/dev/null 2>&1 || true
  done
  [ "${EDGE_KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
s3() { # s3 PATH-AND-QUERY [curl args]: signed request to MinIO
  local p=$1; shift
  curl -sf --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
    --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET$p" "$@"
}
t_start=$(date +%s)

# 1. the mailboxes
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" big --size $((25 << 20))
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" big --size $((CAP + (1 << 20))) --name over
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" many
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" weird
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" plain
for f in "$F_BIG" "$F_MANY" "$F_UNI" "$F_WEIRD"; do imap create "$f"; done
imap append-files "$F_BIG" "$WORK/c/big.eml" "$WORK/c/over.eml" "$WORK/c/plain-00.eml" >"$WORK/uids-big"
imap append-files "$F_MANY" "$WORK/c/many.eml" >"$WORK/uids-many"
imap append-files "$F_UNI" "$WORK/c"/plain-0*.eml >"$WORK/uids-uni"
imap append-files "$F_WEIRD" "$WORK/c"/[0-9][0-9]-*.eml >"$WORK/uids-weird"
"$ROOT/deploy/local/fill-mailbox" --user "$LATTICE_TEST_IMAP_USER" --folder "$F_BULK" --create \
  --count "$BULK" --seed "$RUN" --size 2000 --attachments 0 >"$WORK/fill.json"
t_filled=$(date +%s)

# 2. topics, account, worker
CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.raw.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.status.$RUN")
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD \
  "$F_BIG" "$F_MANY" "$F_UNI" "$F_WEIRD" "$F_BULK"

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=$RUN LATTICE_WORKER_ID=$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
LATTICE_MAX_MESSAGE_BYTES=$CAP LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!

CMD_ID="cmd-$RUN"
lt_imap_command "$CMD_TOPIC" "$CMD_ID" "$TENANT" "$ACCOUNT" incremental
st=
for _ in $(seq 1 1800); do # 180 s: a stall fails the test instead of hanging it
  st=$(kcat -C -b "$BROKER" -t "$STATUS_TOPIC" -o beginning -e -q -f '%s\n' 2>/dev/null \
       | grep -F "\"command_id\":\"$CMD_ID\"" | grep -vF "\"result\":\"running\"" | tail -1 || true)
  [ -n "$st" ] && break
  kill -0 "$WPID" 2>/dev/null || break
  sleep 0.1
done
t_synced=$(date +%s)
check "worker alive after the sync" kill -0 "$WPID"
check "a status event came ($st)" [ -n "$st" ]
[ -n "$st" ] || st='{}'
jget() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(v if v is not None else "")' "$1" "$2"; }
NMSG=$((3 + 1 + 3 + 10 + BULK - 1)) # all but the one over the cap
check "command succeeded ($(jget "$st" result): $(jget "$st" error))" [ "$(jget "$st" result)" = succeeded ]
check "status: $NMSG messages ($(jget "$st" messages))" [ "$(jget "$st" messages)" = "$NMSG" ]
OVER_UID=$(awk '/over.eml/ {print $1}' "$WORK/uids-big")
V_BIG=$(imap uidvalidity "$F_BIG")
check "status reports 1 skipped message ($(jget "$st" skipped))" [ "$(jget "$st" skipped)" = 1 ]
check "status names the skipped message ($(jget "$st" skipped_ids))" \
  [ "$(jget "$st" skipped_ids)" = "$F_BIG;UIDVALIDITY=$V_BIG;UID=$OVER_UID" ]
check "worker log names the skipped UID" grep -qi "folder $F_BIG UID $OVER_UID not ingested (too_big)" "$WORK/worker.log"

# 3. the events (committed only), decoded
python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$ACCOUNT" >"$WORK/events.jsonl"
check "$NMSG committed events ($(wc -l <"$WORK/events.jsonl"))" [ "$(wc -l <"$WORK/events.jsonl")" = "$NMSG" ]

# server truth per folder: "<uid> <size> <sha256>" of BODY.PEEK[]
python3 - "$WORK" "$F_BIG" "$F_MANY" "$F_UNI" "$F_WEIRD" "$F_BULK" "$BULK" "$OVER_UID" <<'EOF' >"$WORK/verdicts"
import hashlib, json, os, subprocess, sys, urllib.parse
bucket_uri = "s3://" + os.environ["LATTICE_S3_BUCKET"]
def s3path(uri):  # the request path of an s3:// URI (its key is %-encoded once more)
    return urllib.parse.quote(uri[len(bucket_uri):], safe="/-._~")
work, f_big, f_many, f_uni, f_weird, f_bulk, bulk, over_uid = sys.argv[1:9]
ev = [json.loads(l) for l in open(os.path.join(work, "events.jsonl"))]
by = {}
for e in ev:
    folder, _, rest = e["payload"]["provider_message_id"].partition(";UIDVALIDITY=")
    uid = int(rest.split(";UID=")[1])
    by.setdefault(folder, {})[uid] = e
def out(ok, what):
    print("%s\t%s" % ("ok" if ok else "FAIL", what))
def uids(name):
    m = {}
    for l in open(os.path.join(work, "uids-" + name)):
        u, p = l.split(None, 1)
        m[int(u)] = p.strip()
    return m
# every event's mailbox is the folder of its provider_message_id
out(all(e["source"]["mailbox"] == f for f, d in by.items() for e in d.values()), "mailbox field = folder of every event")
out(set(by) == {f_big, f_many, f_uni, f_weird, f_bulk}, "events from the 5 folders: %s" % sorted(by))
out(len({e["event_id"] for e in ev}) == len(ev), "event ids unique")
# appended files: the event's size and sha256 equal the file (server rewrites noted)
for name, folder in (("big", f_big), ("many", f_many), ("uni", f_uni), ("weird", f_weird)):
    for uid, path in uids(name).items():
        data = open(path, "rb").read()
        e = by.get(folder, {}).get(uid)
        base = os.path.basename(path)
        if uid == int(over_uid) and folder == f_big:
            out(e is None, "over-cap message has no event")
            continue
        if e is None:
            out(False, "event for %s" % base); continue
        p = e["payload"]
        if b"\0" in data:
            served = data.replace(b"\0", b"\x80")  # Dovecot rewrites NUL on APPEND
            out(p["raw_sha256"] == hashlib.sha256(served).hexdigest() and p["raw_size_bytes"] == len(served),
                "%s: raw_sha256/size = appended bytes with NUL->0x80 (as Dovecot serves it)" % base)
        else:
            out(p["raw_sha256"] == hashlib.sha256(data).hexdigest() and p["raw_size_bytes"] == len(data),
                "%s: raw_sha256 and raw_size_bytes = the appended file (%d bytes)" % (base, len(data)))
        print("obj\t%s\t%s\t%s" % (s3path(p["raw_object_uri"]), p["raw_sha256"], base))
        if base == "big.eml":
            m = p["attachments_manifest"]
            out(len(m) == 1 and m[0]["filename"] == "big.bin" and m[0]["size_bytes"] > 18_000_000,
                "big.eml: one large attachment in the manifest (%s)" % [(a["filename"], a["size_bytes"]) for a in m])
            for a in m:  # objects of their own (a range of the .eml: attachment_check.py)
                if a.get("encoded_offset") is None:
                    print("att\t%s\t%s\t%s" % (s3path(a["object_uri"]), a["sha256"], a["filename"]))
        if base == "many.eml":
            m = p["attachments_manifest"]
            names = sorted(a["filename"] for a in m)
            out(names == ["file-%02d.bin" % i for i in range(60)], "many.eml: 60 manifest entries (%d)" % len(m))
            for a in m:  # objects of their own (a range of the .eml: attachment_check.py)
                if a.get("encoded_offset") is None:
                    print("att\t%s\t%s\t%s" % (s3path(a["object_uri"]), a["sha256"], a["filename"]))
# the unicode folder: mailbox exactly the UTF-8 name
out(all(e["source"]["mailbox"] == "%s" % f_uni for e in by.get(f_uni, {}).values()) and len(by.get(f_uni, {})) == 3,
    "3 events with mailbox %r" % f_uni)
# bulk folder: one event per UID 1..bulk
b = by.get(f_bulk, {})
out(sorted(b) == list(range(1, int(bulk) + 1)), "bulk: %s events for UIDs 1..%s (%d)" % (bulk, bulk, len(b)))
EOF
while IFS=$'\t' read -r verdict what rest; do
  case $verdict in
    ok) pass=$((pass+1)) ;;
    FAIL) fail=$((fail+1)); echo "FAILED: $what" >&2 ;;
  esac
done < <(grep -E '^(ok|FAIL)' "$WORK/verdicts")

# 4. the objects themselves: sha256 of what S3 holds = the event's (and the server's)
server=$(for f in "$F_BIG" "$F_MANY" "$F_UNI" "$F_WEIRD"; do imap fetch-sha "$f"; done | awk '{print $3}' | sort)
bad=0 nobj=0
while IFS=$'\t' read -r kind path sha name; do
  got=$(s3 "$path" | sha256sum | cut -d' ' -f1 || true)
  nobj=$((nobj+1))
  if [ "$got" != "$sha" ]; then bad=$((bad+1)); echo "object $name: sha256 $got, event says $sha" >&2; fi
  if [ "$kind" = obj ] && ! grep -qx "$sha" <<<"$server"; then bad=$((bad+1)); echo "object $name: not what the server serves" >&2; fi
done < <(grep -E '^(obj|att)' "$WORK/verdicts")
check "all $nobj objects (.eml + attachments) match their sha256 and the server's bytes" [ "$bad" = 0 ]
natt_obj=$(grep -c '^att' "$WORK/verdicts" || true)
check "16 .eml + $natt_obj attachment objects checked ($nobj)" [ "$nobj" = $((16 + natt_obj)) ]
# every attachment as a consumer reads it: a range of the .eml decoded (LATTICE_ATTACHMENTS=ranges,
# the default) or its own object; size and sha256 = the manifest's
python3 "$HERE/lib/attachment_check.py" <"$WORK/events.jsonl" >"$WORK/attachments.txt"
check "every attachment read back = its manifest entry ($(grep '^bad ' "$WORK/attachments.txt" | head -3))" \
  [ "$(grep -c '^bad ' "$WORK/attachments.txt" || true)" = 0 ]
if [ "${LATTICE_ATTACHMENTS:-ranges}" = ranges ]; then
  check "big.eml and many.eml: 61 attachments read as ranges of their .eml ($(grep -c '^ranged ' "$WORK/attachments.txt" || true))" \
    [ "$(grep -c '^ranged ' "$WORK/attachments.txt" || true)" -ge 61 ]
  check "no attachment objects" [ "$natt_obj" = 0 ]
else
  check "61 attachment objects" [ "$natt_obj" = 61 ]
fi
big_path=$(awk -F'\t' '$1=="obj" && $4=="big.eml" {print $2}' "$WORK/verdicts")
big_size=$(s3 "$big_path" -I | awk 'tolower($1)=="content-length:" {print $2+0}' || true)
check "big .eml object is $(stat -c %s "$WORK/c/big.eml") bytes ($big_size)" [ "$big_size" = "$(stat -c %s "$WORK/c/big.eml")" ]

# 5. watermarks = max UID of every folder (the over-cap message did not block its folder)
wm() { psqlq "SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT' AND scope='$1'"; }
check "watermark of the big folder = 3 ($(wm "$F_BIG"))" [ "$(wm "$F_BIG")" = 3 ]
check "watermark of the unicode folder = 3 ($(wm "$F_UNI"))" [ "$(wm "$F_UNI")" = 3 ]
check "watermark of the weird folder = 10 ($(wm "$F_WEIRD"))" [ "$(wm "$F_WEIRD")" = 10 ]
check "watermark of the bulk folder = $BULK ($(wm "$F_BULK"))" [ "$(wm "$F_BULK")" = "$BULK" ]

# 6. nothing crashed, nothing secret logged, clean exit
check "no sanitizer report or crash in the log" bash -c "! grep -qE 'ERROR: (Address|Undefined|Leak)Sanitizer|runtime error|Segmentation' '$WORK/worker.log'"
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0 on SIGTERM" [ "$rc" = 0 ]

# 7. batches of 2: [plain, plain] [over the cap, 25 MiB] [plain]; each batch's
# checkpoint is deferred until the next batch is read, the spilled 25 MiB
# message performs it inside its fetch (after the skip was kept for it)
imap create "$F_SPILL"
imap append-files "$F_SPILL" "$WORK/c/plain-00.eml" "$WORK/c/plain-01.eml" "$WORK/c/over.eml" \
  "$WORK/c/big.eml" "$WORK/c/plain-02.eml" >"$WORK/uids-spill"
ACCOUNT2=imap2-$RUN
lt_imap_account "$TENANT" "$ACCOUNT2" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$F_SPILL"
CMD2_TOPIC=$("$ROOT/deploy/local/stack" topic "lattice.test.cmd2.$RUN")
LATTICE_TOPIC_COMMANDS=$CMD2_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=$RUN-2 LATTICE_WORKER_ID=$RUN-2 LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
LATTICE_MAX_MESSAGE_BYTES=$CAP LATTICE_TMP_DIR=$WORK LATTICE_WORKER_BATCH_MESSAGES=2 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker2.log" 2>&1 &
WPID=$!
lt_imap_command "$CMD2_TOPIC" "cmd2-$RUN" "$TENANT" "$ACCOUNT2" incremental
st2=
for _ in $(seq 1 1800); do
  st2=$(lt_statuses "$STATUS_TOPIC" "cmd2-$RUN" | grep -vF "\"result\":\"running\"" | tail -1 || true)
  [ -n "$st2" ] && break
  kill -0 "$WPID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$st2" ] || st2='{}'
V_SPILL=$(imap uidvalidity "$F_SPILL")
check "batches of 2: command succeeded ($(jget "$st2" result): $(jget "$st2" error))" [ "$(jget "$st2" result)" = succeeded ]
check "batches of 2: 4 messages ($(jget "$st2" messages))" [ "$(jget "$st2" messages)" = 4 ]
check "batches of 2: the one over the cap skipped, once ($(jget "$st2" skipped_ids))" \
  [ "$(jget "$st2" skipped_ids)" = "$F_SPILL;UIDVALIDITY=$V_SPILL;UID=3" ]
python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" --account "$ACCOUNT2" >"$WORK/events2.jsonl"
ids2=$(python3 -c 'import json,sys; print(" ".join(sorted(json.loads(l)["payload"]["provider_message_id"].split(";UID=")[1] for l in sys.stdin)))' <"$WORK/events2.jsonl")
check "batches of 2: committed events of UIDs 1 2 4 5, each once ($ids2)" [ "$ids2" = "1 2 4 5" ]
wm2=$(psqlq "SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT2' AND scope='$F_SPILL'")
check "batches of 2: watermark = 5 ($wm2)" [ "$wm2" = 5 ]
check "batches of 2: 3 checkpoints" grep -q "timing: .* 3 checkpoint(s)" "$WORK/worker2.log"
kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "batches of 2: worker exited 0 on SIGTERM" [ "$rc" = 0 ]
check "no secret in the log" bash -c "! grep -qF '$LATTICE_TEST_IMAP_PASSWORD' '$WORK/worker.log'"
[ "$fail" = 0 ] || { echo "--- worker log"; tail -40 "$WORK/worker.log"; }
echo "test_worker_imap_edge: fill $((t_filled - t_start)) s, sync $((t_synced - t_filled)) s ($BULK bulk messages), total $(($(date +%s) - t_start)) s"
lt_summary test_worker_imap_edge
