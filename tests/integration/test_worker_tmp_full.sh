#!/usr/bin/env bash
# LATTICE_TMP_DIR full (a private 12 MiB tmpfs; run as root) while the worker
# spills messages over its 8 MiB in-memory limit:
#   - a 10 MiB message while a filler file leaves too little room: the write
#     fails with a line naming the directory and the errno, the command is
#     retried (temporary), not finished; no event of the folder is committed,
#     no spill file is left behind; lattice_worker_tmp_full_total counts it;
#   - once the filler is removed: the command succeeds, the 10 MiB message's
#     object and event are the server's bytes (sha256), each message once;
#   - a 14 MiB message, larger than the whole tmpfs, can never be spilled: it
#     is skipped and reported (status "skipped"/"skipped_ids", a log line
#     naming the directory and its size), the folder goes on past it.
# Per run: topics, consumer group, worker id, tenant, account, folder; a
# private Postgres (lib/private_pg.sh) with this tree's migrations.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
[ "$(id -u)" = 0 ] || { echo "test_worker_tmp_full: mounting a tmpfs needs root" >&2; exit 1; }

TENANT=t$RUN ACCOUNT=tmpfull-$RUN FOLDER=tmpfull-$RUN
CMD_TOPIC=tmpfull-cmd-$RUN RAW_TOPIC=tmpfull-raw-$RUN CKPT_TOPIC=tmpfull-ckpt-$RUN STATUS_TOPIC=tmpfull-status-$RUN
WORK=$(mktemp -d)
TMP=$WORK/tmp
WPID= MOUNTED=
cleanup() {
  lt_stop "$WPID"
  [ -n "$MOUNTED" ] && umount "$TMP" 2>/dev/null
  lt_pg_private_down
  lt_imap_delete "$FOLDER"
  rm -rf "$WORK"
}
trap cleanup EXIT

lt_pg_private_up
mkdir -p "$TMP"
mount -t tmpfs -o size=12m tmpfs "$TMP"
MOUNTED=1
s3() { # s3 PATH: signed GET from MinIO
  curl -sf --aws-sigv4 "aws:amz:${LATTICE_S3_REGION:-us-east-1}:s3" \
    --user "$LATTICE_S3_ACCESS_KEY_ID:$LATTICE_S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "$LATTICE_S3_ENDPOINT/$LATTICE_S3_BUCKET$1"
}

for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CKPT_TOPIC" "$STATUS_TOPIC"; do "$REPO/deploy/local/stack" topic "$t" 1 >/dev/null; done
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" big --size $((10 << 20)) --name fits
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" big --size $((14 << 20)) --name never
python3 "$HERE/lib/edge_corpus.py" "$WORK/c" plain
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append-files "$FOLDER" "$WORK/c/plain-00.eml" "$WORK/c/fits.eml" \
  "$WORK/c/never.eml" "$WORK/c/plain-01.eml" >"$WORK/uids"
FITS_UID=$(awk '/fits.eml/ {print $1}' "$WORK/uids")
NEVER_UID=$(awk '/never.eml/ {print $1}' "$WORK/uids")
V=$(python3 "$HERE/lib/imap_tool.py" uidvalidity "$FOLDER")
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"

# the tmpfs with about 3 MiB free: the 10 MiB message cannot be spilled now
dd if=/dev/zero of="$TMP/filler" bs=1M count=9 status=none

PORT=$(lt_free_port)
URL=http://127.0.0.1:$PORT
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
LATTICE_WORKER_CONCURRENCY=1 LATTICE_WORKER_RETRY_BASE_MS=500 LATTICE_WORKER_RETRY_MAX_MS=2000 \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_METRICS_PORT=$PORT LATTICE_METRICS_BIND=127.0.0.1 \
LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$TMP \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"
check "the start warns that LATTICE_TMP_DIR is smaller than LATTICE_MAX_MESSAGE_BYTES" \
  grep -q "LATTICE_TMP_DIR $TMP holds [0-9]* bytes in all, less than LATTICE_MAX_MESSAGE_BYTES" "$WORK/worker.log"

CID=cmd-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
# two failed attempts: the command is retried, not given up
end=$((SECONDS + 120))
until [ "$(grep -c "command failed temporarily" "$WORK/worker.log" || true)" -ge 2 ]; do
  [ $SECONDS -lt $end ] || break; sleep 0.2
done
check "the failure names the directory and the errno" \
  grep -q "LATTICE_TMP_DIR $TMP is full: write $TMP/lattice-test-$RUN-msg-[A-Za-z0-9]*: No space left on device" "$WORK/worker.log"
check "the command is retried (temporary), at least twice" \
  [ "$(grep -c "command failed temporarily .*LATTICE_TMP_DIR $TMP is full.*retrying in" "$WORK/worker.log" || true)" -ge 2 ]
final=$(lt_statuses "$STATUS_TOPIC" "$CID" | python3 -c '
import json, sys
print(sum(1 for l in sys.stdin if l.strip() and json.loads(l).get("result") != "running"))')
check "no final status while the directory is full ($final)" [ "$final" = 0 ]
scrape full
check "lattice_worker_tmp_full_total counts the refused writes ($(metric full 'lattice_worker_tmp_full_total{provider="imap"}'))" \
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)' "$(metric full 'lattice_worker_tmp_full_total{provider="imap"}')"
n=$(kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed -f '%o\n' 2>/dev/null | grep -c . || true)
check "no event of the failed batch committed ($n)" [ "$n" = 0 ]
check "no spill file left in the directory ($(ls "$TMP" | tr '\n' ' '))" [ "$(ls "$TMP")" = filler ]

# room again: the command completes, the message too large for the tmpfs skipped and reported
rm -f "$TMP/filler"
s=$(lt_wait_status --final "$STATUS_TOPIC" "$CID" "$WORK/worker.log" || echo '{}')
check "the command succeeded once there was room ($(cut -c1-300 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
check "status reports 1 skipped message ($(jget "$s" skipped))" [ "$(jget "$s" skipped)" = 1 ]
check "status names the message larger than the tmpfs ($(jget "$s" skipped_ids))" \
  [ "$(jget "$s" skipped_ids)" = "$FOLDER;UIDVALIDITY=$V;UID=$NEVER_UID" ]
check "the log says why: larger than the whole file system of $TMP" \
  grep -q "message $FOLDER;UIDVALIDITY=$V;UID=$NEVER_UID skipped, reported in the command result: message larger than the whole file system of LATTICE_TMP_DIR $TMP" "$WORK/worker.log"
check "no spill file left once done ($(ls "$TMP" | tr '\n' ' '))" [ -z "$(ls "$TMP")" ]

python3 "$HERE/lib/mail_events.py" --topic "$RAW_TOPIC" >"$WORK/events.jsonl"
python3 "$HERE/lib/imap_tool.py" fetch-sha "$FOLDER" >"$WORK/server"
python3 - "$WORK" "$FITS_UID" "$NEVER_UID" <<'EOF' >"$WORK/verdicts"
import json, os, sys, urllib.parse
work, fits, never = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
server = {int(u): (int(n), h) for u, n, h in (l.split() for l in open(os.path.join(work, "server")))}
ev = [json.loads(l)["payload"] for l in open(os.path.join(work, "events.jsonl"))]
uids = sorted(int(p["provider_message_id"].rsplit(";UID=", 1)[1]) for p in ev)
def out(ok, what):
    print("%s\t%s" % ("ok" if ok else "FAIL", what))
want = sorted(u for u in server if u != never)
out(uids == want, "one event per message but the skipped one, none twice: %s (want %s)" % (uids, want))
for p in ev:
    u = int(p["provider_message_id"].rsplit(";UID=", 1)[1])
    out(server.get(u) == (p["raw_size_bytes"], p["raw_sha256"]),
        "UID %d: event size/sha256 = the server's" % u)
    if u == fits:
        bucket_uri = "s3://" + os.environ["LATTICE_S3_BUCKET"]
        print("obj\t%s\t%s" % (urllib.parse.quote(p["raw_object_uri"][len(bucket_uri):], safe="/-._~"), p["raw_sha256"]))
EOF
while IFS=$'\t' read -r verdict what; do
  case $verdict in
    ok) pass=$((pass+1)) ;;
    FAIL) fail=$((fail+1)); echo "FAILED: $what" >&2 ;;
  esac
done < <(grep -E '^(ok|FAIL)' "$WORK/verdicts")
read -r _ path sha < <(grep '^obj' "$WORK/verdicts" || echo "obj - -")
got=$(s3 "$path" | sha256sum | cut -d' ' -f1 || true)
check "the 10 MiB object in S3 is the server's bytes (sha256 $got)" [ "$got" = "$sha" ]

grep -E "LATTICE_TMP_DIR|skipped|command (failed|succeeded|started)" "$WORK/worker.log" | cut -c1-300 || true
[ "$fail" = 0 ] || { echo "--- worker log"; grep -v ' kafka ' "$WORK/worker.log" | tail -40; }
lt_summary test_worker_tmp_full
