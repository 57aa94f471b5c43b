#!/usr/bin/env python3
"""Compare the parser's rows of one account with the mailbox itself.

End-to-end tests sync a mailbox, change it (delete, flag, relabel), let the
worker and lattice-mail-parser run, then ask: do the rows of `emails` say
what the mailbox says?

  mailbox_state.py imap --host H --port P --user U (--password PW | --password-env VAR)
                        --folder F --account-id A [--tenant-id T] [--cafile CA]
                        [--allow-unset]
  mailbox_state.py gmail --emulator-url URL --user EMAIL --account-id A [--tenant-id T]
                         [--cafile CA] [--include-spam-trash] [--allow-unset]
  mailbox_state.py self-test

imap: every message of the folder (EXAMINE, read-only) has a live row in
emails_live, by provider_message_id "FOLDER;UIDVALIDITY=V;UID=U" (the
worker's id, worker/lt_sync_imap.c); every other row of that folder (an
expunged message, an older UIDVALIDITY) is not live; flags are equal as sets,
\\Recent ignored.

gmail: every message of the emulator's mailbox (GET /_emulator/users/EMAIL/
messages; not in TRASH or SPAM unless --include-spam-trash) has a live row by
its id; every other row of the account is not live; labels are equal as sets.

A row whose flags (labels) are NULL (no change applied yet) is a difference
unless --allow-unset. Postgres: psql with LATTICE_PG_DSN and
LATTICE_PG_PASSWORD (as the shell tests do). Exit 0 when everything matches,
1 with one line per difference, 2 on a usage or connection error.
Python 3 standard library only.
"""
import argparse
import imaplib
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request


class Failure(Exception):
    """A usage or connection error (exit 2)."""


# ---- Postgres ----------------------------------------------------------------

ROWS_SQL = """
SELECT coalesce(json_agg(json_build_object(
    'id', provider_message_id, 'provider', provider, 'live', deleted_at IS NULL,
    'flags', flags, 'labels', labels)), '[]')
FROM emails WHERE account_id = :'account' AND (:'tenant' = '' OR tenant_id = :'tenant')
"""


def pg_rows(account_id, tenant_id):
    """The account's rows: [{id, provider, live, flags, labels}]."""
    dsn = os.environ.get("LATTICE_PG_DSN")
    if not dsn:
        raise Failure("LATTICE_PG_DSN is not set (eval \"$(deploy/local/stack env)\")")
    env = dict(os.environ)
    if os.environ.get("LATTICE_PG_PASSWORD"):
        env["PGPASSWORD"] = os.environ["LATTICE_PG_PASSWORD"]
    cmd = ["psql", dsn, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
           "-v", "account=" + account_id, "-v", "tenant=" + (tenant_id or ""), "-f", "-"]
    try:
        p = subprocess.run(cmd, input=ROWS_SQL, capture_output=True, text=True, env=env,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failure("psql: %s" % e)
    if p.returncode != 0:
        raise Failure("psql: %s" % p.stderr.strip())
    return json.loads(p.stdout.strip() or "[]")


# ---- comparison (pure) -----------------------------------------------------


def compare(mailbox, rows, attr, allow_unset, ignore=()):
    """mailbox: {provider_message_id: set of flags/labels} of the messages
    present; rows: the rows that belong to this mailbox (same shape as
    pg_rows). attr: "flags" or "labels". Returns a sorted list of
    differences (empty: a match)."""
    diffs = []
    by_id = {r["id"]: r for r in rows}
    for mid, want in sorted(mailbox.items()):
        want = set(want) - set(ignore)
        r = by_id.get(mid)
        if r is None:
            diffs.append("%s: in the mailbox, no row in emails" % mid)
            continue
        if not r["live"]:
            diffs.append("%s: in the mailbox, but its row is deleted (not in emails_live)" % mid)
        got = r.get(attr)
        if got is None:
            if not allow_unset:
                diffs.append("%s: %s unset (NULL) in emails, mailbox has %s"
                             % (mid, attr, fmt(want)))
            continue
        got = set(got) - set(ignore)
        if got != want:
            diffs.append("%s: %s differ: emails %s, mailbox %s (missing %s, extra %s)"
                         % (mid, attr, fmt(got), fmt(want), fmt(want - got), fmt(got - want)))
    for r in rows:
        if r["id"] not in mailbox and r["live"]:
            diffs.append("%s: live in emails_live, but not in the mailbox" % r["id"])
    return sorted(diffs)


def fmt(s):
    return "{" + ", ".join(sorted(s)) + "}"


# ---- IMAP ------------------------------------------------------------------


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imap_tool import mutf7 as mutf7_encode  # noqa: E402  (RFC 3501 5.1.3 modified UTF-7)


def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


FETCH_RE = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)")


def imap_mailbox(a):
    """{provider_message_id: flags} of the folder, as the worker names them."""
    ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else ssl.create_default_context()
    password = a.password
    if a.password_env:
        password = os.environ.get(a.password_env)
        if password is None:
            raise Failure("%s is not set" % a.password_env)
    try:
        c = imaplib.IMAP4_SSL(a.host, a.port, ssl_context=ctx, timeout=60)
    except (OSError, imaplib.IMAP4.error) as e:
        raise Failure("IMAP %s:%s: %s" % (a.host, a.port, e))
    try:
        c.login(a.user, password)
        typ, data = c.select(imap_quote(mutf7_encode(a.folder)), readonly=True)
        if typ != "OK":
            raise Failure("EXAMINE %s: %s" % (a.folder, data))
        typ, uv = c.response("UIDVALIDITY")
        if not uv or uv[0] is None:
            raise Failure("EXAMINE %s: no UIDVALIDITY" % a.folder)
        uidvalidity = int(uv[0])
        msgs = {}
        if int(data[0] or 0) > 0:
            typ, lines = c.uid("FETCH", "1:*", "(UID FLAGS)")
            if typ != "OK":
                raise Failure("UID FETCH: %s" % lines)
            for line in lines:
                if isinstance(line, tuple):
                    line = line[0]
                if not line:
                    continue
                uid, flags = None, None
                for m in FETCH_RE.finditer(line):
                    if m.group(1):
                        uid = int(m.group(1))
                    else:
                        flags = m.group(2).decode("utf-8", "replace").split()
                if uid is not None:
                    msgs["%s;UIDVALIDITY=%d;UID=%d" % (a.folder, uidvalidity, uid)] = set(flags or [])
        return msgs
    except imaplib.IMAP4.error as e:
        raise Failure("IMAP: %s" % e)
    finally:
        try:
            c.logout()
        except Exception:
            pass


def cmd_imap(a):
    mailbox = imap_mailbox(a)
    prefix = a.folder + ";UIDVALIDITY="
    rows = [r for r in pg_rows(a.account_id, a.tenant_id)
            if r["provider"] == "imap" and r["id"].startswith(prefix)]
    return mailbox, compare(mailbox, rows, "flags", a.allow_unset, ignore=("\\Recent",))


# ---- Gmail emulator ----------------------------------------------------------


def gmail_mailbox(a):
    """{id: labels} of the emulator's mailbox (spam and trash left out unless
    asked for)."""
    url = "%s/_emulator/users/%s/messages" % (a.emulator_url.rstrip("/"),
                                              urllib.parse.quote(a.user, safe="@"))
    ctx = ssl.create_default_context(cafile=a.cafile) if a.cafile else ssl.create_default_context()
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=120) as r:
            body = json.load(r)
    except (OSError, ValueError) as e:
        raise Failure("GET %s: %s" % (url, e))
    out = {}
    for m in body.get("messages", []):
        labels = set(m.get("labelIds") or [])
        if not a.include_spam_trash and labels & {"TRASH", "SPAM"}:
            continue
        out[m["id"]] = labels
    return out


def cmd_gmail(a):
    mailbox = gmail_mailbox(a)
    rows = [r for r in pg_rows(a.account_id, a.tenant_id) if r["provider"] == "gmail"]
    return mailbox, compare(mailbox, rows, "labels", a.allow_unset)


# ---- self-test -----------------------------------------------------------------


def self_test():
    """The pure parts, no server."""
    fails = []

    def eq(got, want, what):
        if got != want:
            fails.append("%s: got %r, want %r" % (what, got, want))

    eq(mutf7_encode("INBOX"), "INBOX", "ascii")
    eq(mutf7_encode("Entwürfe"), "Entw&APw-rfe", "umlaut")
    eq(mutf7_encode("a&b"), "a&-b", "ampersand")
    eq(mutf7_encode("日本語"), "&ZeVnLIqe-", "cjk")
    eq(imap_quote('a"b\\c'), '"a\\"b\\\\c"', "quote")
    row = lambda i, live=True, flags=None, labels=None: {  # noqa: E731
        "id": i, "provider": "imap", "live": live, "flags": flags, "labels": labels}
    mb = {"F;UIDVALIDITY=1;UID=1": {"\\Seen", "\\Recent"}, "F;UIDVALIDITY=1;UID=2": set()}
    ok = [row("F;UIDVALIDITY=1;UID=1", flags=["\\Seen"]), row("F;UIDVALIDITY=1;UID=2", flags=[]),
          row("F;UIDVALIDITY=1;UID=3", live=False, flags=["\\Deleted"])]
    eq(compare(mb, ok, "flags", False, ignore=("\\Recent",)), [], "match")
    bad = [row("F;UIDVALIDITY=1;UID=1", flags=["\\Seen", "\\Flagged"]),
           row("F;UIDVALIDITY=1;UID=3", flags=[])]
    d = compare(mb, bad, "flags", False, ignore=("\\Recent",))
    eq(len(d), 3, "three differences")
    eq(any("UID=2: in the mailbox, no row" in x for x in d), True, "missing row")
    eq(any("UID=3: live in emails_live" in x for x in d), True, "expunged but live")
    eq(any("extra {\\Flagged}" in x for x in d), True, "extra flag")
    eq(compare({"m": set()}, [row("m")], "flags", False), ["m: flags unset (NULL) in emails, "
                                                           "mailbox has {}"], "unset")
    eq(compare({"m": set()}, [row("m")], "flags", True), [], "unset allowed")
    eq(compare({"m": {"INBOX"}}, [row("m", live=False, labels=["INBOX"])], "labels", False),
       ["m: in the mailbox, but its row is deleted (not in emails_live)"], "deleted but present")
    for f in fails:
        print("self-test: " + f, file=sys.stderr)
    print("mailbox_state self-test: %s" % ("FAILED" if fails else "ok"))
    return 1 if fails else 0


# ---- main ------------------------------------------------------------------------


def main(argv):
    ap = argparse.ArgumentParser(
        description="Compare the parser's emails rows of an account with the mailbox "
                    "(exit 0: match, 1: differences, 2: error).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--account-id", required=True, help="emails.account_id")
    common.add_argument("--tenant-id", default="", help="emails.tenant_id (default: any)")
    common.add_argument("--cafile", default=os.environ.get("LATTICE_CA_FILE"),
                        help="CA bundle for TLS (default: $LATTICE_CA_FILE)")
    common.add_argument("--allow-unset", action="store_true",
                        help="accept rows whose flags/labels are NULL (no change applied yet)")
    im = sub.add_parser("imap", parents=[common], help="an IMAP folder")
    im.add_argument("--host", required=True)
    im.add_argument("--port", type=int, required=True)
    im.add_argument("--user", required=True)
    pw = im.add_mutually_exclusive_group(required=True)
    pw.add_argument("--password")
    pw.add_argument("--password-env", help="name of the variable holding the password")
    im.add_argument("--folder", required=True, help="UTF-8 name, as in the account's config")
    gm = sub.add_parser("gmail", parents=[common], help="a mailbox of the Gmail emulator")
    gm.add_argument("--emulator-url", required=True, help="e.g. $LATTICE_TEST_GMAIL_URL")
    gm.add_argument("--user", required=True, help="the mailbox's address")
    gm.add_argument("--include-spam-trash", action="store_true",
                    help="count messages in TRASH or SPAM as present")
    sub.add_parser("self-test", help="check the comparison and name encoding (no servers)")
    a = ap.parse_args(argv)
    if a.cmd == "self-test":
        return self_test()
    try:
        mailbox, diffs = cmd_imap(a) if a.cmd == "imap" else cmd_gmail(a)
    except Failure as e:
        print("mailbox_state: %s" % e, file=sys.stderr)
        return 2
    if diffs:
        print("mailbox_state: %d difference(s) for account %s:" % (len(diffs), a.account_id))
        for d in diffs:
            print("  " + d)
        return 1
    print("mailbox_state: account %s matches (%d message(s))" % (a.account_id, len(mailbox)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
