#!/usr/bin/env bash
# tests/integration/lib/mailbox_state.py against the real Dovecot and Gmail
# emulator of the stack, with rows in a throwaway schema (a minimal emails
# table: the columns the checker reads): its self-test; a folder with three
# messages, one flagged, one expunged, matched by rows written as the parser
# would (exit 0); then each kind of difference (a flag, an expunged message
# still live, a missing row, a deleted row of a present message, unset
# flags) gives exit 1 and names the message; the same for a Gmail mailbox
# (labels, a trashed message); a wrong password gives exit 2.
set -euo pipefail
BUILD=${1:?build dir}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
lt_require LATTICE_PG_DSN LATTICE_CA_FILE LATTICE_TEST_IMAP_HOST LATTICE_TEST_IMAP_PORT \
  LATTICE_TEST_IMAP_USER LATTICE_TEST_IMAP_PASSWORD LATTICE_TEST_GMAIL_URL
MS="$HERE/lib/mailbox_state.py"
FOLDER="mbstate-$RUN-Entwürfe"
SCHEMA=lattice_test_mbstate_$RUN
GUSER="mbstate-$RUN@example.test"
WORK=$(mktemp -d)
cleanup() {
  lt_imap_delete "$FOLDER"
  lt_gmail_ctl DELETE "/users/$GUSER" >/dev/null 2>&1 || true
  psqlq "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
check "self-test" python3 "$MS" self-test

psqlq "CREATE SCHEMA $SCHEMA; CREATE TABLE $SCHEMA.emails (tenant_id text, account_id text,
  provider_message_id text, provider text, deleted_at timestamptz, flags text[], labels text[])" >/dev/null
export LATTICE_PG_DSN="$LATTICE_PG_DSN options=-csearch_path=$SCHEMA"
sql() { psqlq "$1" >/dev/null; }

# --- IMAP ---------------------------------------------------------------------
python3 "$HERE/lib/imap_tool.py" create "$FOLDER" >/dev/null
python3 "$HERE/lib/imap_tool.py" append "$FOLDER" --count 3 --seed "$RUN" >/dev/null
UV=$(python3 "$HERE/lib/imap_tool.py" uidvalidity "$FOLDER")
python3 - "$FOLDER" <<'EOF'
import base64, imaplib, os, ssl, sys
c = imaplib.IMAP4_SSL(os.environ["LATTICE_TEST_IMAP_HOST"], int(os.environ["LATTICE_TEST_IMAP_PORT"]),
                      ssl_context=ssl.create_default_context(cafile=os.environ["LATTICE_CA_FILE"]))
c.login(os.environ["LATTICE_TEST_IMAP_USER"], os.environ["LATTICE_TEST_IMAP_PASSWORD"])
name = sys.argv[1]
def mutf7(n):
    out, buf = [], []
    def flush():
        if buf:
            out.append("&" + base64.b64encode("".join(buf).encode("utf-16-be")).decode().rstrip("=").replace("/", ",") + "-"); buf.clear()
    for ch in n:
        if 0x20 <= ord(ch) <= 0x7e: flush(); out.append("&-" if ch == "&" else ch)
        else: buf.append(ch)
    flush(); return "".join(out)
assert c.select('"%s"' % mutf7(name))[0] == "OK"
assert c.uid("STORE", "1", "+FLAGS", "(\\Flagged $Label1)")[0] == "OK"
assert c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")[0] == "OK"
assert c.expunge()[0] == "OK"
c.logout()
EOF
ID() { printf '%s;UIDVALIDITY=%s;UID=%s' "$FOLDER" "$UV" "$1"; }
ACC=acc-$RUN
# appended messages carry \Recent for this session at most; the checker ignores it
sql "INSERT INTO emails VALUES
  ('t', '$ACC', '$(ID 1)', 'imap', NULL, '{\\\\Flagged,\$Label1}', NULL),
  ('t', '$ACC', '$(ID 2)', 'imap', NULL, '{}', NULL),
  ('t', '$ACC', '$(ID 3)', 'imap', now(), '{\\\\Deleted}', NULL),
  ('t', '$ACC', 'Other;UIDVALIDITY=1;UID=9', 'imap', NULL, NULL, NULL)"
imap() { python3 "$MS" imap --host "$LATTICE_TEST_IMAP_HOST" --port "$LATTICE_TEST_IMAP_PORT" \
  --user "$LATTICE_TEST_IMAP_USER" --password-env LATTICE_TEST_IMAP_PASSWORD --folder "$FOLDER" \
  --account-id "$ACC" "$@" >"$WORK/out" 2>&1; }
st=0; imap || st=$?
check "imap: a match exits 0 ($(head -c 300 "$WORK/out"))" test "$st" = 0

sql "UPDATE emails SET flags = '{\\\\Seen}' WHERE provider_message_id = '$(ID 2)'"
st=0; imap || st=$?
check "imap: an extra flag exits 1" test "$st" = 1
check "imap: ... naming the message and the flag" grep -q "UID=2: flags differ.*extra {.Seen}" "$WORK/out"
sql "UPDATE emails SET flags = '{}' WHERE provider_message_id = '$(ID 2)'"

sql "UPDATE emails SET deleted_at = NULL WHERE provider_message_id = '$(ID 3)'"
st=0; imap || st=$?
check "imap: an expunged message still live exits 1" test "$st" = 1
check "imap: ... naming it" grep -q "UID=3: live in emails_live, but not in the mailbox" "$WORK/out"
sql "UPDATE emails SET deleted_at = now() WHERE provider_message_id = '$(ID 3)'"

sql "UPDATE emails SET deleted_at = now() WHERE provider_message_id = '$(ID 1)'"
st=0; imap || st=$?
check "imap: a deleted row of a present message exits 1" test "$st" = 1
check "imap: ... naming it" grep -q "UID=1: in the mailbox, but its row is deleted" "$WORK/out"
sql "UPDATE emails SET deleted_at = NULL, flags = NULL WHERE provider_message_id = '$(ID 1)'"
st=0; imap || st=$?
check "imap: unset flags exit 1" test "$st" = 1
st=0; imap --allow-unset || st=$?
check "imap: unset flags with --allow-unset exit 0" test "$st" = 0
sql "DELETE FROM emails WHERE provider_message_id = '$(ID 1)'"
st=0; imap || st=$?
check "imap: a missing row exits 1" test "$st" = 1
check "imap: ... naming it" grep -q "UID=1: in the mailbox, no row in emails" "$WORK/out"
st=0; python3 "$MS" imap --host "$LATTICE_TEST_IMAP_HOST" --port "$LATTICE_TEST_IMAP_PORT" \
  --user "$LATTICE_TEST_IMAP_USER" --password wrong --folder "$FOLDER" --account-id "$ACC" \
  >"$WORK/out" 2>&1 || st=$?
check "imap: a wrong password exits 2" test "$st" = 2

# --- Gmail emulator --------------------------------------------------------------
lt_gmail_ctl POST /users "{\"email\":\"$GUSER\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"c-$RUN\",\"client_secret\":\"s\"}" >/dev/null
raw() { printf 'From: a@example.test\r\nSubject: %s\r\n\r\nbody\r\n' "$1" | base64 -w0; }
G1=$(lt_gmail_ctl POST "/users/$GUSER/messages" "{\"raw\":\"$(raw one)\",\"labelIds\":[\"INBOX\",\"UNREAD\"]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
G2=$(lt_gmail_ctl POST "/users/$GUSER/messages" "{\"raw\":\"$(raw two)\",\"labelIds\":[\"INBOX\"]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
lt_gmail_ctl POST "/users/$GUSER/messages/$G2/trash" >/dev/null
GACC=gacc-$RUN
sql "INSERT INTO emails VALUES ('t', '$GACC', '$G1', 'gmail', NULL, NULL, '{UNREAD,INBOX}'),
  ('t', '$GACC', '$G2', 'gmail', now(), NULL, '{INBOX,TRASH}')"
gmail() { python3 "$MS" gmail --emulator-url "$LATTICE_TEST_GMAIL_URL" --user "$GUSER" \
  --account-id "$GACC" "$@" >"$WORK/out" 2>&1; }
st=0; gmail || st=$?
check "gmail: a match exits 0 ($(head -c 300 "$WORK/out"))" test "$st" = 0
st=0; gmail --include-spam-trash || st=$?
check "gmail: trash counted as present: the deleted row differs" test "$st" = 1
sql "UPDATE emails SET labels = '{INBOX}' WHERE provider_message_id = '$G1'"
st=0; gmail || st=$?
check "gmail: a missing label exits 1" test "$st" = 1
check "gmail: ... naming it" grep -q "$G1: labels differ.*missing {UNREAD}" "$WORK/out"

lt_summary test_mailbox_state
