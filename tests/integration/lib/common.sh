# Shared prologue and helpers of tests/integration/test_*.sh. Source it after
# `set -euo pipefail`:   . "$(dirname "$0")/lib/common.sh"
# It defines (and runs nothing against the stack):
#   pass, fail              the check counters (0)
#   RUN                     a per-run id: seconds + pid
#   BROKER                  $LATTICE_KAFKA_BOOTSTRAP_SERVERS (empty when unset)
#   LT_TF                   $LT_TEST_TIME_FACTOR (default 1): every hang guard waiting
#                           on a program of the build is multiplied by it
#                           (tests/valgrind/run-test sets 10: make test-valgrind)
#   lt_require VAR...       exit 1 with a clear message unless every VAR is set
#   lt_require_pipeline VAR...  lt_require Kafka, Postgres, S3 and the CA, and VARs
#   check WHAT CMD...       run CMD: count a pass, or a fail with "FAILED: WHAT"
#   lt_summary NAME         print "NAME: P passed, F failed"; fails if F > 0
#   psqlq SQL               one unaligned, tuples-only psql command on LATTICE_PG_DSN
#   jget JSON KEY           a top-level field of a JSON object (python3)
#   jgetq JSON KEY          the first "KEY": a number or a string without escapes, with
#                           grep (no python3 start: for many small reads); empty if none
#   lt_free_port            a free TCP port on 127.0.0.1
#   lt_stop PID...          SIGTERM and reap each non-empty PID; never fails (cleanup)
#   lt_imap_delete FOLDER...  delete IMAP folders (lib/imap_tool.py); never fails
#   lt_gmail_ctl METHOD PATH [JSON]
#                           the Gmail emulator's control API:
#                           $LATTICE_TEST_GMAIL_URL/_emulator PATH (CA $LATTICE_CA_FILE);
#                           the body to stdout, status 1 on an HTTP error; 120 s at
#                           most (a hang guard)
#   lt_wait_assigned LOG    wait up to 120 s × LT_TF (a hang guard: a loaded machine and a
#                           busy group coordinator can take long) for "assigned" in
#                           a worker log, then check it
#   lt_held LOG             the partitions a worker holds now: what its log says it was
#                           assigned, less what it says was revoked or lost
#   lt_wait_held LOG N SECONDS  until LOG's worker holds N partitions (status 1: not in time)
#   lt_secret_env TENANT NAME  the variable an account of TENANT may name for NAME:
#                           LTS_<tenant, letters and digits kept, others _XX>__NAME
#                           (lib/common/lt_secret.h)
#   lt_imap_account TENANT ACCOUNT USER PASSWORD_VAR FOLDER...
#                           insert an IMAP account of the stack's Dovecot into
#                           mail_accounts; the password by reference: exports
#                           $(lt_secret_env TENANT IMAP_PASSWORD) = $PASSWORD_VAR
#                           (call it before the worker starts) and names that
#   lt_imap_command TOPIC ID TENANT ACCOUNT KIND [JSON-EXTRA]
#                           put one IMAP sync command on TOPIC with kcat (key ACCOUNT)
#   lt_statuses TOPIC ID    every status event of command ID on TOPIC (maybe none)
#   lt_wait_status [--final] TOPIC ID LOG
#                           the last status event of ID (--final: not "running";
#                           without it a long command's progress event may be what
#                           comes back), polled for up to 300 s × LT_TF; none: LOG's tail
#                           to stderr, status 1
#   With URL (a metrics server, http://host:port) and WORK (a scratch dir) set:
#   code PATH               GET URL/PATH -> HTTP status; the body in WORK/body
#   scrape NAME             GET URL/metrics into WORK/NAME.prom
#   metric NAME 'name{labels}'  a sample's value in WORK/NAME.prom (0 when absent)
#   delta NAME1 NAME2 'name{labels}'  its change from scrape NAME1 to NAME2
#   is A B                  A and B are the same number
#   lt_wait_http PATH WHAT  wait up to 120 s × LT_TF (a hang guard) for URL/PATH to answer
#                           200, then check it ("WHAT")
#   lt_check_prom_type      check URL/metrics is Prometheus text format 0.0.4
# Per-test state (tenant, account, topics, WORK, cleanup trap) stays in the test.
LT_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pass=0 fail=0
RUN=$(date +%s)$$
BROKER=${LATTICE_KAFKA_BOOTSTRAP_SERVERS:-}
LT_TF=${LT_TEST_TIME_FACTOR:-1}

lt_require() {
  local v
  for v in "$@"; do
    [ -n "${!v:-}" ] || { echo "$v not set: run under make test (eval \"\$(deploy/local/stack env)\")" >&2; exit 1; }
  done
}

lt_require_pipeline() { # what a worker or the parser needs from the stack, and more
  lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD \
    LATTICE_S3_ENDPOINT LATTICE_S3_BUCKET LATTICE_S3_ACCESS_KEY_ID LATTICE_S3_SECRET_ACCESS_KEY \
    LATTICE_CA_FILE "$@"
}

check() { # check "what" cond...
  local what=$1; shift
  if "$@"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: $what" >&2; fi
}

lt_summary() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" = 0 ]
}

psqlq() { PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }

jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"; }

jgetq() {
  local v
  v=$(grep -o "\"$2\":\(\"[^\"]*\"\|[0-9-]*\)" <<<"$1" | head -1 | cut -d: -f2-)
  v=${v#\"}; echo "${v%\"}"
}

lt_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

lt_stop() {
  local p
  for p in "$@"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
}

lt_imap_delete() {
  local f
  for f in "$@"; do python3 "$LT_LIB/imap_tool.py" delete "$f" >/dev/null 2>&1 || true; done
}

lt_gmail_ctl() {
  curl -fsS --max-time 120 --cacert "$LATTICE_CA_FILE" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "$LATTICE_TEST_GMAIL_URL/_emulator$2"
}

lt_held() {
  awk '/ assigned [0-9]+ partition/ { for (i = 1; i < NF; i++) if ($i == "assigned") n += $(i + 1) }
       /(revoked|lost) [0-9]+ partition/ { for (i = 1; i < NF; i++) if ($i == "revoked" || $i == "lost") n -= $(i + 1) }
       END { print n + 0 }' "$1"
}

lt_wait_held() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do [ "$(lt_held "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}

lt_wait_assigned() {
  local end=$((SECONDS + 120 * LT_TF))
  while [ $SECONDS -lt $end ]; do grep -q "assigned" "$1" && break; sleep 0.2; done
  check "worker got its assignment" grep -q "assigned" "$1"
}

lt_secret_env() {
  python3 -c 'import sys; print("LTS_" + "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else "_%02X" % b for b in sys.argv[1].encode()) + "__" + sys.argv[2])' "$1" "$2"
}

lt_imap_account() {
  local config var
  var=$(lt_secret_env "$1" IMAP_PASSWORD)
  export "$var=${!4}"
  config=$(python3 -c 'import json,os,sys; print(json.dumps({"host": os.environ["LATTICE_TEST_IMAP_HOST"], "port": int(os.environ["LATTICE_TEST_IMAP_PORT"]), "username": sys.argv[1], "password_env": sys.argv[2], "folders": sys.argv[3:]}, ensure_ascii=False).replace("'"'"'", "'"''"'"))' \
    "$3" "$var" "${@:5}")
  psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$1', '$2', 'imap', '$config'::jsonb)" >/dev/null
}

lt_imap_command() {
  printf '%s\t{"schema":"lattice.mail.sync.cmd.v1","command_id":"%s","tenant_id":"%s","account_id":"%s","provider":"imap","kind":"%s"%s,"requested_at":"2026-11-25T12:00:00Z","requested_by":"test"}\n' \
    "$4" "$2" "$3" "$4" "$5" "${6:-}" | kcat -P -b "$BROKER" -t "$1" -K $'\t' 2>/dev/null
}

lt_statuses() {
  kcat -C -b "$BROKER" -t "$1" -o beginning -e -q -f '%s\n' 2>/dev/null | grep -F "\"command_id\":\"$2\"" || true
}

lt_wait_status() {
  local final=0 s end=$((SECONDS + 300 * LT_TF))
  [ "$1" = --final ] && { final=1; shift; }
  while [ $SECONDS -lt $end ]; do
    if [ $final = 1 ]; then
      s=$(lt_statuses "$1" "$2" | grep -v '"result":"running"' | tail -1 || true)
    else
      s=$(lt_statuses "$1" "$2" | tail -1)
    fi
    [ -n "$s" ] && { echo "$s"; return 0; }
    sleep 0.2
  done
  echo "no status for $2" >&2; tail -30 "$3" >&2; return 1
}

code() { curl -s -o "$WORK/body" -w '%{http_code}' "$URL$1" || true; }
scrape() { curl -sf "$URL/metrics" >"$WORK/$1.prom"; }
metric() { awk -v k="$2" 'index($0, k" ") == 1 { print $2; f=1 } END { if (!f) print 0 }' "$WORK/$1.prom"; }
delta() { python3 -c 'import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 6))' "$(metric "$1" "$3")" "$(metric "$2" "$3")"; }
is() { [ "$(python3 -c 'import sys; print(float(sys.argv[1]) == float(sys.argv[2]))' "$1" "$2")" = True ]; }

lt_wait_http() {
  local end=$((SECONDS + 120 * LT_TF))
  while [ $SECONDS -lt $end ] && [ "$(code "$1")" != 200 ]; do sleep 0.1; done
  check "$2" [ "$(code "$1")" = 200 ]
}

lt_check_prom_type() {
  check "content type 0.0.4" bash -c "curl -sI '$URL/metrics' | grep -qi '^content-type: text/plain; version=0.0.4'"
}
