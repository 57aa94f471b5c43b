#!/usr/bin/env python3
"""Small IMAP helper for the worker's integration tests (stdlib imaplib over
IMAPS with the project CA): create/delete a folder, append generated
messages, print UIDVALIDITY. Not part of the product."""
import argparse, imaplib, os, ssl, sys, time
from email.message import EmailMessage


def mutf7(name):
    """RFC 3501 5.1.3 modified UTF-7."""
    import base64
    out, buf = [], []
    def flush():
        if buf:
            b = base64.b64encode("".join(buf).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b.replace("/", ",") + "-")
            buf.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def connect(a):
    ctx = ssl.create_default_context(cafile=os.environ["LATTICE_CA_FILE"])
    c = imaplib.IMAP4_SSL(os.environ["LATTICE_TEST_IMAP_HOST"],
                          int(os.environ["LATTICE_TEST_IMAP_PORT"]), ssl_context=ctx)
    c.login(os.environ["LATTICE_TEST_IMAP_USER"], os.environ["LATTICE_TEST_IMAP_PASSWORD"])
    return c


def message(i, seed, attach):
    m = EmailMessage()
    m["From"] = "Sender %d <sender%d@example.test>" % (i, i)
    m["To"] = "alice@example.test"
    m["Subject"] = "test %s message %d \u00e9t\u00e9" % (seed, i)
    m["Message-ID"] = "<%s.%d@example.test>" % (seed, i)
    m.set_content("Body of message %d (%s).\nword%d\n" % (i, seed, i))
    for k in range(attach):
        m.add_attachment(os.urandom(1000 + k), maintype="application",
                         subtype="octet-stream", filename="../../file %d-%d.bin" % (i, k))
    return m.as_bytes()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["create", "delete", "append", "uidvalidity", "append-files",
                                   "fetch-sha"])
    p.add_argument("folder")
    p.add_argument("files", nargs="*", help="append-files: .eml files, appended in this order")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--seed", default="s")
    p.add_argument("--attachments", type=int, default=0)
    p.add_argument("--size", type=int, default=0, help="pad the body to about this many bytes")
    a = p.parse_args()
    c = connect(a)
    q = '"%s"' % mutf7(a.folder)
    if a.cmd == "create":
        typ, d = c.create(q)
        if typ != "OK":
            sys.exit("create: %s" % d)
    elif a.cmd == "delete":
        c.delete(q)
    elif a.cmd == "append":
        for i in range(a.count):
            raw = message(i, a.seed, a.attachments)
            if a.size > len(raw):
                pad = (b"x" * 76 + b"\r\n") * ((a.size - len(raw)) // 78 + 1)
                raw = raw.replace(b"\n\n", b"\n\n" + pad, 1) if b"\r\n" not in raw else raw
            typ, d = c.append(q, None, imaplib.Time2Internaldate(time.time()), raw)
            if typ != "OK":
                sys.exit("append: %s" % d)
    elif a.cmd == "append-files":
        # prints "<uid> <file>" per message (UIDPLUS)
        for path in a.files:
            with open(path, "rb") as f:
                raw = f.read()
            typ, d = c.append(q, None, imaplib.Time2Internaldate(time.time()), raw)
            if typ != "OK":
                sys.exit("append %s: %s" % (path, d))
            _, codes = c.response("APPENDUID")
            print(codes[-1].split()[1].decode(), path)
    elif a.cmd == "fetch-sha":
        # prints "<uid> <size> <sha256>" of what the server serves (read-only)
        import hashlib
        typ, d = c.select(q, readonly=True)
        if typ != "OK":
            sys.exit("examine: %s" % d)
        typ, d = c.uid("SEARCH", None, "ALL")
        for uid in d[0].split():
            typ, r = c.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            body = next(x[1] for x in r if isinstance(x, tuple))
            print(uid.decode(), len(body), hashlib.sha256(body).hexdigest())
    elif a.cmd == "uidvalidity":
        typ, d = c.status(q, "(UIDVALIDITY)")
        print(d[0].decode().split("UIDVALIDITY")[1].strip(" )"))
    c.logout()


if __name__ == "__main__":
    main()
