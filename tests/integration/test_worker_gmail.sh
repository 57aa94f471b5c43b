#!/usr/bin/env bash
# End to end: lattice-worker's Gmail connector against the stack's Gmail API
# emulator (and Kafka, Postgres, MinIO, Apicurio). Per run: its own command,
# raw and status topics, consumer group, worker id, tenant/accounts and
# emulator users. Scenarios: first run, nothing new, new mail (+ a label
# added), token expiry mid-sync (401 -> refresh), a 429 storm, 5xx,
# truncated and malformed bodies (retried), persistent malformed JSON (clear
# temporary error), history expiry (404 -> resync without re-publishing), a
# ~16 MB message, attachments, backfill by date (and one slowed down by a
# per-user latency: "running" status events with progress_done/total),
# invalid_grant (account marked needs_reauth, no retry loop). Events decoded
# against the schema.
# Isolation on the shared emulator: every fault, config override and counter
# this test uses belongs to its own users / OAuth client (fault "user",
# /users/{email}/config, token_requests_by_client); nothing global is changed.
# An emulator started from older code (no such features, see /healthz) is not
# used: the test then runs a private one from this tree and says so.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_GMAIL_API_URL LATTICE_GMAIL_TOKEN_URL LATTICE_TEST_GMAIL_URL
TENANT=tg$RUN
ACCOUNT=gmail-$RUN
ACCOUNT2=gmail-revoked-$RUN
ACCOUNT3=gmail-refs-$RUN
USER1=u$RUN@example.com
USER2=r$RUN@example.com
USER3=c$RUN@example.com
CMD_TOPIC=test.gmail.cmd.$RUN
RAW_TOPIC=test.gmail.raw.$RUN
STATUS_TOPIC=test.gmail.status.$RUN
WORK=$(mktemp -d)
WPID=
T0=$(date +%s)
tool() { python3 "$HERE/lib/gmail_tool.py" "$@"; }
SPID=
EPID=
cleanup() {
  lt_stop "$WPID"
  # shellcheck disable=SC2086
  [ -n "$SPID" ] && kill $SPID 2>/dev/null || true
  # only this test's faults and users (deleting a user drops its faults and overrides)
  lt_gmail_ctl DELETE "/faults?user=$USER1" >/dev/null 2>&1 || true
  lt_gmail_ctl DELETE "/users/$USER1" >/dev/null 2>&1 || true
  lt_gmail_ctl DELETE "/users/$USER2" >/dev/null 2>&1 || true
  lt_gmail_ctl DELETE "/users/$USER3" >/dev/null 2>&1 || true
  lt_stop "$EPID"
  rm -rf "$WORK"
}
trap cleanup EXIT
# (python3 starts slowly on a loaded machine: jgetq, plain tools, for the many small reads)
fault() { # fault JSON-FIELDS: a fault for USER1 only ("user"), never for other tests' users
  lt_gmail_ctl POST /faults "{\"user\":\"$USER1\",$1}" >/dev/null
}

# The stack's emulator must know per-user faults and overrides; one started from
# older code is left alone and a private one from this tree is used instead.
if ! curl -fsS --max-time 10 --cacert "$LATTICE_CA_FILE" "$LATTICE_TEST_GMAIL_URL/healthz" |
     grep -q '"fault_user"'; then
  [ -n "${LATTICE_STACK_DIR:-}" ] && [ -s "$LATTICE_STACK_DIR/gmail/server.pem" ] ||
    { echo "the stack's Gmail emulator predates per-user faults and no certificate for a private one" >&2; exit 1; }
  "$REPO/tests/gmail-emulator/run" --port 0 --cert "$LATTICE_STACK_DIR/gmail/server.pem" \
    --key "$LATTICE_STACK_DIR/gmail/server.key" --state-dir "$WORK/emulator" >"$WORK/emulator.log" 2>&1 &
  EPID=$!
  for _ in $(seq 1 1200); do [ -s "$WORK/emulator/gmail-emulator.ready" ] && break; sleep 0.05; done # 60 s: a hang guard
  [ -s "$WORK/emulator/gmail-emulator.ready" ] || { cat "$WORK/emulator.log" >&2; exit 1; }
  LATTICE_TEST_GMAIL_URL=$(cat "$WORK/emulator/gmail-emulator.ready")
  export LATTICE_GMAIL_API_URL=$LATTICE_TEST_GMAIL_URL LATTICE_GMAIL_TOKEN_URL=$LATTICE_TEST_GMAIL_URL/token
  echo "NOTE: the stack's Gmail emulator runs older code (no per-user faults): using a private one at $LATTICE_TEST_GMAIL_URL"
fi

"$REPO/deploy/local/stack" topic "$CMD_TOPIC" 1 >/dev/null & p1=$!
"$REPO/deploy/local/stack" topic "$RAW_TOPIC" 3 >/dev/null & p2=$!
"$REPO/deploy/local/stack" topic "$STATUS_TOPIC" 1 >/dev/null
wait $p1 $p2

# Mailboxes: 30 INBOX messages with one attachment each, an hour apart from
# 2024-03-01T00:00Z (24 on March 1st UTC, 6 on March 2nd), and 2 in SENT only.
START=1709251200
lt_gmail_ctl POST /users "{\"email\":\"$USER1\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":30,\"size\":6000,\"attachments\":1,\"attachment_size\":3000,\"start\":$START,\"interval_s\":3600,\"labelIds\":[\"INBOX\",\"UNREAD\"],\"thread_size\":3,\"seed\":$((RUN % 1000))}}" >/dev/null
SENT=$(lt_gmail_ctl POST "/users/$USER1/messages/generate" '{"count":2,"size":2000,"labelIds":["SENT"],"seed":7}')
SENT_ID=$(grep -o '"ids":\["[0-9a-f]*' <<<"$SENT" | cut -d'"' -f4)
lt_gmail_ctl POST /users "{\"email\":\"$USER2\",\"refresh_token\":\"rt2-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",\"generate\":{\"count\":3}}" >/dev/null
lt_gmail_ctl POST /users "{\"email\":\"$USER3\",\"refresh_token\":\"rt3-$RUN\",\"client_id\":\"cid3-$RUN\",\"client_secret\":\"cs3-$RUN\",\"generate\":{\"count\":2}}" >/dev/null

# Secrets in the tenant's namespace: variables LTS_<tenant>__*, files under
# LATTICE_SECRETS_DIR/<tenant>/ (ACCOUNT3: the client id by reference too).
mkdir -p "$WORK/secrets/$TENANT/gmail"
printf 'rt2-%s\n' "$RUN" >"$WORK/secrets/$TENANT/rt2"
printf 'cs3-%s\n' "$RUN" >"$WORK/secrets/$TENANT/gmail/cs3"
printf 'rt3-%s\n' "$RUN" >"$WORK/secrets/$TENANT/gmail/rt3"
GCS_VAR=$(lt_secret_env "$TENANT" GMAIL_CLIENT_SECRET) GRT_VAR=$(lt_secret_env "$TENANT" GMAIL_REFRESH_TOKEN)
GCID_VAR=$(lt_secret_env "$TENANT" GMAIL_CLIENT_ID)
export "$GCS_VAR=cs-$RUN" "$GRT_VAR=rt-$RUN" "$GCID_VAR=cid3-$RUN"
CONFIG="{\"user\":\"me\",\"label_ids\":[\"INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$GCS_VAR\",\"refresh_token_env\":\"$GRT_VAR\"}"
CONFIG2="{\"user\":\"$USER2\",\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$GCS_VAR\",\"refresh_token_file\":\"rt2\"}"
CONFIG3="{\"user\":\"$USER3\",\"client_id_env\":\"$GCID_VAR\",\"client_secret_file\":\"gmail/cs3\",\"refresh_token_file\":\"gmail/rt3\"}"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES
  ('$TENANT', '$ACCOUNT', 'gmail', '$CONFIG'::jsonb), ('$TENANT', '$ACCOUNT2', 'gmail', '$CONFIG2'::jsonb),
  ('$TENANT', '$ACCOUNT3', 'gmail', '$CONFIG3'::jsonb)" >/dev/null

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_STATUS=$STATUS_TOPIC \
LATTICE_WORKER_GROUP_ID=test-gmail-$RUN LATTICE_WORKER_ID=test-gmail-$RUN LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_WORKER_BATCH_MESSAGES=7 LATTICE_LOG_FORMAT=text \
LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_WORKER_RETRY_WINDOW_S=1 LATTICE_WORKER_CONCURRENCY=2 \
LATTICE_WORKER_PROGRESS_INTERVAL_S=1 LATTICE_SECRETS_DIR=$WORK/secrets \
LATTICE_GMAIL_RETRY_BASE_MS=20 LATTICE_GMAIL_MAX_RETRIES=6 LATTICE_GMAIL_MAX_INFLIGHT=6 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
# Status events, followed in the background (one kcat start costs ~1 s).
kcat -C -b "$BROKER" -t "$STATUS_TOPIC" -o beginning -u -q -f '%s\n' >"$WORK/status.log" 2>/dev/null &
SPID=$!
kcat -C -b "$BROKER" -t "$RAW_TOPIC" -o beginning -u -q -X isolation.level=read_committed \
  -f '%k %h\n' >"$WORK/raw.log" 2>/dev/null &
SPID="$SPID $!"
lt_wait_assigned "$WORK/worker.log"

command() { # command ACCOUNT KIND [json extra] -> prints the command id
  local id="cmd-$RUN-$2-$(date +%s%N)"
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"gmail","kind":"%s"%s,"requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$1" "$id" "$TENANT" "$1" "$2" "${3:-}" | kcat -P -b "$BROKER" -t "$CMD_TOPIC" -K $'\t' 2>/dev/null
  echo "$id"
}
wait_status() { # wait_status ID -> prints the final status JSON (up to 300 s: a hang guard)
  local end=$((SECONDS + 300 * LT_TF))
  while [ $SECONDS -lt $end ]; do
    local s
    s=$(grep -F "\"command_id\":\"$1\"" "$WORK/status.log" | grep -v '"result":"running"' | tail -1 || true)
    [ -n "$s" ] && { echo "$s"; return 0; }
    sleep 0.05
  done
  echo "no status for $1" >&2; tail -30 "$WORK/worker.log" >&2; return 1
}
# Committed events, from the background consumer: raw_keys N waits (up to 60 s) for N of them.
raw_keys() {
  local n=0
  for _ in $(seq 1 1200); do
    n=$(grep -c . "$WORK/raw.log" || true)
    [ "$n" -ge "${1:-0}" ] && break
    sleep 0.05
  done
  sleep 0.1; grep -c . "$WORK/raw.log" || true
}
raw_ids() { grep -o 'lattice.event_id=[0-9a-f-]*' "$WORK/raw.log" | sort; }
wm() { psqlq "SELECT watermark_json->>'historyId' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT' AND scope='label:INBOX'"; }
hid() { jgetq "$(lt_gmail_ctl GET "/users/$USER1")" historyId; }
counter() { jgetq "$(lt_gmail_ctl GET /counters)" "$1"; }
token_requests() { # this test's OAuth client only (the counters name it in other maps too)
  lt_gmail_ctl GET /counters |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token_requests_by_client"].get(sys.argv[1], 0))' "cid-$RUN"
}
run_ok() { # run_ok WHAT EXPECTED_MESSAGES [extra] -> checks success and the count
  local c s
  c=$(command "$ACCOUNT" "${4:-incremental}" "${3:-}"); s=$(wait_status "$c")
  check "$1: succeeded ($s)" [ "$(jgetq "$s" result)" = succeeded ]
  check "$1: $2 messages ($(jgetq "$s" messages))" [ "$(jgetq "$s" messages)" = "$2" ]
}

# 1. first run: profile historyId before the list, everything in INBOX, watermark set
H1=$(hid)
run_ok "first run" 30
check "watermark = the historyId before listing ($(wm) vs $H1)" [ "$(wm)" = "$H1" ]
check "30 committed events" [ "$(raw_keys 30)" = 30 ]
check "events unique" [ "$(raw_ids | uniq -d | wc -l)" = 0 ]
tool events "$RAW_TOPIC" >"$WORK/events.json"
python3 - "$WORK/events.json" "$USER1" "$TENANT" "$ACCOUNT" <<'EOF' || { fail=$((fail+1)); echo "FAILED: event contents" >&2; }
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
assert len(evs) == 30, len(evs)
for e in evs:
    p, s = e["payload"], e["source"]
    assert e["tenant_id"] == sys.argv[3] and s["account_id"] == sys.argv[4] and e["_key"] == sys.argv[4]
    assert s["provider"] == "gmail" and s["mailbox"] == "label:INBOX", s
    assert p["provider_thread_id"], p
    assert p["received_at"] >= 1709251200000 and p["received_at"] < 1709251200000 + 30 * 3600000, p
    assert p["raw_object_uri"].endswith("message.eml") and len(p["raw_sha256"]) == 64
    assert len(p["attachments_manifest"]) == 1 and p["attachments_manifest"][0]["size_bytes"] == 3000, p
    assert p["rfc822_message_id"].endswith("@emulator.invalid"), p
assert len({e["payload"]["provider_thread_id"] for e in evs}) == 10  # thread_size 3
EOF
pass=$((pass+1))

# 2. nothing new: nothing published, watermark moves to the current historyId; the
#    access token of the first run is still good: no token request (the worker's cache)
t0=$(token_requests)
run_ok "second run" 0
check "still 30 events" [ "$(raw_keys 30)" = 30 ]
check "second run: the cached access token, no token request ($t0 -> $(token_requests))" \
  [ "$(token_requests)" = "$t0" ]
check "second run: logged as a cached token" \
  grep -q "0 token refreshes, 1 cached token(s) used" "$WORK/worker.log"

# 3. new mail (+ a SENT message labelled INBOX, + a SENT-only one that must not come)
lt_gmail_ctl POST "/users/$USER1/messages/generate" '{"count":5,"size":3000,"seed":11}' >/dev/null
lt_gmail_ctl POST "/users/$USER1/messages/$SENT_ID/labels" '{"add":["INBOX"]}' >/dev/null
lt_gmail_ctl POST "/users/$USER1/messages/generate" '{"count":1,"size":3000,"labelIds":["SENT"],"seed":12}' >/dev/null
run_ok "new mail" 6
check "watermark = the mailbox historyId ($(wm) vs $(hid))" [ "$(wm)" = "$(hid)" ]

# 4. access token expired mid-sync (60 messages take > 1 s at the quota, and 200 ms more per call
#    from USER1's latency override: the token dies while it runs even when this script is slow
#    on a loaded machine): 401 -> refresh -> go on
lt_gmail_ctl POST "/users/$USER1/messages/generate" '{"count":60,"size":3000,"seed":13}' >/dev/null
lt_gmail_ctl POST "/users/$USER1/config" '{"latency_ms":200}' >/dev/null
c=$(command "$ACCOUNT" incremental)
for _ in $(seq 1 200); do grep -q "command started.*$c" "$WORK/worker.log" && break; sleep 0.05; done
sleep 0.4
# hold the next calls 400 ms at the emulator's door so several are in flight when the token dies:
# each gets a 401, one refresh must serve them all (not "rejected after 3 refreshes")
fault '"kind":"delay","delay_ms":400,"count":6,"match":"/messages/"'
lt_gmail_ctl POST /tokens/expire "{\"email\":\"$USER1\"}" >/dev/null
s=$(wait_status "$c")
lt_gmail_ctl POST "/users/$USER1/config" '{"latency_ms":null}' >/dev/null
check "token expired mid-sync: 60 messages ($s)" [ "$(jgetq "$s" messages)" = 60 ]
check "401 answered with a refresh" grep -q "access token rejected" "$WORK/worker.log"
check "several 401s in flight: still 6+ requests at once ($(grep -o '[0-9]* in flight at most' "$WORK/worker.log" | sort -n | tail -1))" \
  bash -c "grep -o '[0-9]* in flight at most' '$WORK/worker.log' | sort -n | tail -1 | grep -q '^6 '"

# 5. a 429 storm, 5xx, a truncated and a malformed body: retried, nothing lost
lt_gmail_ctl POST "/users/$USER1/messages/generate" '{"count":8,"size":3000,"seed":14}' >/dev/null
fault '"kind":"status","status":429,"count":12,"match":"/messages/"'
fault '"kind":"status","status":503,"count":3,"match":"/messages/"'
fault '"kind":"status","status":500,"count":1,"match":"/history"'
fault '"kind":"truncate","count":1,"match":"/messages/"'
fault '"kind":"malformed","count":1,"match":"/messages/"'
run_ok "429 storm, 5xx, truncated, malformed" 8
check "every injected fault was hit" [ "$(lt_gmail_ctl GET "/faults?user=$USER1")" = '{"faults":[]}' ]
check "events still unique" [ "$(raw_ids | uniq -d | wc -l)" = 0 ]
check "104 events" [ "$(raw_keys 104)" = 104 ]

# 6. persistent malformed JSON: a clear temporary error, no crash, worker goes on
fault '"kind":"malformed","count":1000,"match":"/history"'
c=$(command "$ACCOUNT" incremental); s=$(wait_status "$c")
lt_gmail_ctl DELETE "/faults?user=$USER1" >/dev/null
check "malformed: failed ($s)" [ "$(jgetq "$s" result)" = failed ]
check "malformed: error class temporary" [ "$(jgetq "$s" error_class)" = temporary ]
check "malformed: the error says so" bash -c "grep -q 'malformed JSON' <<<'$(jgetq "$s" error)'"
check "worker still running" kill -0 "$WPID"

# 7. history expired (404): resync; only the 2 new messages are published
lt_gmail_ctl POST "/users/$USER1/messages/generate" '{"count":2,"size":3000,"seed":15}' >/dev/null
lt_gmail_ctl POST "/users/$USER1/history/expire" '{}' >/dev/null
run_ok "history 404 resync" 2
check "resync logged" grep -q "full resync" "$WORK/worker.log"
check "106 events, all unique" [ "$(raw_keys 106)" = 106 ] && check "no duplicate" [ "$(raw_ids | uniq -d | wc -l)" = 0 ]
check "watermark after resync = the mailbox historyId" [ "$(wm)" = "$(hid)" ]

# 8. a large message (~16 MB with a 6 MB attachment)
lt_gmail_ctl POST "/users/$USER1/messages/generate" '{"count":1,"size":16000000,"attachments":1,"attachment_size":6000000,"seed":16}' >/dev/null
c=$(command "$ACCOUNT" incremental); s=$(wait_status "$c")
check "large message: 1 message ($s)" [ "$(jgetq "$s" messages)" = 1 ]
check "large message: >= 16 MB" [ "$(jgetq "$s" bytes)" -ge 16000000 ]

# 9. backfill by date: March 2nd 2024 (UTC) = the 6 last generated messages; same ids, watermark kept
W=$(wm)
run_ok "backfill 2024-03-02" 6 ',"backfill":{"start_date":"2024-03-02","end_date":"2024-03-02"}' backfill
check "backfill kept the watermark" [ "$(wm)" = "$W" ]
check "backfill duplicates carry identical ids (107 distinct)" [ "$(raw_ids | uniq | wc -l)" = 107 ]

# 9b. progress: a backfill of March 1st (24 messages) slowed down by 300 ms per call for
# USER1 only (a per-user override) runs ~3 s, and the worker reports progress every 1 s:
# "running" status events whose total is resultSizeEstimate (one page: exact)
lt_gmail_ctl POST "/users/$USER1/config" '{"latency_ms":300}' >/dev/null
c=$(command "$ACCOUNT" backfill ',"backfill":{"start_date":"2024-03-01","end_date":"2024-03-01"}')
s=$(wait_status "$c")
lt_gmail_ctl POST "/users/$USER1/config" '{"latency_ms":null}' >/dev/null
check "slow backfill: succeeded with 24 messages ($s)" [ "$(jgetq "$s" result)/$(jgetq "$s" messages)" = succeeded/24 ]
grep -F "\"command_id\":\"$c\"" "$WORK/status.log" | grep '"result":"running"' >"$WORK/running.log" || true
check "slow backfill: running status events ($(wc -l <"$WORK/running.log"))" [ -s "$WORK/running.log" ]
check "slow backfill: every running event has progress_total 24 and 0 <= progress_done <= 24" \
  awk -F'"progress_total":' '{ split($2, t, /[,}]/); if (t[1] != 24) bad = 1
       split($0, d, /"progress_done":/); split(d[2], v, /[,}]/); if (v[1] == "" || v[1] < 0 || v[1] > 24) bad = 1 }
       END { exit bad || NR == 0 }' "$WORK/running.log"
check "slow backfill: USER1's override removed again" \
  [ "$(lt_gmail_ctl GET "/users/$USER1/config" | grep -o '"overrides":{[^}]*}')" = '"overrides":{}' ]

# 9c. client_id_env, and secrets by file in subfolders of the tenant's directory
c=$(command "$ACCOUNT3" incremental); s=$(wait_status "$c")
check "client_id_env account: succeeded ($s)" [ "$(jgetq "$s" result)" = succeeded ]
check "client_id_env account: 2 messages" [ "$(jgetq "$s" messages)" = 2 ]

# 10. invalid_grant: marked needs_reauth, failed with class reauth, no retry loop
lt_gmail_ctl POST /tokens/revoke "{\"refresh_token\":\"rt2-$RUN\"}" >/dev/null
t0=$(token_requests)
c=$(command "$ACCOUNT2" incremental); s=$(wait_status "$c")
check "invalid_grant: failed ($s)" [ "$(jgetq "$s" result)" = failed ]
check "invalid_grant: class reauth" [ "$(jgetq "$s" error_class)" = reauth ]
check "invalid_grant: first attempt, not retried" [ "$(jgetq "$s" attempt)" = 1 ]
check "invalid_grant: one token request" [ "$(($(token_requests) - t0))" = 1 ]
check "account marked needs_reauth" [ "$(psqlq "SELECT status FROM mail_accounts WHERE tenant_id='$TENANT' AND account_id='$ACCOUNT2'")" = needs_reauth ]
c=$(command "$ACCOUNT2" incremental); s=$(wait_status "$c")
check "needs_reauth: the next command fails at once (reauth)" [ "$(jgetq "$s" error_class)" = reauth ]
check "needs_reauth: no token request" [ "$(($(token_requests) - t0))" = 1 ]

# events of the whole run decode against the schema
tool events "$RAW_TOPIC" >"$WORK/events.json"
check "every event decodes against mail.raw.v1.avsc" [ "$(wc -l <"$WORK/events.json")" = "$(raw_keys 139)" ]

kill -TERM "$WPID"; rc=0; wait "$WPID" || rc=$?; WPID=
check "worker exited 0 on SIGTERM" [ "$rc" = 0 ]
check "no secret or token in the log" bash -c "! grep -qE 'cs3?-$RUN|rt[23]?-$RUN|ya29' '$WORK/worker.log'"
[ "$fail" = 0 ] || { echo "--- worker log"; tail -60 "$WORK/worker.log"; }
lt_summary "test_worker_gmail (in $(( $(date +%s) - T0 )) s)"
