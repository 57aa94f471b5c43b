#!/usr/bin/env bash
# The Airflow DAGs of deploy/airflow/dags/ with real Airflow (the pinned venv of
# deploy/airflow/install, installed here when missing), a temporary AIRFLOW_HOME
# with a SQLite metadata DB, and the local stack's Kafka and Postgres:
#   (a) the DagBag imports without errors and has the four DAGs; the shared
#       validator agrees with tests/data/commands/ (the C parser's examples);
#       parameter and account checks fail with their reasons;
#   (b) `airflow dags test` of both IMAP DAGs and both Gmail DAGs puts the
#       right commands on per-run topics (key, traceparent header, JSON Schema);
#       a backfill with bad params fails and produces nothing;
#   (c) lattice-workers execute them: the IMAP commands against Dovecot, the
#       Gmail commands against the stack's Gmail API emulator: status succeeded
#       with the expected message counts.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_KAFKA_BOOTSTRAP_SERVERS LATTICE_PG_DSN LATTICE_PG_PASSWORD LATTICE_CA_FILE \
  LATTICE_GMAIL_API_URL LATTICE_GMAIL_TOKEN_URL LATTICE_TEST_GMAIL_URL LATTICE_TEST_IMAP_HOST \
  LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD
T0=$(date +%s)
TENANT=af-t$RUN
ACC=af-imap-$RUN          # enabled IMAP account with a folder of 5 messages
ACC_OFF=af-imap-off-$RUN  # disabled IMAP account
ACC_RE=af-imap-re-$RUN    # enabled IMAP account that needs re-authorisation
ACC_G=af-gmail-$RUN       # enabled Gmail account: an emulator user with 6 messages
GUSER=af$RUN@example.com
TENANT_S=af-s$RUN          # scheduler mode: one IMAP account with two folders
ACC_S=af-imap-s-$RUN
FOLDER="af-$RUN-Eingang"
WORK=$(mktemp -d)
WPID="" GWPID=""
ctl() { # ctl METHOD PATH [JSON]: the Gmail emulator's control API
  curl -fsS --max-time 60 --cacert "$LATTICE_CA_FILE" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "$LATTICE_TEST_GMAIL_URL/_emulator$2"
}
cleanup() {
  lt_stop "$WPID" "$GWPID"
  ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  lt_imap_delete "$FOLDER"
  psqlq "DELETE FROM mail_accounts WHERE tenant_id IN ('$TENANT', '$TENANT_S')" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- Airflow: the pinned venv (installed when missing: a clean clone needs it).
VENV=$("$ROOT/deploy/airflow/install")
AF=$VENV/bin/airflow
PY=$VENV/bin/python
T_INSTALL=$(( $(date +%s) - T0 ))
# Test speed only: every Airflow process here ends with a full garbage collection
# of its large heap in Py_FinalizeEx (~2.5 s CPU each, no Python frame); freezing
# the heap at exit (after logging's own atexit flush) skips it. Behaviour is unchanged.
mkdir -p "$WORK/pyhooks"
printf 'import atexit, gc\natexit.register(gc.freeze)\n' >"$WORK/pyhooks/sitecustomize.py"
export PYTHONPATH=$WORK/pyhooks${PYTHONPATH:+:$PYTHONPATH}
export AIRFLOW_HOME=$WORK/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/deploy/airflow/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
export LATTICE_COMMAND_SCHEMA_FILE=$ROOT/schemas/sync-command.v1.schema.json
export AIRFLOW_CONN_LATTICE_KAFKA
AIRFLOW_CONN_LATTICE_KAFKA=$("$PY" -c 'import json, os
print(json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": os.environ["LATTICE_KAFKA_BOOTSTRAP_SERVERS"]}}))')
export AIRFLOW_CONN_LATTICE_POSTGRES  # from the libpq DSN and the password, as JSON (no URL escaping)
AIRFLOW_CONN_LATTICE_POSTGRES=$("$PY" -c 'import json, os
from psycopg2.extensions import parse_dsn
d = parse_dsn(os.environ["LATTICE_PG_DSN"])
print(json.dumps({"conn_type": "postgres", "host": d.get("host"), "port": int(d.get("port", 5432)),
                  "login": d.get("user"), "schema": d.get("dbname"), "password": os.environ["LATTICE_PG_PASSWORD"]}))')
mkdir -p "$AIRFLOW_HOME"
"$AF" db migrate >"$WORK/migrate.log" 2>&1 &  # meanwhile: fixtures, DagBag checks
MIGRATE_PID=$!

# --- Fixtures, all our own: an IMAP folder with 5 messages, a Gmail emulator user
# with 6, four accounts of one tenant and one of another (scheduler mode).
python3 "$HERE/lib/imap_tool.py" create "$FOLDER"
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 5 --seed af
# (the config names the env variable that holds the password, never the password)
IMAP_PW_VAR=$(lt_secret_env "$TENANT" IMAP_PASSWORD) # the worker reads the password from it
export "$IMAP_PW_VAR=$LATTICE_TEST_IMAP_PASSWORD"
CFMT='{"host":"%s","port":%s,"username":"%s","password_env":"'"$IMAP_PW_VAR"'","folders":["%s"]}'  # pragma: allowlist secret
CONFIG=$(printf "$CFMT" "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$LATTICE_TEST_IMAP_USER" "$FOLDER")
# 6 INBOX messages an hour apart from 2024-03-01T20:00Z: 4 on March 1st (UTC), 2 on the 2nd.
ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",
  \"generate\":{\"count\":6,\"size\":3000,\"start\":1709323200,\"interval_s\":3600,\"labelIds\":[\"INBOX\"],\"seed\":$((RUN % 1000))}}" >/dev/null
GCS_VAR=$(lt_secret_env "$TENANT" GMAIL_CLIENT_SECRET) GRT_VAR=$(lt_secret_env "$TENANT" GMAIL_REFRESH_TOKEN)
export "$GCS_VAR=cs-$RUN" "$GRT_VAR=rt-$RUN"  # read by the worker
GCONFIG="{\"user\":\"me\",\"label_ids\":[\"INBOX\"],\"client_id\":\"cid-$RUN\",\"client_secret_env\":\"$GCS_VAR\",\"refresh_token_env\":\"$GRT_VAR\"}"
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, enabled, config_json) VALUES
  ('$TENANT', '$ACC', 'imap', true, '$CONFIG'::jsonb),
  ('$TENANT', '$ACC_OFF', 'imap', false, '$CONFIG'::jsonb),
  ('$TENANT', '$ACC_RE', 'imap', true, '$CONFIG'::jsonb),
  ('$TENANT', '$ACC_G', 'gmail', true, '$GCONFIG'::jsonb),
  ('$TENANT_S', '$ACC_S', 'imap', true, '{\"folders\":[\"af-s1\",\"af-s2\"]}'::jsonb)" >/dev/null
psqlq "UPDATE mail_accounts SET status = 'needs_reauth', status_reason = 'test' WHERE tenant_id = '$TENANT' AND account_id = '$ACC_RE'" >/dev/null

# Per-run command topics, IMAP and Gmail, each with a worker of ours.
TOPIC=airflow-cmd-$RUN TOPIC_G=airflow-gcmd-$RUN TOPIC_S=airflow-scmd-$RUN  # no worker reads TOPIC_S
"$ROOT/deploy/local/stack" topic "$TOPIC" 3 >/dev/null & p1=$!
"$ROOT/deploy/local/stack" topic "$TOPIC_G" 3 >/dev/null & p2=$!
"$ROOT/deploy/local/stack" topic "$TOPIC_S" 1 >/dev/null
wait "$p1" "$p2"

# The worker starts now (it reads our topic from the beginning) while Airflow runs.
LATTICE_TOPIC_COMMANDS=$TOPIC LATTICE_WORKER_GROUP_ID=af-$RUN LATTICE_WORKER_ID=af-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
LATTICE_TOPIC_COMMANDS=$TOPIC_G LATTICE_WORKER_GROUP_ID=af-g-$RUN LATTICE_WORKER_ID=af-g-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text \
  "$BUILD/worker/lattice-worker" >"$WORK/gworker.log" 2>&1 &
GWPID=$!

# --- (a) DagBag, validator vs the C parser's examples, parameter and account checks.
T1=$(date +%s)
"$PY" - "$ROOT" "$WORK/unit.out" "$TENANT" "$ACC" "$ACC_OFF" "$ACC_G" "$ACC_RE" >"$WORK/unit.log" 2>&1 <<'PY' || true
import glob, json, os, sys
from pathlib import Path
root, out, tenant, acc, acc_off, acc_g, acc_re = sys.argv[1:]
from airflow.dag_processing.dagbag import BundleDagBag
passed = failed = 0
def check(what, ok):
    global passed, failed
    if ok: passed += 1
    else: failed += 1; print(f"FAILED: {what}", file=sys.stderr)

dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
bag = BundleDagBag(dag_folder=dags, bundle_path=dags, bundle_name="dags-folder")
check(f"DagBag imports without errors: {bag.import_errors}", not bag.import_errors)
want = {"lattice__gmail_sync_incremental": ["build_commands", "produce_commands"],
        "lattice__imap_sync_incremental": ["build_commands", "produce_commands"],
        "lattice__gmail_backfill": ["build_command", "produce_command"],
        "lattice__imap_backfill": ["build_command", "produce_command"]}
for dag_id, tasks in want.items():
    dag = bag.dags.get(dag_id)
    check(f"DAG {dag_id} exists", dag is not None)
    if dag:
        check(f"{dag_id} tasks {sorted(dag.task_ids)}", sorted(dag.task_ids) == sorted(tasks))
check("only the four DAGs", sorted(bag.dag_ids) == sorted(want))
check(".airflowignore keeps the shared module out of parsing",
      sorted(Path(p).name for p in bag.file_last_changed) == sorted(f"{d}.py" for d in want))

import lattice_commands as lc
data = Path(root) / "tests/data/commands"
for sub, want_ok in (("valid", True), ("invalid", False), ("invalid-c-only", False)):
    files = sorted(data.glob(f"{sub}/*.json"))
    check(f"examples in {sub}", bool(files))
    for f in files:
        try:
            lc.validate_command(lc.loads_strict(f.read_bytes())); ok = True; why = "accepted"
        except lc.CommandError as e:
            ok = False; why = str(e)
        check(f"{f.name}: expected {'valid' if want_ok else 'invalid'}: {why}", ok == want_ok)

def rejects(fn, *args, says):
    try:
        fn(*args)
    except lc.CommandError as e:
        check(f"{fn.__name__}{args}: {e!s} should say {says!r}", says in str(e)); return
    check(f"{fn.__name__}{args} accepted", False)
rejects(lc.check_date, "start_date", "2023-02-29", says="not a valid date")
rejects(lc.check_date, "start_date", "2024-1-05", says="not a valid date")
rejects(lc.check_date, "start_date", "1969-12-31", says="1970 or later")
rejects(lc.gmail_backfill, "2024-03-02", "2024-03-01", says="start_date 2024-03-02 is after end_date 2024-03-01")
rejects(lc.imap_backfill, "INBOX", 0, None, says="start_uid: 0 is not a UID")
rejects(lc.imap_backfill, "INBOX", 3.0, None, says="start_uid: 3.0 is not a UID")
rejects(lc.imap_backfill, "INBOX", True, None, says="is not a UID")
rejects(lc.imap_backfill, "INBOX", None, 4294967296, says="end_uid: 4294967296 is not a UID")
rejects(lc.imap_backfill, "INBOX", 10, 9, says="start_uid 10 is after end_uid 9")
rejects(lc.imap_backfill, "", 1, 2, says="folder: missing")
rejects(lc.imap_backfill, "a\nb", 1, 2, says="control characters")
check("UIDs as digit strings", lc.imap_backfill("INBOX", "2", "4") == {"folder": "INBOX", "start_uid": 2, "end_uid": 4})
rejects(lc.find_account, f"nobody-{acc}", "imap", says="no account with account_id")
rejects(lc.find_account, acc_g, "imap", says="is of provider gmail, not imap")
rejects(lc.find_account, acc_off, "imap", says="is disabled")
rejects(lc.find_account, acc, "imap", "other-tenant", says="no account with account_id")
check("find_account", lc.find_account(acc, "imap", None)["tenant_id"] == tenant)
rejects(lc.find_account, acc_re, "imap", says="is needs_reauth: test")
check("enabled_accounts skips disabled and other providers",
      [a["account_id"] for a in lc.enabled_accounts("imap", tenant)] == sorted([acc, acc_re]))
# The in-flight rule shared with lattice-scheduler: an issued, unstarted command counts.
check("nothing in flight yet", lc.in_flight_accounts("imap", tenant, 900) == set())
probe = {"command_id": f"af-probe-{acc}", "tenant_id": tenant, "account_id": acc, "provider": "imap"}
lc.record_issued([probe])
check("issued command in flight", lc.in_flight_accounts("imap", tenant, 900) == {(tenant, acc)})
check("... not for gmail", lc.in_flight_accounts("gmail", tenant, 900) == set())
from airflow.providers.postgres.hooks.postgres import PostgresHook
PostgresHook(postgres_conn_id=lc.POSTGRES_CONN_ID).run(
    "DELETE FROM mail_sync_issued WHERE command_id = %s", parameters=(probe["command_id"],))
check("probe removed", lc.in_flight_accounts("imap", tenant, 900) == set())
tp = lc.new_traceparent()
cmd = lc.build_command(tenant_id=tenant, account_id=acc, provider="imap", kind="backfill",
                       requested_by="test", traceparent=tp, backfill={"folder": "INBOX"})
rejects(lc.validate_command, {**cmd, "scope": "INBOX"}, says="scope")
rejects(lc.validate_command, {**cmd, "priority": 1}, says="priority")
rejects(lc.validate_command, {**cmd, "traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, says="traceparent")
Path(out).write_text(f"{passed} {failed}\n")
PY
read -r up uf <"$WORK/unit.out" || { up=0; uf=1; }
grep FAILED "$WORK/unit.log" >&2 || true
[ "$uf" = 0 ] && [ "$up" -gt 0 ] || { tail -20 "$WORK/unit.log" >&2; }
pass=$((pass+up)) fail=$((fail+uf))
check "DagBag and validator checks ran" [ "$up" -gt 40 ]
T_UNIT=$(( $(date +%s) - T1 ))

wait "$MIGRATE_PID" || { tail -30 "$WORK/migrate.log" >&2; exit 1; }

# --- (b) airflow dags test -> commands on the topics. The Gmail runs go in
# parallel with the IMAP runs, in a second AIRFLOW_HOME (SQLite has one writer).
dags_test() { # dags_test HOME TOPIC DAG_ID CONF LOG
  AIRFLOW_HOME=$1 AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$1/airflow.db \
  AIRFLOW_VAR_LATTICE_TOPIC_COMMANDS=$2 "$AF" dags test "$3" -c "$4" >"$WORK/$5.log" 2>&1
}
topic_dump() { # topic_dump TOPIC -> key<TAB>headers<TAB>value per message
  kcat -C -b "$BROKER" -t "$1" -o beginning -e -q -f '%k\t%h\t%s\n' 2>/dev/null
}
# verify TOPIC EXPECTED_JSON: every message valid, key = account_id, traceparent
# header = the JSON traceparent, and the commands are the expected ones (a list
# of partial objects, in any order; null: the field is absent). Prints the ids.
verify() {
  topic_dump "$1" | PYTHONPATH=$AIRFLOW__CORE__DAGS_FOLDER:$PYTHONPATH "$PY" -c '
import json, sys, lattice_commands as lc
want = json.loads(sys.argv[1]); got = []
for line in sys.stdin:
    key, headers, value = line.rstrip("\n").split("\t", 2)
    cmd = lc.loads_strict(value)
    lc.validate_command(cmd)
    assert key == cmd["account_id"], (key, cmd["account_id"])
    hdr = dict(h.split("=", 1) for h in headers.split(",") if h)
    assert hdr.get("traceparent") == cmd["traceparent"], (hdr, cmd["traceparent"])
    got.append(cmd)
assert len(got) == len(want), f"{len(got)} commands, expected {len(want)}: {got}"
def like(c, w):
    return all((k not in c) if v is None else c.get(k) == v for k, v in w.items())
for w in want:
    assert sum(like(c, w) for c in got) == 1, f"no single command like {w} in {got}"
for c in got:
    print(c["command_id"])
' "$2" 2>"$WORK/verify.err"
}
T2=$(date +%s)
HOME_G=$WORK/airflow-gmail
mkdir -p "$HOME_G" && cp "$AIRFLOW_HOME/airflow.cfg" "$AIRFLOW_HOME/airflow.db" "$HOME_G/"
(
  rc=0; dags_test "$HOME_G" "$TOPIC_G" lattice__gmail_sync_incremental "{\"tenant_id\":\"$TENANT\"}" gincr || rc=$?
  echo $rc >"$WORK/gincr.rc"
  rc=0; dags_test "$HOME_G" "$TOPIC_G" lattice__gmail_backfill \
    "{\"account_id\":\"$ACC_G\",\"start_date\":\"2024-02-28\",\"end_date\":\"2024-03-01\",\"scope\":\"label:INBOX\"}" gbf || rc=$?
  echo $rc >"$WORK/gbf.rc"
  # The alternative: the incremental DAG runs lattice-scheduler --once.
  rc=0; LATTICE_AIRFLOW_INCREMENTAL_MODE=scheduler LATTICE_SCHEDULER_BIN=$BUILD/scheduler/lattice-scheduler \
    dags_test "$HOME_G" "$TOPIC_S" lattice__imap_sync_incremental "{\"tenant_id\":\"$TENANT_S\"}" sched || rc=$?
  echo $rc >"$WORK/sched.rc"
) &
GMAIL_PID=$!
dags_test "$AIRFLOW_HOME" "$TOPIC" lattice__imap_sync_incremental "{\"tenant_id\":\"$TENANT\"}" incr \
  && ok=1 || { ok=0; tail -30 "$WORK/incr.log" >&2; }
check "dags test lattice__imap_sync_incremental" [ "$ok" = 1 ]
dags_test "$AIRFLOW_HOME" "$TOPIC" lattice__imap_backfill \
  "{\"account_id\":\"$ACC\",\"folder\":\"$FOLDER\",\"start_uid\":2,\"end_uid\":4}" bf \
  && ok=1 || { ok=0; tail -30 "$WORK/bf.log" >&2; }
check "dags test lattice__imap_backfill" [ "$ok" = 1 ]
# A reversed range fails the task with the reason and produces nothing.
rc=0; dags_test "$AIRFLOW_HOME" "$TOPIC" lattice__imap_backfill \
  "{\"account_id\":\"$ACC\",\"folder\":\"$FOLDER\",\"start_uid\":4,\"end_uid\":2}" bad || rc=$?
check "reversed UID range fails the run" [ "$rc" != 0 ]
check "... with the reason" grep -q "start_uid 4 is after end_uid 2" "$WORK/bad.log"
IDS=$(verify "$TOPIC" "$(printf '[{"provider":"imap","kind":"incremental","tenant_id":"%s","account_id":"%s","requested_by":"airflow:lattice__imap_sync_incremental","scope":null,"backfill":null},
  {"provider":"imap","kind":"backfill","tenant_id":"%s","account_id":"%s","requested_by":"airflow:lattice__imap_backfill","scope":null,"backfill":{"folder":"%s","start_uid":2,"end_uid":4}}]' \
  "$TENANT" "$ACC" "$TENANT" "$ACC" "$FOLDER")") && ok=1 || { ok=0; cat "$WORK/verify.err" >&2; }
check "IMAP commands on $TOPIC: one incremental (the enabled, active account only), one backfill, nothing else" [ "$ok" = 1 ]
INCR=$(grep '^af\.imap\.incremental\.' <<<"$IDS" || true)
check "the incremental command is recorded as issued" \
  [ "$(psqlq "SELECT account_id FROM mail_sync_issued WHERE command_id = '$INCR'")" = "$ACC" ]

wait "$GMAIL_PID" || true
check "dags test lattice__gmail_sync_incremental" [ "$(cat "$WORK/gincr.rc")" = 0 ]
check "dags test lattice__gmail_backfill" [ "$(cat "$WORK/gbf.rc")" = 0 ]
[ "$(cat "$WORK/gincr.rc")" = 0 ] || tail -30 "$WORK/gincr.log" >&2
[ "$(cat "$WORK/gbf.rc")" = 0 ] || tail -30 "$WORK/gbf.log" >&2
GIDS=$(verify "$TOPIC_G" "$(printf '[{"provider":"gmail","kind":"incremental","tenant_id":"%s","account_id":"%s","requested_by":"airflow:lattice__gmail_sync_incremental","scope":null,"backfill":null},
  {"provider":"gmail","kind":"backfill","tenant_id":"%s","account_id":"%s","requested_by":"airflow:lattice__gmail_backfill","scope":"label:INBOX","backfill":{"start_date":"2024-02-28","end_date":"2024-03-01"}}]' \
  "$TENANT" "$ACC_G" "$TENANT" "$ACC_G")") && ok=1 || { ok=0; cat "$WORK/verify.err" >&2; }
check "Gmail commands on $TOPIC_G: one incremental, one backfill ($GIDS)" [ "$ok" = 1 ]
check "dags test lattice__imap_sync_incremental (scheduler mode)" [ "$(cat "$WORK/sched.rc")" = 0 ]
[ "$(cat "$WORK/sched.rc")" = 0 ] || tail -30 "$WORK/sched.log" >&2
verify "$TOPIC_S" "$(printf '[{"provider":"imap","kind":"incremental","tenant_id":"%s","account_id":"%s","scope":"af-s1"},
  {"provider":"imap","kind":"incremental","tenant_id":"%s","account_id":"%s","scope":"af-s2"}]' \
  "$TENANT_S" "$ACC_S" "$TENANT_S" "$ACC_S")" >/dev/null && ok=1 || { ok=0; cat "$WORK/verify.err" >&2; }
# (one per folder: the direct mode never sets scope, so these are the scheduler's)
check "scheduler mode: lattice-scheduler's commands on $TOPIC_S (one per folder)" [ "$ok" = 1 ]
T_DAGS=$(( $(date +%s) - T2 ))

# --- (c) the worker executes the IMAP commands
wait_status() { lt_wait_status --final lattice.mail.sync.status.v1 "$1" "$WORK/$2"; } # ID LOG
jget() { python3 -c 'import json,sys
try: print(json.loads(sys.argv[1]).get(sys.argv[2]))
except ValueError: print("")' "$1" "$2"; }
T3=$(date +%s)
n=0
for id in $IDS $GIDS; do
  n=$((n+1))
  case $id in af.imap.*) log=worker.log ;; *) log=gworker.log ;; esac
  s=$(wait_status "$id" "$log" || true)
  check "worker: $id succeeded ($s)" [ "$(jget "$s" result)" = succeeded ]
  case $id in
    af.imap.incremental.*) want=5 ;;  # the whole folder
    af.imap.backfill.*) want=3 ;;     # UIDs 2..4
    af.gmail.incremental.*) want=6 ;; # the whole INBOX
    af.gmail.backfill.*) want=4 ;;    # 2024-02-28..2024-03-01: the 4 of March 1st
  esac
  check "$id: $want messages" [ "$(jget "$s" messages)" = "$want" ]
done
check "four commands executed" [ "$n" = 4 ]
wm=$(psqlq "SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACC'")
check "IMAP watermark at UID 5 ($wm)" [ "$wm" = 5 ]
check "Gmail watermark set" [ -n "$(psqlq "SELECT watermark_json->>'historyId' FROM mail_watermarks WHERE tenant_id='$TENANT' AND account_id='$ACC_G'")" ]
T_WORKER=$(( $(date +%s) - T3 ))

kill -TERM "$WPID" "$GWPID"
rc=0; wait "$WPID" || rc=$?; WPID=
check "IMAP worker exited 0 on SIGTERM" [ "$rc" = 0 ]
rc=0; wait "$GWPID" || rc=$?; GWPID=
check "Gmail worker exited 0 on SIGTERM" [ "$rc" = 0 ]
for f in "$WORK"/*.log; do
  check "no secret in $(basename "$f")" bash -c "! grep -qF '$LATTICE_PG_PASSWORD' '$f' && ! grep -qF '$LATTICE_TEST_IMAP_PASSWORD' '$f'"
done
[ "$fail" = 0 ] || { echo "--- worker logs"; tail -n 20 "$WORK/worker.log" "$WORK/gworker.log"; }
echo "test_airflow_dags: timings: venv ${T_INSTALL}s, dagbag+checks ${T_UNIT}s, dags tests ${T_DAGS}s, worker ${T_WORKER}s, total $(( $(date +%s) - T0 ))s"
lt_summary test_airflow_dags
