#!/usr/bin/env bash
# lattice-watcher against the real stack (Dovecot IDLE, Kafka group, Postgres),
# with a real lattice-worker executing the commands it sends, in a throwaway
# Postgres schema with topics, consumer groups, tenant and folders of its own:
#   - a (re)connect sends one command per watched account;
#   - new mail, a flag change and an expunge each lead to exactly one command;
#   - a burst of 100 APPENDs leads to a bounded number of commands (no
#     pile-up: never two in flight for one account), and every message is
#     ingested (a change during a run is sent after it);
#   - IDLE is re-issued (LATTICE_WATCHER_IDLE_REISSUE_S=2) and still reports;
#   - a session cut with `doveadm kick` (the stack's kick@ mailbox) is healed:
#     reconnect, one command, then new mail is seen again;
#   - a second replica shares the accounts (Kafka group); the first killed
#     with kill -9 has its accounts taken over by the second;
#   - a disabled account is released without a restart;
#   - /metrics, /healthz, /readyz.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT LATTICE_TEST_IMAP_USER \
  LATTICE_TEST_IMAP_PASSWORD LATTICE_TEST_IMAP_KICK_USER LATTICE_TEST_IMAP_BENCH_PASSWORD \
  LATTICE_DOVECOT_CONF
STACK="$ROOT/deploy/local/stack"
SCHEMA=watch_$RUN
TEN=watch-$RUN
F="watch-$RUN" K="watch-k-$RUN"
WORK=$(mktemp -d)
WPID= APID= BPID=
cleanup() {
  lt_stop "$APID" "$BPID" "$WPID"
  PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  lt_imap_delete "$F"
  LATTICE_TEST_IMAP_USER=$LATTICE_TEST_IMAP_KICK_USER LATTICE_TEST_IMAP_PASSWORD=$LATTICE_TEST_IMAP_BENCH_PASSWORD \
    python3 "$HERE/lib/imap_tool.py" delete "$K" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- a private schema with every migration, topics, folders, accounts
PGPASSWORD=$LATTICE_PG_PASSWORD psql "$LATTICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA"
DSN="$LATTICE_PG_DSN options='-csearch_path=$SCHEMA'"
psqlq() { PGPASSWORD=$LATTICE_PG_PASSWORD psql "$DSN" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
LATTICE_PG_DSN=$DSN "$BUILD/tools/lattice-migrate" --dir "$ROOT/migrations" >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }
CMD=$("$STACK" topic "lattice.test.watch.cmd.$RUN" 3)
RAW=$("$STACK" topic "lattice.test.watch.raw.$RUN")
STATUS=$("$STACK" topic "lattice.test.watch.status.$RUN")

kick_imap() { # imap_tool.py as the kick@ user
  LATTICE_TEST_IMAP_USER=$LATTICE_TEST_IMAP_KICK_USER LATTICE_TEST_IMAP_PASSWORD=$LATTICE_TEST_IMAP_BENCH_PASSWORD \
    python3 "$HERE/lib/imap_tool.py" "$@"
}
python3 "$HERE/lib/imap_tool.py" create "$F"
kick_imap create "$K"
PWA=$(lt_secret_env "$TEN" IMAP_PASSWORD) PWK=$(lt_secret_env "$TEN" KICK_PASSWORD)
export "$PWA=$LATTICE_TEST_IMAP_PASSWORD" "$PWK=$LATTICE_TEST_IMAP_BENCH_PASSWORD"
conf() { # user password-var folder
  printf '{"host":"%s","port":%s,"username":"%s","password_env":"%s","folders":["%s"],"push_folders":["%s"]}' \
    "$LATTICE_TEST_IMAP_HOST" "$LATTICE_TEST_IMAP_PORT" "$1" "$2" "$3" "$3"
}
psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES
  ('$TEN', 'a-$RUN', 'imap', '$(conf "$LATTICE_TEST_IMAP_USER" "$PWA" "$F")'),
  ('$TEN', 'k-$RUN', 'imap', '$(conf "$LATTICE_TEST_IMAP_KICK_USER" "$PWK" "$K")')" >/dev/null
A=a-$RUN KA=k-$RUN

# Change the mailbox like a mail client would: python imaplib, SELECT, one action.
mutate() { # user password folder action(flag|expunge)
  python3 - "$@" <<'EOF'
import imaplib, os, ssl, sys
user, pw, folder, action = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=os.environ["LATTICE_CA_FILE"])
c = imaplib.IMAP4_SSL(os.environ["LATTICE_TEST_IMAP_HOST"], int(os.environ["LATTICE_TEST_IMAP_PORT"]), ssl_context=ctx)
c.login(user, pw)
c.select('"%s"' % folder)
typ, data = c.uid("SEARCH", None, "ALL")
uid = data[0].split()[0].decode()
if action == "flag":
    c.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
else:
    c.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
    c.expunge()
c.logout()
EOF
}
burst() { # append N messages to F over one connection, as fast as the server takes them
  python3 - "$1" "$F" <<'EOF'
import imaplib, os, ssl, sys
n, folder = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=os.environ["LATTICE_CA_FILE"])
c = imaplib.IMAP4_SSL(os.environ["LATTICE_TEST_IMAP_HOST"], int(os.environ["LATTICE_TEST_IMAP_PORT"]), ssl_context=ctx)
c.login(os.environ["LATTICE_TEST_IMAP_USER"], os.environ["LATTICE_TEST_IMAP_PASSWORD"])
for i in range(n):
    msg = ("From: b@example.test\r\nTo: alice@example.test\r\nSubject: burst %d\r\n"
           "Message-ID: <burst.%s.%d@example.test>\r\n\r\nbody %d\r\n" % (i, folder, i, i)).encode()
    c.append('"%s"' % folder, None, None, msg)
c.logout()
EOF
}

# commands on CMD for an account, and their ids
cmds() { kcat -C -b "$BROKER" -t "$CMD" -o beginning -e -q -f '%k\t%s\n' 2>/dev/null | awk -F'\t' -v k="$1" '$1 == k' > "$WORK/cmds.$1"; wc -l < "$WORK/cmds.$1"; }
cmd_ids() { cmds "$1" >/dev/null; sed 's/.*"command_id":"\([^"]*\)".*/\1/' "$WORK/cmds.$1"; }
wait_cmds() { # account n: wait (hang guard 120 s) until at least n commands
  local end=$((SECONDS + 120 * LT_TF))
  while [ $SECONDS -lt $end ] && [ "$(cmds "$1")" -lt "$2" ]; do sleep 0.2; done
  [ "$(cmds "$1")" -ge "$2" ]
}
wait_done() { # account: every command of the account has its final status
  local id
  for id in $(cmd_ids "$1"); do lt_wait_status --final "$STATUS" "$id" "$WORK/worker.log" >/dev/null || return 1; done
}
# quiet: the account's commands all ran and none came within 3 debounce windows
# and in-flight checks after (the absence of a command can only be shown by waiting)
settle() { wait_done "$1"; local n; n=$(cmds "$1"); sleep 1.5; wait_done "$1"; [ "$(cmds "$1")" = "$n" ]; }
raw_count() { kcat -C -b "$BROKER" -t "$RAW" -X isolation.level=read_committed -o beginning -e -q -f '%k\n' 2>/dev/null | grep -cx "$1" || true; }

# ---- the worker that executes the commands
LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$CMD LATTICE_TOPIC_RAW=$RAW LATTICE_TOPIC_STATUS=$STATUS \
LATTICE_WORKER_GROUP_ID=watch-w-$RUN LATTICE_WORKER_ID=watch-w-$RUN LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE \
LATTICE_LOG_FORMAT=text LATTICE_WORKER_RETRY_BASE_MS=200 \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

watcher() { # log port: a watcher replica in the background (pid in $!)
  LATTICE_PG_DSN=$DSN LATTICE_TOPIC_COMMANDS=$CMD LATTICE_WATCHER_GROUP_ID=watch-$RUN \
  LATTICE_TLS_CA_FILE=$LATTICE_CA_FILE LATTICE_LOG_FORMAT=text LATTICE_METRICS_PORT=$2 \
  LATTICE_METRICS_BIND=127.0.0.1 LATTICE_WATCHER_IDLE_REISSUE_S=2 LATTICE_WATCHER_RELOAD_S=1 \
  LATTICE_WATCHER_SESSION_TIMEOUT_MS=6000 \
    "$BUILD/watcher/lattice-watcher" >"$WORK/$1.log" 2>&1 &
}
PA=$(lt_free_port)
watcher wa "$PA"; APID=$!
URL=http://127.0.0.1:$PA
lt_wait_http /readyz "replica A ready (assigned, accounts read)"
check "/healthz 200" [ "$(code /healthz)" = 200 ]
lt_check_prom_type

# ---- 1. connect: one command per account
check "connect: a command for account a" wait_cmds "$A" 1
check "connect: a command for account k" wait_cmds "$KA" 1
check "connect: the command's scope is the push folder" grep -q "\"scope\":\"$F\"" "$WORK/cmds.$A"
check "connect: requested_by watcher" grep -q '"requested_by":"watcher"' "$WORK/cmds.$A"
check "connect: settled, one command for a" settle "$A"
check "connect: exactly one ($(cmds "$A"))" [ "$(cmds "$A")" = 1 ]

partitions_ok() { # every command sits in the partition its key hashes to (librdkafka's
  # default consistent_random: CRC-32 mod partitions), the one the watcher owns it by
  kcat -C -b "$BROKER" -t "$CMD" -o beginning -e -q -f '%p\t%k\n' 2>/dev/null | python3 -c '
import sys, zlib
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
bad = [r for r in rows if int(r[0]) != zlib.crc32(r[1].encode()) % 3]
print("%d commands, misplaced: %s" % (len(rows), bad), file=sys.stderr)
sys.exit(1 if bad or not rows else 0)'
}
check "commands are in the partition of their key" partitions_ok

# ---- 2. new mail -> one command, and the message is ingested
python3 "$HERE/lib/imap_tool.py" append "$F" --count 1 --seed w1
check "new mail: a second command" wait_cmds "$A" 2
check "new mail: settled" settle "$A"
check "new mail: exactly one command ($(cmds "$A") in all)" [ "$(cmds "$A")" = 2 ]
check "new mail: ingested ($(raw_count "$A") event)" [ "$(raw_count "$A")" = 1 ]

# ---- 3. flag change -> one command
mutate "$LATTICE_TEST_IMAP_USER" "$LATTICE_TEST_IMAP_PASSWORD" "$F" flag
check "flag change: a command" wait_cmds "$A" 3
check "flag change: settled" settle "$A"
check "flag change: exactly one ($(cmds "$A") in all)" [ "$(cmds "$A")" = 3 ]

# ---- 4. expunge -> one command
mutate "$LATTICE_TEST_IMAP_USER" "$LATTICE_TEST_IMAP_PASSWORD" "$F" expunge
check "expunge: a command" wait_cmds "$A" 4
check "expunge: settled" settle "$A"
check "expunge: exactly one ($(cmds "$A") in all)" [ "$(cmds "$A")" = 4 ]
scrape s1
check "notifications counted: exists" [ "$(metric s1 'lattice_watcher_notifications_total{kind="exists"}')" != 0 ]
check "notifications counted: fetch" [ "$(metric s1 'lattice_watcher_notifications_total{kind="fetch"}')" != 0 ]
check "notifications counted: expunge" [ "$(metric s1 'lattice_watcher_notifications_total{kind="expunge"}')" != 0 ]

# ---- 5. a burst of 100 messages -> a bounded number of commands, all mail ingested
burst 100
end=$((SECONDS + 300 * LT_TF))
while [ $SECONDS -lt $end ] && [ "$(raw_count "$A")" -lt 101 ]; do sleep 0.5; done
check "burst: all 100 ingested ($(raw_count "$A") events in all)" [ "$(raw_count "$A")" = 101 ]
check "burst: settled" settle "$A"
nb=$(( $(cmds "$A") - 4 ))
echo "burst of 100 APPENDs: $nb command(s)" >&2
check "burst: at least one command ($nb)" [ "$nb" -ge 1 ]
check "burst: at most 10 commands for 100 messages ($nb)" [ "$nb" -le 10 ]
nopile() { # account: each command was produced after the previous one's final status
  python3 - "$1" "$CMD" "$STATUS" "$BROKER" <<'EOF2'
import json, subprocess, sys
acct, cmd_topic, status_topic, broker = sys.argv[1:5]
def read(topic):
    out = subprocess.run(["kcat", "-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q",
                          "-f", "%T\t%k\t%s\n"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        ts, k, v = line.split("\t", 2)
        try:
            yield int(ts), k, json.loads(v)
        except ValueError:
            pass
cmds = sorted((ts, d["command_id"]) for ts, k, d in read(cmd_topic) if k == acct)
final = {d.get("command_id"): ts for ts, k, d in read(status_topic) if d.get("result") != "running"}
bad = [(a[1], b[1]) for a, b in zip(cmds, cmds[1:]) if a[1] not in final or b[0] < final[a[1]]]
print("%d commands, overlapping: %s" % (len(cmds), bad), file=sys.stderr)
sys.exit(1 if bad else 0)
EOF2
}
check "burst: no command was sent while another of the account was in flight" nopile "$A"

# ---- 5b. IDLE re-issue
end=$((SECONDS + 60 * LT_TF))
while [ $SECONDS -lt $end ]; do scrape s2; [ "$(metric s2 lattice_watcher_idle_reissues_total | cut -d. -f1)" -ge 2 ] && break; sleep 0.5; done
check "IDLE re-issued at least twice ($(metric s2 lattice_watcher_idle_reissues_total))" \
  [ "$(metric s2 lattice_watcher_idle_reissues_total | cut -d. -f1)" -ge 2 ]
n=$(cmds "$A")
python3 "$HERE/lib/imap_tool.py" append "$F" --count 1 --seed w2
check "after IDLE re-issues new mail still gives a command" wait_cmds "$A" $((n + 1))
check "re-issue: settled" settle "$A"

# ---- 6. doveadm kick: the cut is healed
settle "$KA" || true
nk=$(cmds "$KA")
scrape s3
doveadm -c "$LATTICE_DOVECOT_CONF" kick "$LATTICE_TEST_IMAP_KICK_USER" >"$WORK/kick.log" 2>&1 || true
end=$((SECONDS + 120 * LT_TF))
while [ $SECONDS -lt $end ]; do scrape s4; [ "$(delta s3 s4 lattice_watcher_reconnects_total | cut -d. -f1)" -ge 1 ] && break; sleep 0.2; done
check "kick: the lost connection was counted" [ "$(delta s3 s4 lattice_watcher_reconnects_total | cut -d. -f1)" -ge 1 ]
check "kick: reconnected and one command sent on reconnect" wait_cmds "$KA" $((nk + 1))
check "kick: settled" settle "$KA"
nk=$(cmds "$KA")
kick_imap append "$K" --count 1 --seed k1
check "kick: new mail after the reconnect gives a command" wait_cmds "$KA" $((nk + 1))

# ---- 7. a second replica; the first killed with kill -9: its accounts move
PB=$(lt_free_port)
watcher wb "$PB"; BPID=$!
URL=http://127.0.0.1:$PB
lt_wait_http /readyz "replica B ready"
kill -KILL "$APID"; wait "$APID" 2>/dev/null || true; APID=
end=$((SECONDS + 120 * LT_TF))
while [ $SECONDS -lt $end ]; do scrape b1; [ "$(metric b1 lattice_watcher_accounts | cut -d. -f1)" = 2 ] && break; sleep 0.5; done
check "kill -9 of replica A: B watches both accounts ($(metric b1 lattice_watcher_accounts))" \
  [ "$(metric b1 lattice_watcher_accounts | cut -d. -f1)" = 2 ]
check "kill -9: B holds every partition" [ "$(metric b1 lattice_watcher_partitions_assigned | cut -d. -f1)" = 3 ]
settle "$A" || true
n=$(cmds "$A")
python3 "$HERE/lib/imap_tool.py" append "$F" --count 1 --seed w3
check "kill -9: new mail is seen by B" wait_cmds "$A" $((n + 1))
check "kill -9: B issued the command" grep -q "command issued.*account=$A" "$WORK/wb.log"

# ---- 8. a disabled account is released
psqlq "UPDATE mail_accounts SET enabled = false WHERE account_id = '$KA'" >/dev/null
end=$((SECONDS + 60 * LT_TF))
while [ $SECONDS -lt $end ]; do scrape b2; [ "$(metric b2 lattice_watcher_accounts | cut -d. -f1)" = 1 ] && break; sleep 0.3; done
check "disabled: released ($(metric b2 lattice_watcher_accounts) watched)" [ "$(metric b2 lattice_watcher_accounts | cut -d. -f1)" = 1 ]
check "disabled: logged" grep -q "released: .*account=$KA" "$WORK/wb.log"
nk=$(cmds "$KA")
kick_imap append "$K" --count 1 --seed k2
settle "$A" || true
check "disabled: no command for new mail ($(cmds "$KA") vs $nk)" [ "$(cmds "$KA")" = "$nk" ]

# ---- stop
kill -TERM "$BPID"; rc=0; wait "$BPID" || rc=$?; BPID=
check "SIGTERM: exit 0" [ "$rc" = 0 ]
[ "$fail" = 0 ] || { echo "--- watcher A"; tail -30 "$WORK/wa.log"; echo "--- watcher B"; tail -30 "$WORK/wb.log"; echo "--- worker"; grep -E "error|warn" "$WORK/worker.log" | tail -20; } >&2
lt_summary test_watcher
