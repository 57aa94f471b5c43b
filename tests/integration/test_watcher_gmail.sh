#!/usr/bin/env bash
# lattice-watcher with Gmail push against the real stack (Kafka group,
# Postgres, a real lattice-worker) and a Gmail emulator of this tree (started
# here on a free port, Pub/Sub push to the watcher's endpoint), in a
# throwaway Postgres schema with topics and a tenant of its own:
#   - a Gmail account the watcher owns gets users.watch on the topic;
#   - a new message in the emulator -> a Pub/Sub push -> exactly one
#     incremental command for the account, and the worker commits the
#     message's mail.raw.v1 event;
#   - a push with a wrong or no shared token is refused (403 / 401) and
#     leads to no command;
#   - a push for an address the watcher does not watch is answered 204 and
#     counted as foreign, with no command;
#   - disabling the account releases it with users.stop;
#   - the Gmail metrics.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_STACK_DIR
STACK="$ROOT/deploy/local/stack"
SCHEMA=wgm_$RUN
TEN=wgm-$RUN
A=g-$RUN
EMAIL="wgm-$RUN@example.test"
GTOPIC="projects/lattice-test/topics/wgm-$RUN"
SUB="projects/lattice-test/subscriptions/wgm-$RUN"
SUB_BAD="projects/lattice-test/subscriptions/wgm-bad-$RUN"
SECRET="push-secret-$RUN-$RANDOM"
WORK=$(mktemp -d)
WPID= APID= EPID=
cleanup() {
  lt_stop "$APID" "$WPID" "$EPID"
  PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- a Gmail emulator of this tree (users.watch / users.stop, Pub/Sub push)
"$ROOT/tests/gmail-emulator/run" --port 0 --cert "$LATTICE_STACK_DIR/gmail/server.pem" \
  --key "$LATTICE_STACK_DIR/gmail/server.key" --state-dir "$WORK/emulator" --quota-units-per-s 0 \
  >"$WORK/emulator.log" 2>&1 &
EPID=$!
for _ in $(seq 1 1200); do [ -s "$WORK/emulator/gmail-emulator.ready" ] && break; sleep 0.05; done # 60 s: a hang guard
[ -s "$WORK/emulator/gmail-emulator.ready" ] || { cat "$WORK/emulator.log" >&2; exit 1; }
LATTICE_TEST_GMAIL_URL=$(cat "$WORK/emulator/gmail-emulator.ready")
export LATTICE_TEST_GMAIL_URL LATTICE_GMAIL_API_URL=$LATTICE_TEST_GMAIL_URL LATTICE_GMAIL_TOKEN_URL=$LATTICE_TEST_GMAIL_URL/token

# ---- a private schema, topics, the mailbox and its account
PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA"
DSN="$LATTICE_PG_DSN options='-csearch_path=$SCHEMA'"
psqlq() { PGPASSWORD=$LATTICE_PG_PASSWORD psql "$DSN" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
LATTICE_PG_DSN=$DSN "$BUILD/tools/lattice-migrate" --dir "$ROOT/migrations" >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }
CMD=$("$STACK" topic "lattice.test.wgm.cmd.$RUN" 3)
RAW=$("$STACK" topic "lattice.test.wgm.raw.$RUN")
STATUS=$("$STACK" topic "lattice.test.wgm.status.$RUN")

lt_gmail_ctl POST /users "{\"email\":\"$EMAIL\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\"}" >/dev/null
GCS=$(lt_secret_env "$TEN" GMAIL_CLIENT_SECRET) GRT=$(lt_secret_env "$TEN" GMAIL_REFRESH_TOKEN)
export "$GCS=cs-$RUN" "$GRT=rt-$RUN"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES
  ('$TEN', '$A', 'gmail', '{\"user\":\"$EMAIL\",\"label_ids\":[\"INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$GCS\",\"refresh_token_env\":\"$GRT\"}')" >/dev/null

cmds() { kcat -C -b "$BROKER" -t "$CMD" -o beginning -e -q -f '%k\t%s\n' 2>/dev/null | awk -F'\t' -v k="$1" '$1 == k' > "$WORK/cmds.$1"; wc -l < "$WORK/cmds.$1"; }
cmd_ids() { cmds "$1" >/dev/null; sed 's/.*"command_id":"\([^"]*\)".*/\1/' "$WORK/cmds.$1"; }
wait_cmds() { # account n: wait (hang guard 120 s) until at least n commands
  local end=$((SECONDS + 120 * LT_TF))
  while [ $SECONDS -lt $end ] && [ "$(cmds "$1")" -lt "$2" ]; do sleep 0.2; done
  [ "$(cmds "$1")" -ge "$2" ]
}
wait_done() { local id; for id in $(cmd_ids "$1"); do lt_wait_status --final "$STATUS" "$id" "$WORK/worker.log" >/dev/null || return 1; done; }
# quiet: the account's commands all ran and none came within several debounce
# windows and in-flight checks after (an absence can only be shown by waiting)
settle() { wait_done "$1"; local n; n=$(cmds "$1"); sleep 2; wait_done "$1"; [ "$(cmds "$1")" = "$n" ]; }
raw_count() { kcat -C -b "$BROKER" -t "$RAW" -X isolation.level=read_committed -o beginning -e -q -f '%k\n' 2>/dev/null | grep -cx "$1" || true; }
watches() { lt_gmail_ctl GET /pubsub/watches; }
watched() { watches | python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in json.load(sys.stdin).get("watches", {}) else 1)' "$EMAIL"; }
wait_for() { # what cmd...: retry (hang guard 60 s)
  local what=$1 end=$((SECONDS + 60 * LT_TF)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
deliveries() { # subscription: the statuses of its push attempts, one a line
  lt_gmail_ctl GET "/pubsub/deliveries?subscription=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1")" |
    python3 -c 'import json,sys; [print(d.get("status")) for d in json.load(sys.stdin).get("deliveries", [])]'
}
add_message() { # subject
  python3 - "$1" "$EMAIL" <<'EOF' | lt_gmail_ctl POST "/users/$EMAIL/messages" "$(cat)" >/dev/null
import base64, json, sys
subject, email = sys.argv[1:3]
raw = ("From: a@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@wgm.test>\r\n\r\nhello\r\n"
       % (email, subject, subject)).encode()
print(json.dumps({"raw": base64.b64encode(raw).decode(), "labelIds": ["INBOX"]}))
EOF
}

# ---- the worker that executes the commands
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$CMD LATTICE_TOPIC_RAW=$RAW LATTICE_TOPIC_STATUS=$STATUS \
LATTICE_WORKER_GROUP_ID=wgm-w-$RUN LATTICE_WORKER_ID=wgm-w-$RUN LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_GMAIL_RETRY_BASE_MS=20 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

# ---- the watcher, with its push endpoint (shared token) and the topic
PA=$(lt_free_port) PP=$(lt_free_port)
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$CMD LATTICE_WATCHER_GROUP_ID=wgm-$RUN \
LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_LOG_LEVEL=debug \
LATTICE_METRICS_PORT=$PA LATTICE_METRICS_BIND=127.0.0.1 LATTICE_WATCHER_RELOAD_S=1 \
LATTICE_WATCHER_SESSION_TIMEOUT_MS=6000 LATTICE_WATCHER_GMAIL_TOPIC=$GTOPIC \
LATTICE_WATCHER_GMAIL_PUSH_BIND=127.0.0.1 LATTICE_WATCHER_GMAIL_PUSH_PORT=$PP \
LATTICE_WATCHER_GMAIL_PUSH_TOKEN=$SECRET \
  "$BUILD/watcher/lattice-watcher" >"$WORK/wa.log" 2>&1 &
APID=$!
URL=http://127.0.0.1:$PA
lt_wait_http /readyz "watcher ready (assigned, accounts read)"

# ---- 1. users.watch on the topic for the owned account
check "users.watch observed on the emulator" wait_for watch watched
topic_ok() { watches | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("watches", {}).get(sys.argv[1], {}).get("topicName") == sys.argv[2] else 1)' "$EMAIL" "$GTOPIC"; }
check "the watch names the topic" topic_ok
# the subscriptions: a good one, one with a wrong token, one without any
for s in "$SUB ?token=$SECRET" "$SUB_BAD ?token=wrong-$RUN" "$SUB-none "; do
  set -- $s
  lt_gmail_ctl POST /pubsub/subscriptions "{\"name\":\"$1\",\"topic\":\"$GTOPIC\",\"push_endpoint\":\"http://127.0.0.1:$PP/gmail/push${2:-}\"}" >/dev/null
done
check "settled before the new message" settle "$A"
n0=$(cmds "$A")

# ---- 2. a new message -> push -> exactly one incremental command, ingested
add_message "wgm-$RUN-1"
check "new message: a command from the push" wait_cmds "$A" $((n0 + 1))
check "new message: settled" settle "$A"
check "new message: exactly one command ($(( $(cmds "$A") - n0 )))" [ "$(cmds "$A")" = $((n0 + 1)) ]
check "the command is incremental, provider gmail" bash -c "tail -1 '$WORK/cmds.$A' | grep -q '\"kind\":\"incremental\"' && tail -1 '$WORK/cmds.$A' | grep -q '\"provider\":\"gmail\"'"
check "requested_by watcher" grep -q '"requested_by":"watcher"' "$WORK/cmds.$A"
end=$((SECONDS + 120 * LT_TF))
while [ $SECONDS -lt $end ] && [ "$(raw_count "$A")" -lt 1 ]; do sleep 0.5; done
check "the message's raw event is committed ($(raw_count "$A"))" [ "$(raw_count "$A")" -ge 1 ]
has_status() { deliveries "$1" | grep -x "$2" >/dev/null; }
check "the good subscription's push answered 204" has_status "$SUB" 204

# ---- 3. bad tokens: refused, no command
check "wrong token: 403" wait_for bad has_status "$SUB_BAD" 403
check "no token: 401" wait_for none has_status "$SUB-none" 401
DATA=$(printf '{"emailAddress":"%s","historyId":999999}' "$EMAIL" | base64 -w0)
BODY="{\"message\":{\"data\":\"$DATA\",\"messageId\":\"m-$RUN\"},\"subscription\":\"$SUB\"}"
c=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$BODY" "http://127.0.0.1:$PP/gmail/push?token=nope" || true)
check "a forged push with a bad token: 403 ($c)" [ "$c" = 403 ]
c=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$BODY" "http://127.0.0.1:$PP/gmail/push" || true)
check "a forged push without a token: 401 ($c)" [ "$c" = 401 ]
check "refused pushes: settled" settle "$A"
check "refused pushes: no command ($(( $(cmds "$A") - n0 - 1 )))" [ "$(cmds "$A")" = $((n0 + 1)) ]

# ---- 4. an address this replica does not watch: 204, counted, no command
FDATA=$(printf '{"emailAddress":"nobody-%s@example.test","historyId":5}' "$RUN" | base64 -w0)
c=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data-binary "{\"message\":{\"data\":\"$FDATA\",\"messageId\":\"f-$RUN\"},\"subscription\":\"$SUB\"}" \
  "http://127.0.0.1:$PP/gmail/push?token=$SECRET" || true)
check "foreign address: 204 ($c)" [ "$c" = 204 ]
scrape s1 || true
check "metrics: one watch active" is "$(metric s1 lattice_watcher_gmail_watches)" 1
check "metrics: users.watch calls counted" [ "$(metric s1 'lattice_watcher_gmail_watch_calls_total{result="ok"}')" != 0 ]
check "metrics: pushes accepted" [ "$(metric s1 'lattice_watcher_gmail_pushes_total{result="accepted"}')" != 0 ]
check "metrics: pushes refused 403" [ "$(metric s1 'lattice_watcher_gmail_pushes_total{result="forbidden"}')" != 0 ]
check "metrics: pushes refused 401" [ "$(metric s1 'lattice_watcher_gmail_pushes_total{result="unauthorized"}')" != 0 ]
check "metrics: foreign push counted" is "$(metric s1 'lattice_watcher_gmail_pushes_total{result="foreign"}')" 1
check "metrics: commands from push" [ "$(metric s1 lattice_watcher_gmail_push_commands_total)" != 0 ]
check "no token in the log" bash -c "! grep -q '$SECRET' '$WORK/wa.log'"

# ---- 5. disabled: users.stop
psqlq "UPDATE mail_accounts SET enabled = false WHERE tenant_id = '$TEN' AND account_id = '$A'" >/dev/null
unwatched() { ! watched; }
check "disabled: users.stop observed" wait_for stop unwatched
check "disabled: released in the log" wait_for rel grep -q "released" "$WORK/wa.log"
no_watch() { scrape s2 && is "$(metric s2 lattice_watcher_gmail_watches)" 0; }
# (the gauge follows the release on the loop's next pass)
check "metrics: no watch active" wait_for gauge no_watch

lt_summary test_watcher_gmail
