#!/usr/bin/env bash
# The Postgres session is cut exactly when the worker records a command's
# final status (the fault campaign's pg_terminate_backend storm hit it: the
# row stayed "running" for good while the status event said succeeded, and
# every later scheduler tick saw the command in flight). A trigger on a
# private cluster (lib/private_pg.sh: the stack's is shared) terminates the
# session of the first UPDATE to status "succeeded" (a sequence counts: it is
# not rolled back). The worker must record the final status on a new
# session: the row ends "succeeded", as the status event. Per run: topics,
# consumer group, worker id, tenant, account, folder.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/private_pg.sh"
lt_require_pipeline LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD

TENANT=t$RUN ACCOUNT=finish-$RUN FOLDER=finish-$RUN
CMD_TOPIC=finish-cmd-$RUN RAW_TOPIC=finish-raw-$RUN CKPT_TOPIC=finish-ckpt-$RUN STATUS_TOPIC=finish-status-$RUN
WORK=$(mktemp -d)
WPID=
cleanup() {
  lt_stop "$WPID"
  lt_pg_private_down
  lt_imap_delete "$FOLDER"
  rm -rf "$WORK"
}
trap cleanup EXIT

lt_pg_private_up
for t in "$CMD_TOPIC" "$RAW_TOPIC" "$CKPT_TOPIC" "$STATUS_TOPIC"; do
  "$REPO/deploy/local/stack" topic "$t" 1 >/dev/null
done
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 5 --seed finish >/dev/null
lt_imap_account "$TENANT" "$ACCOUNT" "$LATTICE_TEST_IMAP_USER" LATTICE_TEST_IMAP_PASSWORD "$FOLDER"
# as the superuser: the trigger's pg_terminate_backend of its own session
PGPASSWORD=$LATTICE_PG_PASSWORD psql "host=127.0.0.1 port=$LT_PG_PORT dbname=lattice user=postgres" -X -q \
  -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE SEQUENCE finish_cut;
GRANT SELECT ON SEQUENCE finish_cut TO lattice;
CREATE FUNCTION finish_cut() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF nextval('finish_cut') = 1 THEN
    PERFORM pg_terminate_backend(pg_backend_pid());
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER finish_cut BEFORE UPDATE ON mail_sync_commands
  FOR EACH ROW WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION finish_cut();
SQL

LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_TOPIC_RAW=$RAW_TOPIC LATTICE_TOPIC_CHECKPOINTS=$CKPT_TOPIC \
LATTICE_TOPIC_STATUS=$STATUS_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
LATTICE_WORKER_CONCURRENCY=1 LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_WORKER_TRACK_CHANGES=false \
LATTICE_LOG_FORMAT=text LATTICE_TMP_DIR=$WORK \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

CID=cmd-$RUN
lt_imap_command "$CMD_TOPIC" "$CID" "$TENANT" "$ACCOUNT" incremental
s=$(lt_wait_status --final "$STATUS_TOPIC" "$CID" "$WORK/worker.log" || echo '{}')
check "the status event says succeeded ($(cut -c1-200 <<<"$s"))" [ "$(jget "$s" result)" = succeeded ]
check "the trigger cut the session of the final UPDATE" \
  [ "$(psqlq "SELECT last_value FROM finish_cut")" -ge 1 ]
# the row: final within 60 s (a hang guard; the retry takes a fraction of a second)
end=$((SECONDS + 60))
row=
while [ $SECONDS -lt $end ]; do
  row=$(psqlq "SELECT status FROM mail_sync_commands WHERE command_id='$CID'")
  [ "$row" = succeeded ] && break
  sleep 0.2
done
check "the command's row is succeeded, as its status event (got $row)" [ "$row" = succeeded ]
check "the final status was written on a new session" \
  grep -q 'postgres session reconnected to record the command' "$WORK/worker.log"
check "the watermark is at UID 5" \
  [ "$(psqlq "SELECT watermark_json->>'last_uid' FROM mail_watermarks WHERE tenant_id='$TENANT'")" = 5 ]
[ "$fail" = 0 ] || grep -v ' kafka ' "$WORK/worker.log" | tail -30
lt_summary test_worker_finish_row
