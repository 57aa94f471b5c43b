#!/usr/bin/env bash
# An account's config chooses the IMAP host: the secrets it may name must be
# its tenant's own. A real lattice-worker, and an IMAPS listener on
# 127.0.0.1 (own self-signed certificate) that records every byte it
# receives. Accounts of one tenant that name a worker setting
# (LATTICE_S3_SECRET_ACCESS_KEY), /proc/self/environ, another tenant's file
# ("../other/pw", an absolute path, a link out of the tenant directory) or
# another tenant's variable fail finally with a clear reason, and the
# listener never receives the secret; the same account naming its own
# variable or file does send that one (the listener works).
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require_pipeline
TENANT=t-$RUN OTHER=o-$RUN
WORK=$(mktemp -d)
WPID= LPID=
cleanup() { lt_stop "$WPID" "$LPID"; rm -rf "$WORK"; }
trap cleanup EXIT

# 1. the listener: TLS on a free port, greeting, CAPABILITY, LOGIN refused
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
LPORT=$(lt_free_port)
python3 - "$LPORT" "$WORK" <<'EOF' >"$WORK/listener.log" 2>&1 &
import socket, ssl, sys, threading
port, work = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(work + "/cert.pem", work + "/key.pem")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
lock = threading.Lock()
def serve(raw):
    try:
        c = ctx.wrap_socket(raw, server_side=True)
        c.sendall(b"* OK [CAPABILITY IMAP4rev1] listener ready\r\n")
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            with lock, open(work + "/received", "ab") as f:
                f.write(d)
            buf += d
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                tag = line.split(b" ", 1)[0]
                cmd = line.split(b" ")[1].upper() if b" " in line else b""
                if cmd == b"CAPABILITY":
                    c.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                elif cmd == b"LOGOUT":
                    c.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                elif line.endswith(b"}"):
                    c.sendall(b"+ go on\r\n")
                elif tag:
                    c.sendall(tag + b" NO [AUTHENTICATIONFAILED] refused\r\n")
    except Exception as e:
        print("connection:", e, flush=True)
print("listening", flush=True)
while True:
    s, _ = srv.accept()
    threading.Thread(target=serve, args=(s,), daemon=True).start()
EOF
LPID=$!
for _ in $(seq 1 100); do grep -q listening "$WORK/listener.log" && break; sleep 0.1; done
touch "$WORK/received"

# 2. secrets: this tenant's and another tenant's, by variable and by file
mkdir -p "$WORK/secrets/$TENANT" "$WORK/secrets/$OTHER"
OWN_VAR=$(lt_secret_env "$TENANT" PW) OTHER_VAR=$(lt_secret_env "$OTHER" PW)
export "$OWN_VAR=own-env-$RUN" "$OTHER_VAR=other-env-$RUN"
printf 'own-file-%s\n' "$RUN" >"$WORK/secrets/$TENANT/pw"
printf 'other-file-%s\n' "$RUN" >"$WORK/secrets/$OTHER/pw"
ln -s "../$OTHER/pw" "$WORK/secrets/$TENANT/link"
ln -s /proc/self/environ "$WORK/secrets/$TENANT/environ"
account() { # account ID REFERENCE-KEY REFERENCE
  psqlq "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES ('$TENANT', '$1', 'imap',
    '{\"host\":\"127.0.0.1\",\"port\":$LPORT,\"username\":\"u-$1\",\"$2\":\"$3\",\"folders\":[\"INBOX\"]}'::jsonb)" >/dev/null
}
account s3key password_env LATTICE_S3_SECRET_ACCESS_KEY
account environ password_file /proc/self/environ
account environ-link password_file environ
account dotdot password_file "../$OTHER/pw"
account absolute password_file "$WORK/secrets/$OTHER/pw"
account link password_file link
account other-env password_env "$OTHER_VAR"
account own-env password_env "$OWN_VAR"
account own-file password_file pw
cleanup_rows() { psqlq "DELETE FROM mail_accounts WHERE tenant_id = '$TENANT'" >/dev/null 2>&1 || true; }
trap 'cleanup_rows; cleanup' EXIT

# 3. the worker: own topic and group; the listener's certificate as its CA
CMD_TOPIC=$("$HERE/../../deploy/local/stack" topic "test.worker-secrets.$RUN.cmd" 1)
LATTICE_TOPIC_COMMANDS=$CMD_TOPIC LATTICE_WORKER_GROUP_ID=test-$RUN LATTICE_WORKER_ID=test-$RUN \
LATTICE_KAFKA_AUTO_OFFSET_RESET=earliest LATTICE_TLS_CA_FILE=$WORK/cert.pem LATTICE_LOG_FORMAT=text \
LATTICE_WORKER_RETRY_BASE_MS=200 LATTICE_SECRETS_DIR=$WORK/secrets \
  "$BUILD/worker/lattice-worker" >"$WORK/worker.log" 2>&1 &
WPID=$!
lt_wait_assigned "$WORK/worker.log"

run() { # run ACCOUNT -> the final status event
  lt_imap_command "$CMD_TOPIC" "c-$RUN-$1" "$TENANT" "$1" incremental
  lt_wait_status --final lattice.mail.sync.status.v1 "c-$RUN-$1" "$WORK/worker.log"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"; }
refused() { # refused ACCOUNT REASON-PART
  local s
  s=$(run "$1")
  check "$1: failed ($s)" [ "$(field "$s" result)" = failed ]
  check "$1: final" [ "$(field "$s" error_class)" = final ]
  check "$1: reason names the rule" grep -qF -- "$2" <<<"$(field "$s" error)"
}
refused s3key "must name a variable of this tenant, ${OWN_VAR%PW}<NAME>"
refused environ "must be a name relative to the tenant's secrets directory"
refused environ-link "password_file \"environ\" is not a readable file in the tenant's secrets directory"
refused dotdot "must be a name relative to the tenant's secrets directory"
refused absolute "must be a name relative to the tenant's secrets directory"
refused link "password_file \"link\" is not a readable file in the tenant's secrets directory"
refused other-env "must name a variable of this tenant"

# the same account with its own secrets: sent (the listener hears LOGIN)
s=$(run own-env)
check "own variable: the listener refused it ($s)" [ "$(field "$s" error_class)" = reauth ]
check "own variable sent" grep -qF "own-env-$RUN" "$WORK/received"
s=$(run own-file)
check "own file: the listener refused it ($s)" [ "$(field "$s" error_class)" = reauth ]
check "own file sent" grep -qF "own-file-$RUN" "$WORK/received"

# nothing else reached the listener: no LOGIN of a refused account, no secret
for a in s3key environ environ-link dotdot absolute link other-env; do
  check "$a: no LOGIN" bash -c "! grep -qE 'u-$a[\" ]' '$WORK/received'"
done
check "S3 secret never sent" bash -c "! grep -qF -- \"\$LATTICE_S3_SECRET_ACCESS_KEY\" '$WORK/received'"
check "another tenant's file never sent" bash -c "! grep -qF 'other-file-$RUN' '$WORK/received'"
check "another tenant's variable never sent" bash -c "! grep -qF 'other-env-$RUN' '$WORK/received'"
check "no environment block sent" bash -c "! grep -qaF 'LATTICE_PG_PASSWORD=' '$WORK/received'"
check "no secret in the worker log" bash -c "! grep -qF -e \"\$LATTICE_S3_SECRET_ACCESS_KEY\" -e 'other-file-$RUN' -e 'other-env-$RUN' -e 'own-env-$RUN' -e 'own-file-$RUN' '$WORK/worker.log'"
[ "$fail" = 0 ] || { echo "--- worker log"; tail -30 "$WORK/worker.log"; echo "--- listener"; cat "$WORK/listener.log"; }
lt_summary test_worker_secrets
