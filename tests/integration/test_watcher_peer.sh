#!/usr/bin/env bash
# lattice-watcher against a scripted IMAPS peer (lib/imap_peer.py, a
# certificate of the stack's CA), for what Dovecot does not do on demand:
#   - a server without IDLE: the watcher polls with NOOP every
#     LATTICE_WATCHER_POLL_INTERVAL_S, never sends IDLE, and an EXISTS in a
#     NOOP answer becomes a command (sent once the connect command in flight
#     went stale: the no-pile-up rule);
#   - a server that never answers DONE: the connection is dropped after
#     LATTICE_WATCHER_RESPONSE_TIMEOUT_S and made again (backoff), and the
#     reconnect sends a command;
#   - a certificate that does not verify (a peer name the CA did not sign for
#     the address): no login is ever sent.
# Kafka and Postgres are the stack's (own schema, topic, group).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_CA_FILE
STACK="$ROOT/deploy/local/stack"
SCHEMA=watchp_$RUN
TEN=watchp-$RUN
WORK=$(mktemp -d)
PEER= WPID=
cleanup() {
  lt_stop "$WPID" "$PEER"
  PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -f "${CERT:-/nonexistent}" "${KEY:-/nonexistent}"
  rm -rf "$WORK"
}
trap cleanup EXIT
PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA"
DSN="$LATTICE_PG_DSN options='-csearch_path=$SCHEMA'"
psqlq() { PGPASSWORD=$LATTICE_PG_PASSWORD psql "$DSN" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
LATTICE_PG_DSN=$DSN "$BUILD/tools/lattice-migrate" --dir "$ROOT/migrations" >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }
{ read -r CERT; read -r KEY; } < <("$STACK" cert "watch-peer-$RUN")
PW=$(lt_secret_env "$TEN" IMAP_PASSWORD)
export "$PW=peer-secret-$RUN"

cmds() { kcat -C -b "$BROKER" -t "$1" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -cx "$2" || true; }
wait_for() { # seconds cmd...: hang guard
  local end=$((SECONDS + $1 * LT_TF)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  "$@"
}
ge() { [ "$("${@:2}")" -ge "$1" ]; }

run() { # mode account extra-env...: a peer, an account on it, a watcher
  # (the group session timeout times LT_TF: a watcher under valgrind on a loaded
  # machine missed its heartbeats for 6 s, lost its partition and connected again)
  local mode=$1 acct=$2; shift 2
  PORT=$(lt_free_port)
  TOPIC=$("$STACK" topic "lattice.test.watchp.$mode.$RUN" 1)
  : >"$WORK/$mode.tr"
  python3 "$HERE/lib/imap_peer.py" --port "$PORT" --cert "$CERT" --key "$KEY" --mode "$mode" \
    --transcript "$WORK/$mode.tr" 2>"$WORK/$mode.peer.err" &
  PEER=$!
  psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TEN', '$acct', 'imap',
    '{\"host\":\"127.0.0.1\",\"port\":$PORT,\"username\":\"u@example.test\",\"password_env\":\"$PW\"}')" >/dev/null
  env LATTICE_PG_DSN="$DSN" LATTICE_TOPIC_COMMANDS="$TOPIC" LATTICE_WATCHER_GROUP_ID="watchp-$mode-$RUN" \
    LATTICE_TLS_CA_FILE="$LATTICE_CA_FILE" LATTICE_LOG_FORMAT=text LATTICE_WATCHER_RELOAD_S=1 \
    LATTICE_WATCHER_SESSION_TIMEOUT_MS=$((6000 * LT_TF)) "$@" \
    "$BUILD/watcher/lattice-watcher" >"$WORK/$mode.log" 2>&1 &
  WPID=$!
}
finish() { # mode: stop the watcher (exit 0 on SIGTERM, no sanitizer report) and the peer
  local rc=0
  kill -TERM "$WPID" 2>/dev/null; wait "$WPID" || rc=$?
  check "$1: the watcher exits 0 on SIGTERM ($rc)" [ "$rc" = 0 ]
  check "$1: no sanitizer report" bash -c "! grep -q 'Sanitizer' '$WORK/$1.log'"
  lt_stop "$PEER"; WPID= PEER=
  psqlq "DELETE FROM mail_accounts" >/dev/null
  psqlq "DELETE FROM mail_sync_issued" >/dev/null
}

# ---- 0. usage and a refused configuration
check "--help: exit 0, lists the watcher's settings" bash -c "'$BUILD/watcher/lattice-watcher' --help | grep -q LATTICE_WATCHER_DEBOUNCE_MS"
rc=0; LATTICE_PG_DSN=$DSN LATTICE_WATCHER_GROUP_ID=g-$RUN LATTICE_WORKER_GROUP_ID=g-$RUN LATTICE_LOG_FORMAT=text \
  "$BUILD/watcher/lattice-watcher" >"$WORK/samegroup.log" 2>&1 || rc=$?
check "the workers' group id is refused (exit $rc)" [ "$rc" = 1 ]
check "the workers' group id is refused: said why" grep -q "must not be the workers' group" "$WORK/samegroup.log"

# ---- 1. no IDLE: NOOP polling
run noidle poll-1 LATTICE_WATCHER_POLL_INTERVAL_S=1 LATTICE_WATCHER_STALE_AFTER_S=2
check "no IDLE: a command on connect" wait_for 120 ge 1 cmds "$TOPIC" poll-1
check "no IDLE: NOOPs sent" wait_for 60 grep -q "^C1 W[0-9]* NOOP" "$WORK/noidle.tr"
check "no IDLE: the EXISTS of the third NOOP became a second command" wait_for 60 ge 2 cmds "$TOPIC" poll-1
check "no IDLE: IDLE never sent" bash -c "! grep -q ' IDLE' '$WORK/noidle.tr'"
check "no IDLE: logged in with AUTHENTICATE PLAIN, mailbox examined" \
  grep -q "^C1 W[0-9]* EXAMINE \"INBOX\"" "$WORK/noidle.tr"
check "no IDLE: the password is in no log" bash -c "! grep -q 'peer-secret-$RUN' '$WORK/noidle.log' '$WORK/noidle.tr'"
check "no IDLE: one connection" [ "$(grep -c connected "$WORK/noidle.tr")" = 1 ]
finish noidle

# ---- 2. DONE never answered: dropped after the response timeout, reconnected
# (the timeout times LT_TF: under valgrind the first TLS handshake alone can take 2 s)
RT=$((2 * LT_TF))
run deaf deaf-1 LATTICE_WATCHER_IDLE_REISSUE_S=1 LATTICE_WATCHER_RESPONSE_TIMEOUT_S=$RT LATTICE_WATCHER_STALE_AFTER_S=1
check "deaf: IDLE, then DONE" wait_for 60 grep -q "^C1 DONE" "$WORK/deaf.tr"
check "deaf: a second connection after the timeout" wait_for 60 grep -q "^C2 connected" "$WORK/deaf.tr"
check "deaf: the drop is logged with its reason" grep -q "no answer within $RT s" "$WORK/deaf.log"
check "deaf: the reconnect sent a command (2 in all)" wait_for 60 ge 2 cmds "$TOPIC" deaf-1
finish deaf

# ---- 3. a certificate that does not name the address: never logs in
PORT=$(lt_free_port)
TOPIC=$("$STACK" topic "lattice.test.watchp.badcert.$RUN" 1)
: >"$WORK/badcert.tr"
# the stack's certificate names 127.0.0.1 and localhost, served on 127.0.0.2
python3 "$HERE/lib/imap_peer.py" --bind 127.0.0.2 --port "$PORT" --cert "$CERT" --key "$KEY" \
  --mode deaf --transcript "$WORK/badcert.tr" 2>"$WORK/badcert.peer.err" &
PEER=$!
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TEN', 'badcert-1', 'imap',
  '{\"host\":\"127.0.0.2\",\"port\":$PORT,\"username\":\"u@example.test\",\"password_env\":\"$PW\"}')" >/dev/null
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$TOPIC LATTICE_WATCHER_GROUP_ID=watchp-bad-$RUN \
  LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_WATCHER_SESSION_TIMEOUT_MS=$((6000 * LT_TF)) \
  "$BUILD/watcher/lattice-watcher" >"$WORK/badcert.log" 2>&1 &
WPID=$!
check "bad certificate: verification failure logged" wait_for 120 grep -q "certificate verification of 127.0.0.2 failed" "$WORK/badcert.log"
check "bad certificate: classified FINAL (long backoff)" grep -q "lost (final)" "$WORK/badcert.log"
check "bad certificate: the peer got a TCP connection" grep -q "^C1 connected" "$WORK/badcert.tr"
check "bad certificate: no command line reached the peer" bash -c "! grep -q '^C[0-9]* W' '$WORK/badcert.tr'"
check "bad certificate: no Kafka command" [ "$(cmds "$TOPIC" badcert-1)" = 0 ]
finish badcert

[ "$fail" = 0 ] || for f in "$WORK"/*.log "$WORK"/*.tr; do echo "--- $f"; tail -20 "$f"; done >&2
lt_summary test_watcher_peer
