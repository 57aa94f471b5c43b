#!/usr/bin/env bash
# Gmail mailbox changes (docs/gmail.md, "Mailbox changes"): lattice-worker
# against the emulator, with every change read back from its own
# lattice.mail.change.v1 topic under read_committed and decoded against
# schemas/mail.change.v1.avsc (lib/gmail_tool.py changes):
#   first sync (labels after each raw event, known set), a label added and
#   removed, archived (the INBOX label removed: a labels change, not a
#   delete), trash and untrash (labels), delete (deleted, also of a message
#   no longer in the label), a message added and deleted in one window (no
#   event at all), history expiry (reset, the listing, the deletion in the
#   gap found, a known message changed in the gap gets labels and no second
#   raw event), a batch failing half-way through a history page (its
#   committed batches not sent again), and an account that opted out (no
#   change, no known set).
# Every change event id and every raw event id is unique.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_SCHEMA_REGISTRY_URL LATTICE_TEST_GMAIL_URL
REPO=$(cd "$HERE/../.." && pwd)
TENANT=tgc$RUN
ACCOUNT=gmail-chg-$RUN
ACCOUNT_OFF=gmail-chg-off-$RUN
GUSER=gc$RUN@example.com
GUSER_OFF=gcoff$RUN@example.com
CMD_TOPIC=test.gchg.cmd.$RUN
RAW_TOPIC=test.gchg.raw.$RUN
CHG_TOPIC=test.gchg.change.$RUN
STATUS_TOPIC=test.gchg.status.$RUN
WORK=$(mktemp -d)
WPID=
cleanup() {
  lt_stop "$WPID"
  lt_gmail_ctl DELETE "/faults?user=$GUSER" >/dev/null 2>&1 || true
  lt_gmail_ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  lt_gmail_ctl DELETE "/users/$GUSER_OFF" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
tool() { python3 "$HERE/lib/gmail_tool.py" "$@"; }

curl -fsS --max-time 10 --cacert "$LATTICE_CA_FILE" "$LATTICE_TEST_GMAIL_URL/healthz" | grep -q '"modify"' ||
  { echo "the stack's Gmail emulator predates mailbox changes (no \"modify\" feature): restart the stack" >&2; exit 1; }

for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CHG_TOPIC" "$STATUS_TOPIC"; do
  "$REPO/deploy/local/stack" topic "$t" 1 >/dev/null
done

# 6 INBOX messages an hour apart (oldest first: M[0..5]); the opted-out user 3
lt_gmail_ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":6,\"size\":1500,\"start\":1709251200,\"interval_s\":3600,\"labelIds\":[\"INBOX\"],\"seed\":5}}" >/dev/null
lt_gmail_ctl POST /users "{\"email\":\"$GUSER_OFF\",\"refresh_token\":\"rt2-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":3,\"size\":1500,\"labelIds\":[\"INBOX\"],\"seed\":6}}" >/dev/null
ids() { # ids USER: message ids, oldest first
  lt_gmail_ctl GET "/users/$1/messages" | python3 -c 'import json,sys; print(" ".join(m["id"] for m in reversed(json.load(sys.stdin)["messages"])))'
}
read -r -a M <<<"$(ids "$GUSER")"
read -r -a MOFF <<<"$(ids "$GUSER_OFF")"
check "6 + 3 messages in the mailboxes" [ "${#M[@]}:${#MOFF[@]}" = 6:3 ]
new_message() { # new_message USER -> its id
  lt_gmail_ctl POST "/users/$1/messages/generate" '{"count":1,"size":1200,"labelIds":["INBOX"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"][0])'
}
relabel() { lt_gmail_ctl POST "/users/$1/messages/$2/labels" "$3" >/dev/null; }

CS_VAR=$(lt_secret_env "$TENANT" CLIENT_SECRET) RT_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN)
RT2_VAR=$(lt_secret_env "$TENANT" REFRESH_TOKEN2)
export "$CS_VAR=cs-$RUN" "$RT_VAR=rt-$RUN" "$RT2_VAR=rt2-$RUN"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES
  ('$TENANT', '$ACCOUNT', 'gmail', '{\"user\":\"$GUSER\",\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT_VAR\"}'::jsonb),
  ('$TENANT', '$ACCOUNT_OFF', 'gmail', '{\"user\":\"$GUSER_OFF\",\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$CS_VAR\",\"refresh_token_env\":\"$RT2_VAR\",\"track_changes\":false}'::jsonb)" >/dev/null

# batches of 2: changes and messages of one history page span several batches
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_TOPIC_CHANGES=$CHG_TOPIC LATTICE_WORKER_BATCH_MESSAGES=2 \
LATTICE_WORKER_RETRY_WINDOW_S=1 LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_GMAIL_MAX_RETRIES=1 LATTICE_GMAIL_RETRY_BASE_MS=10 \
LATTICE_WORKER_GROUP_ID=test-gchg-$RUN LATTICE_WORKER_ID=test-gchg-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
LATTICE_GMAIL_API_URL=$LATTICE_TEST_GMAIL_URL LATTICE_GMAIL_TOKEN_URL=$LATTICE_TEST_GMAIL_URL/token \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

run() { # run ACCOUNT: an incremental command -> its final status
  local id="gchg-$RUN-$(date +%s%N)"
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"gmail","kind":"incremental","requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$1" "$id" "$TENANT" "$1" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
  lt_wait_status --final "$STATUS_TOPIC" "$id" "$WORK/worker.log"
}
# The committed change events so far, decoded (read_committed), and questions on them.
changes() { tool changes "$CHG_TOPIC" >"$WORK/changes.json"; }
q() { # q EXPR [ARGS...]: a Python expression over ev (the change events), a (the args)
  python3 - "$WORK/changes.json" "$@" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
a = sys.argv[3:]
def of(mid, kind=None):
    return [e for e in ev if e["payload"]["provider_message_id"] == mid and (kind is None or e["payload"]["kind"] == kind)]
def labels(mid):  # the last labels change of mid, sorted and joined
    l = of(mid, "labels")
    return ",".join(sorted(l[-1]["payload"]["labels"])) if l else "none"
print(eval(sys.argv[2]))
EOF
}
known() { psqlq "SELECT count(*) FROM mail_known_messages WHERE tenant_id = '$TENANT' AND account_id = '$1'"; }
ok() { [ "$(jgetq "$1" result)" = succeeded ]; }

# 1. first sync: 6 raw events, each followed by its labels; 6 known
s=$(run "$ACCOUNT"); changes
check "first sync: succeeded with 6 messages ($s)" [ "$(jgetq "$s" messages)" = 6 ]
check "first sync: 6 labels changes, [INBOX] each" [ "$(q 'sum(labels(m) == "INBOX" and len(of(m)) == 1 for m in a)' "${M[@]}")" = 6 ]
check "first sync: nothing else" [ "$(q 'len(ev)')" = 6 ]
check "first sync: 6 known messages" [ "$(known "$ACCOUNT")" = 6 ]
check "changes carry the envelope (account key, scope, gmail, position)" \
  [ "$(q 'all(e["_key"] == a[0] and e["source"]["mailbox"] == "label:INBOX" and e["source"]["provider"] == "gmail" and e["payload"]["position"] > 0 and e["tenant_id"] == a[1] for e in ev)' "$ACCOUNT" "$TENANT")" = True ]

# 2. a label added
relabel "$GUSER" "${M[0]}" '{"add":["STARRED"]}'
s=$(run "$ACCOUNT"); changes
check "label added: no message ($s)" [ "$(jgetq "$s" messages)" = 0 ]
check "label added: M0 labels INBOX,STARRED" [ "$(q 'labels(a[0])' "${M[0]}")" = INBOX,STARRED ]
check "label added: one event more" [ "$(q 'len(ev)')" = 7 ]

# 3. the label removed again, and M1 archived (INBOX removed), in one window
relabel "$GUSER" "${M[0]}" '{"remove":["STARRED"]}'
relabel "$GUSER" "${M[1]}" '{"remove":["INBOX"]}'
s=$(run "$ACCOUNT"); changes
check "label removed: succeeded ($s)" ok "$s"
check "label removed: M0 labels INBOX again" [ "$(q 'labels(a[0])' "${M[0]}")" = INBOX ]
check "archived: M1 labels empty, not deleted" [ "$(q 'str(of(a[0])[-1]["payload"]["labels"]) + str(len(of(a[0], "deleted")))' "${M[1]}")" = "[]0" ]
check "archived: M1 still known" [ "$(known "$ACCOUNT")" = 6 ]

# 4. trash and untrash: labels changes (the message still exists)
lt_gmail_ctl POST "/users/$GUSER/messages/${M[2]}/trash" >/dev/null
s=$(run "$ACCOUNT"); changes
check "trash: M2 labels INBOX,TRASH ($s)" [ "$(q 'labels(a[0])' "${M[2]}")" = INBOX,TRASH ]
lt_gmail_ctl POST "/users/$GUSER/messages/${M[2]}/untrash" >/dev/null
s=$(run "$ACCOUNT"); changes
check "untrash: M2 labels INBOX ($s)" [ "$(q 'labels(a[0])' "${M[2]}")" = INBOX ]
check "trash/untrash: no deleted change" [ "$(q 'len([e for e in ev if e["payload"]["kind"] == "deleted"])')" = 0 ]

# 5. deleted (purged): M3, and M1 which is no longer in INBOX but was announced
lt_gmail_ctl DELETE "/users/$GUSER/messages/${M[3]}" >/dev/null
lt_gmail_ctl DELETE "/users/$GUSER/messages/${M[1]}" >/dev/null
s=$(run "$ACCOUNT"); changes
check "delete: M3 deleted once ($s)" [ "$(q 'len(of(a[0], "deleted"))' "${M[3]}")" = 1 ]
check "delete: archived M1 deleted once" [ "$(q 'len(of(a[0], "deleted"))' "${M[1]}")" = 1 ]
check "delete: 4 known messages" [ "$(known "$ACCOUNT")" = 4 ]
check "delete: the deleted change is the message's last event" [ "$(q 'of(a[0])[-1]["payload"]["kind"]' "${M[3]}")" = deleted ]

# 6. added, labelled and deleted in one window: no event at all; next to a new M6
GHOST=$(new_message "$GUSER")
relabel "$GUSER" "$GHOST" '{"add":["STARRED"]}'
lt_gmail_ctl DELETE "/users/$GUSER/messages/$GHOST" >/dev/null
M6=$(new_message "$GUSER")
s=$(run "$ACCOUNT"); changes
check "add+delete: only M6 ingested ($s)" [ "$(jgetq "$s" messages)" = 1 ]
check "add+delete: no change of the deleted message" [ "$(q 'len(of(a[0]))' "$GHOST")" = 0 ]
tool events "$RAW_TOPIC" >"$WORK/raw.json"
check "add+delete: no raw event of it" [ "$(grep -c "\"$GHOST\"" "$WORK/raw.json" || true)" = 0 ]
check "add+delete: M6 labels INBOX" [ "$(q 'labels(a[0])' "$M6")" = INBOX ]
check "add+delete: 5 known messages" [ "$(known "$ACCOUNT")" = 5 ]

# 6b. a batch that fails half-way through a history page: what its committed
# batches carried is not sent again, the rest follows on the next run
relabel "$GUSER" "${M[0]}" '{"add":["Label_a"]}'
N1=$(new_message "$GUSER")
relabel "$GUSER" "${M[2]}" '{"add":["Label_b"]}'
N2=$(new_message "$GUSER")
relabel "$GUSER" "$M6" '{"add":["Label_c"]}'
lt_gmail_ctl POST /faults "{\"user\":\"$GUSER\",\"match\":\"messages/$N2\",\"status\":503,\"count\":1000}" >/dev/null
s=$(run "$ACCOUNT"); changes
check "fault: the command failed ($s)" [ "$(jgetq "$s" result)" = failed ]
check "fault: M0's labels and N1 (the first batch) are committed" \
  [ "$(q 'labels(a[0]) + " " + labels(a[1])' "${M[0]}" "$N1")" = "INBOX,Label_a INBOX" ]
check "fault: nothing of the failed batch (M2, N2)" [ "$(q 'labels(a[0]) + " " + labels(a[1])' "${M[2]}" "$N2")" = "INBOX none" ]
lt_gmail_ctl DELETE "/faults?user=$GUSER" >/dev/null
s=$(run "$ACCOUNT"); changes
check "fault cleared: N2 ingested ($s)" [ "$(jgetq "$s" messages)" = 1 ]
check "fault cleared: M2, N2, M6 follow" \
  [ "$(q '" ".join(labels(m) for m in a)' "${M[2]}" "$N2" "$M6")" = "INBOX,Label_b INBOX INBOX,Label_c" ]
check "fault cleared: M0's labels change not sent again" [ "$(q 'sum("Label_a" in e["payload"]["labels"] for e in of(a[0]))' "${M[0]}")" = 1 ]
check "fault cleared: 7 known messages" [ "$(known "$ACCOUNT")" = 7 ]

# 7. history expired: in the gap M4 deleted, M5 archived, M0 starred, M7 new
lt_gmail_ctl DELETE "/users/$GUSER/messages/${M[4]}" >/dev/null
relabel "$GUSER" "${M[5]}" '{"remove":["INBOX"]}'
relabel "$GUSER" "${M[0]}" '{"add":["STARRED"]}'
relabel "$GUSER" "${M[0]}" '{"remove":["Label_a"]}'
M7=$(new_message "$GUSER")
lt_gmail_ctl POST "/users/$GUSER/history/expire" '{}' >/dev/null
before=$(q 'len(ev)')
s=$(run "$ACCOUNT"); changes
check "expired: succeeded, only the new M7 fetched raw ($s)" [ "$(jgetq "$s" messages)" = 1 ]
check "expired: one reset, history_expired" [ "$(q '",".join(e["payload"]["reset_reason"] for e in ev if e["payload"]["kind"] == "reset")')" = history_expired ]
check "expired: the reset precedes the resync's changes" \
  [ "$(q '[e["payload"]["kind"] for e in ev[int(a[0]):]][0]' "$before")" = reset ]
check "expired: M4 deleted in the gap found" [ "$(q 'len(of(a[0], "deleted"))' "${M[4]}")" = 1 ]
check "expired: M5 (archived in the gap) gets its labels, not deleted" \
  [ "$(q 'labels(a[0]) + str(len(of(a[0], "deleted")))' "${M[5]}")" = "0" ]
check "expired: M0 (starred in the gap) labels INBOX,STARRED" [ "$(q 'labels(a[0])' "${M[0]}")" = INBOX,STARRED ]
check "expired: M7 labels INBOX" [ "$(q 'labels(a[0])' "$M7")" = INBOX ]
check "expired: 7 known (M0 M2 M5 M6 N1 N2 M7)" [ "$(known "$ACCOUNT")" = 7 ]
check "the worker said what it found" grep -q "known message(s) not listed: 1 deleted, 1 still in the mailbox" "$WORK/worker.log"
# and the incremental path goes on after it
relabel "$GUSER" "$M7" '{"add":["IMPORTANT"]}'
s=$(run "$ACCOUNT"); changes
check "after the resync: M7 labels IMPORTANT,INBOX ($s)" [ "$(q 'labels(a[0])' "$M7")" = IMPORTANT,INBOX ]

# 8. opted out: messages yes, changes and known set no
s=$(run "$ACCOUNT_OFF")
check "opt-out: first sync of 3 ($s)" [ "$(jgetq "$s" messages)" = 3 ]
relabel "$GUSER_OFF" "${MOFF[0]}" '{"add":["STARRED"]}'
lt_gmail_ctl DELETE "/users/$GUSER_OFF/messages/${MOFF[1]}" >/dev/null
s=$(run "$ACCOUNT_OFF"); changes
check "opt-out: incremental succeeded ($s)" ok "$s"
check "opt-out: no change event of the account" [ "$(q 'len([e for e in ev if e["_key"] == a[0]])' "$ACCOUNT_OFF")" = 0 ]
check "opt-out: no known messages" [ "$(known "$ACCOUNT_OFF")" = 0 ]

# no duplicates: every change event id and every raw event id once
check "change event ids unique ($(q 'len(ev)') events)" [ "$(q 'len(ev) - len({e["event_id"] for e in ev})')" = 0 ]
tool events "$RAW_TOPIC" >"$WORK/raw.json"
check "raw event ids unique ($(wc -l <"$WORK/raw.json") events: 6 + M6 + N1 + N2 + M7 + 3)" \
  [ "$(python3 -c 'import json,sys; e=[json.loads(l)["event_id"] for l in open(sys.argv[1])]; print(len(e), len(set(e)))' "$WORK/raw.json")" = "13 13" ]
lt_summary test_worker_gmail_changes
