#!/usr/bin/env bash
# Mailbox changes of IMAP folders, end to end through lattice-worker against
# the real stack (Dovecot with CONDSTORE/QRESYNC, Kafka, Postgres, MinIO):
# every step asserts the change events committed on this run's change topic
# (decoded with schemas/mail.change.v1.avsc, read_committed) and that none is
# there twice.
#   QRESYNC account, folders A and B:
#     1. first sync: every message + its initial flags; watermark with
#        highestmodseq
#     2. flag change, expunge, move A -> B: flags, deleted, deleted + a new
#        message in B (with its flags)
#     3. nothing changed: no event
#     4. HIGHESTMODSEQ backwards (the stored one above the server's, as after
#        a server restore): full compare finds a flag change and an expunge,
#        repeats nothing
#     5. UIDVALIDITY change of B: its known messages deleted, a reset, then
#        the full listing
#   fallback account (imap_disable_caps QRESYNC, CONDSTORE; FLAGS listing on
#   every sync): expunge and flag change found by UID SEARCH ALL + FETCH FLAGS
#   opted-out account: no change event, no known message; turned on later:
#     the folder's messages are adopted (their flags published)
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD
TENANT=tch$RUN
FA="chg-$RUN-A"
FB="chg-$RUN-B"
FC="chg-$RUN-C"
FD="chg-$RUN-D"
WORK=$(mktemp -d)
WPID=
imap() { python3 "$HERE/lib/imap_tool.py" "$@"; }
cleanup() {
  lt_stop "$WPID"
  for f in "$FA" "$FB" "$FC" "$FD"; do lt_imap_delete "$f"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for f in "$FA" "$FB" "$FC" "$FD"; do imap create "$f"; done
imap append "$FA" --count 5 --seed a
imap append "$FB" --count 2 --seed b
imap append "$FC" --count 4 --seed c
imap append "$FD" --count 3 --seed d
lt_imap_account "$TENANT" qr "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FA" "$FB"
lt_imap_account "$TENANT" fb "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FC"
lt_imap_account "$TENANT" off "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FD"
psqlq "UPDATE mail_accounts SET config_json = config_json || '{\"imap_disable_caps\": [\"QRESYNC\", \"CONDSTORE\"]}'::jsonb WHERE tenant_id = '$TENANT' AND account_id = 'fb'" >/dev/null
psqlq "UPDATE mail_accounts SET config_json = config_json || '{\"track_changes\": false}'::jsonb WHERE tenant_id = '$TENANT' AND account_id = 'off'" >/dev/null

CMD_TOPIC=$("$ROOT/deploy/local/stack" topic "test.chg.cmd.$RUN")
RAW_TOPIC=$("$ROOT/deploy/local/stack" topic "test.chg.raw.$RUN")
CHG_TOPIC=$("$ROOT/deploy/local/stack" topic "test.chg.change.$RUN")
STATUS_TOPIC=$("$ROOT/deploy/local/stack" topic "test.chg.status.$RUN")
: >"$WORK/worker.log"
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHANGES=$CHG_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-chg-$RUN \
LATTICE_WORKER_ID=test-chg-$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=50 \
LATTICE_WORKER_BATCH_MESSAGES=3 LATTICE_IMAP_FLAGS_SCAN_INTERVAL_S=0 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

run_sync() { # sync ACCOUNT: one incremental command, waits for its final status
  local c="cmd-$1-$(date +%s%N)" s
  lt_imap_command "$CMD_TOPIC" "$c" "$TENANT" "$1" incremental
  s=$(lt_wait_status --final "$STATUS_TOPIC" "$c" "$WORK/worker.log")
  check "$1: sync succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
}
# every committed change event of this run as "account kind folder uid flags position"
changes() {
  python3 "$HERE/lib/mail_events.py" --topic "$CHG_TOPIC" --schema mail.change.v1 | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    p = e["payload"]
    pm = p["provider_message_id"] or ""
    folder = e["source"]["mailbox"] or ""
    uid = pm.rsplit("UID=", 1)[1] if "UID=" in pm else "-"
    v = pm.split(";UIDVALIDITY=")[1].split(";")[0] if pm else "-"
    print(e["source"]["account_id"], p["kind"], folder, v, uid, ",".join(p["flags"]) or "-",
          "pos" if p["position"] is not None else "nopos", p["reset_reason"] or "-", e["event_id"])
'
}
snap() { changes >"$WORK/chg.$1"; } # all change events after step $1
new_since() { # the change events of step $2 (not in step $1's snapshot), without ids
  comm -13 <(sort "$WORK/chg.$1") <(sort "$WORK/chg.$2") | awk '{$NF=""; print}' | sed 's/ $//' | sort
}
raw_count() { # committed raw events of account $1
  kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -e -q -X isolation.level=read_committed \
    -f '%k\n' 2>/dev/null | grep -cx "$1" || true
}
wmk() { psqlq "SELECT watermark_json->>'$3' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$1' AND scope='$2'"; }
known() { psqlq "SELECT count(*) FROM mail_known_messages WHERE tenant_id='$TENANT' AND account_id='$1'"; }
no_dups() { check "after $1: no change event twice" [ "$(awk '{print $NF}' "$WORK/chg.$1" | sort | uniq -d | wc -l)" = 0 ]; }
VA=$(imap uidvalidity "$FA")
VB=$(imap uidvalidity "$FB")
VC=$(imap uidvalidity "$FC")

# --- 1. first sync: messages and their initial flags ---------------------------
: >"$WORK/chg.0"
run_sync qr
snap 1
check "1: 7 raw events" [ "$(raw_count qr)" = 7 ]
check "1: 7 initial flags changes, empty sets ($(new_since 0 1 | tr '\n' '|'))" \
  [ "$(new_since 0 1 | grep -c '^qr flags .* - pos -$')" = 7 ]
check "1: A's watermark has a highestmodseq" [ -n "$(wmk qr "$FA" highestmodseq)" ]
check "1: 7 known messages" [ "$(known qr)" = 7 ]
no_dups 1

# --- 2. flag change, expunge, move ----------------------------------------------
imap store "$FA" 2 '\Seen' '\Flagged'
imap expunge "$FA" 3
imap move "$FA" 4 "$FB"
run_sync qr
snap 2
want2=$(printf '%s\n' "qr deleted $FA $VA 3 - pos -" "qr deleted $FA $VA 4 - pos -" \
  "qr flags $FA $VA 2 \\Flagged,\\Seen pos -" "qr flags $FB $VB 3 - pos -" | sort)
check "2: flags, deleted, moved ($(new_since 1 2 | tr '\n' '|'))" [ "$(new_since 1 2)" = "$want2" ]
check "2: the moved message is new in B" [ "$(raw_count qr)" = 8 ]
check "2: QRESYNC used" grep -q "folder $FA: changes by qresync" "$WORK/worker.log"
check "2: 6 known messages" [ "$(known qr)" = 6 ]
no_dups 2

# --- 3. nothing changed: nothing published ---------------------------------------
run_sync qr
snap 3
check "3: no change event" [ -z "$(new_since 2 3)" ]
check "3: no raw event" [ "$(raw_count qr)" = 8 ]

# --- 4. HIGHESTMODSEQ backwards ---------------------------------------------------
psqlq "UPDATE mail_watermarks SET watermark_json = watermark_json || '{\"highestmodseq\": \"9000000000\"}'::jsonb WHERE tenant_id='$TENANT' AND account_id='qr' AND scope='$FA'" >/dev/null
imap store "$FA" 1 '\Answered'
imap expunge "$FA" 5
run_sync qr
snap 4
want4=$(printf '%s\n' "qr deleted $FA $VA 5 - pos -" "qr flags $FA $VA 1 \\Answered pos -" | sort)
check "4: full compare found exactly the changes ($(new_since 3 4 | tr '\n' '|'))" \
  [ "$(new_since 3 4)" = "$want4" ]
check "4: the regression was logged" grep -q "HIGHESTMODSEQ went backwards" "$WORK/worker.log"
check "4: watermark back at the server's highestmodseq ($(wmk qr "$FA" highestmodseq))" \
  [ "$(wmk qr "$FA" highestmodseq)" -lt 9000000000 ]
no_dups 4

# --- 5. UIDVALIDITY change of B: deleted, reset, then the full listing ---------
imap delete "$FB"
imap create "$FB"
imap append "$FB" --count 2 --seed b2
VB2=$(imap uidvalidity "$FB")
check "5: UIDVALIDITY changed" [ "$VB" != "$VB2" ]
run_sync qr
snap 5
want5=$(printf '%s\n' "qr deleted $FB $VB 1 - nopos -" "qr deleted $FB $VB 2 - nopos -" \
  "qr deleted $FB $VB 3 - nopos -" "qr reset $FB - - - nopos uidvalidity_changed" \
  "qr flags $FB $VB2 1 - pos -" "qr flags $FB $VB2 2 - pos -" | sort)
check "5: the old UIDVALIDITY's messages deleted, a reset, then the listing ($(new_since 4 5 | tr '\n' '|'))" [ "$(new_since 4 5)" = "$want5" ]
check "5: 2 new raw events" [ "$(raw_count qr)" = 10 ]
check "5: B's known set is the new listing" \
  [ "$(psqlq "SELECT string_agg(provider_message_id, ' ' ORDER BY provider_message_id) FROM mail_known_messages WHERE tenant_id='$TENANT' AND account_id='qr' AND scope='$FB'")" = "$FB;UIDVALIDITY=$VB2;UID=1 $FB;UIDVALIDITY=$VB2;UID=2" ]
no_dups 5

# --- fallback: QRESYNC and CONDSTORE masked ---------------------------------------
run_sync fb
snap 6
check "fb: 4 initial flags changes without position" \
  [ "$(new_since 5 6 | grep -c "^fb flags $FC $VC [0-9] - nopos -\$")" = 4 ]
check "fb: no highestmodseq stored" [ -z "$(wmk fb "$FC" highestmodseq)" ]
check "fb: flags_scanned_at stored" [ -n "$(wmk fb "$FC" flags_scanned_at)" ]
imap expunge "$FC" 2
imap store "$FC" 3 '$Important' '\Seen'
run_sync fb
snap 7
want7=$(printf '%s\n' "fb deleted $FC $VC 2 - nopos -" "fb flags $FC $VC 3 \$Important,\\Seen nopos -" | sort)
check "fb: expunge and flags found ($(new_since 6 7 | tr '\n' '|'))" [ "$(new_since 6 7)" = "$want7" ]
check "fb: fallback used" grep -q "folder $FC: changes by fallback (4 known, flags listed)" "$WORK/worker.log"
run_sync fb
snap 8
check "fb: nothing twice" [ -z "$(new_since 7 8)" ]
no_dups 8

# --- opt-out, then on: adopted ----------------------------------------------------
run_sync off
snap 9
check "off: 3 raw events" [ "$(raw_count off)" = 3 ]
check "off: no change event" [ -z "$(new_since 8 9)" ]
check "off: no known message" [ "$(known off)" = 0 ]
check "off: no change-tracking keys in the watermark" \
  [ -z "$(wmk off "$FD" highestmodseq)$(wmk off "$FD" flags_scanned_at)" ]
psqlq "UPDATE mail_accounts SET config_json = config_json - 'track_changes' WHERE tenant_id = '$TENANT' AND account_id = 'off'" >/dev/null
imap store "$FD" 2 '\Flagged'
run_sync off
snap 10
VD=$(imap uidvalidity "$FD")
want10=$(printf '%s\n' "off flags $FD $VD 1 - pos -" "off flags $FD $VD 2 \\Flagged pos -" \
  "off flags $FD $VD 3 - pos -" | sort)
check "on again: the folder adopted, flags published ($(new_since 9 10 | tr '\n' '|'))" \
  [ "$(new_since 9 10)" = "$want10" ]
check "on again: 3 known messages" [ "$(known off)" = 3 ]
check "on again: no raw event again" [ "$(raw_count off)" = 3 ]
no_dups 10

[ "$fail" = 0 ] || { echo "--- worker log"; tail -60 "$WORK/worker.log"; }
lt_summary test_worker_imap_changes
