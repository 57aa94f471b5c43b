#!/usr/bin/env python3
"""An IMAPS server whose FETCH answers leave a message out, for worker tests.

One folder INBOX (UIDVALIDITY 777) with UIDs 1, 2, 3. UID FETCH never returns
a body for UID 2: it is left out of the answer, or answered `BODY[] NIL` when
the login name starts with "nil-". What UID SEARCH says of UID 2 depends on
the login name:
  *exists*  UID 2 is always found: the message is there, the server just did
            not return it;
  *gone*    UID 2 is found by a search of a range to "*" (the worker's
            listing) but not by a search naming it (it was expunged since).
Any password is accepted. Every command line received is appended to the log
file (for the test to assert what the worker asked). Usage:
  imap_partial_server.py CERT KEY READY_FILE LOG_FILE
READY_FILE gets the port once the server listens.
"""
import os
import re
import socketserver
import ssl
import sys
import threading

UIDS = [1, 2, 3]
DATE = '"17-Jul-1996 02:44:25 -0700"'


def body(uid):
    return ("From: a@example.test\r\nTo: b@example.test\r\nSubject: partial %d\r\n"
            "Message-ID: <partial.%d@example.test>\r\n\r\nbody %d\r\n" % (uid, uid, uid)).encode()


def uid_set(spec):
    """The predicate of an IMAP UID set (a, a:b, a:*, comma-separated)."""
    parts = []
    for p in spec.split(","):
        if ":" in p:
            a, b = p.split(":")
            lo = int(a)
            hi = 2**32 - 1 if b == "*" else int(b)
            parts.append((min(lo, hi), max(lo, hi)))
        else:
            parts.append((int(p), int(p)))
    return lambda u: any(lo <= u <= hi for lo, hi in parts)


class Handler(socketserver.StreamRequestHandler):
    def send(self, s):
        self.wfile.write(s if isinstance(s, bytes) else s.encode())
        self.wfile.flush()

    def handle(self):
        user = ""
        self.send("* OK [CAPABILITY IMAP4rev1 LITERAL+] partial server ready\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            with LOCK:
                with open(LOG, "a") as f:
                    f.write("%s %s\n" % (user or "-", re.sub(r"^(\S+ LOGIN \S+) .*", r"\1 ***", text)))
            tag, _, rest = text.partition(" ")
            cmd = rest.upper()
            if cmd.startswith("CAPABILITY"):
                self.send("* CAPABILITY IMAP4rev1 LITERAL+\r\n%s OK done\r\n" % tag)
            elif cmd.startswith("LOGIN"):
                user = rest.split(" ")[1].strip('"')
                self.send("%s OK [CAPABILITY IMAP4rev1 LITERAL+] logged in\r\n" % tag)
            elif cmd.startswith("EXAMINE"):
                self.send("* 3 EXISTS\r\n* OK [UIDVALIDITY 777] ok\r\n* OK [UIDNEXT 4] ok\r\n"
                          "%s OK [READ-ONLY] done\r\n" % tag)
            elif cmd.startswith("UID SEARCH UID "):
                spec = rest.split(" ")[3]
                listing = "*" in spec
                found = [u for u in UIDS if uid_set(spec)(u)
                         and (u != 2 or listing or "exists" in user)]
                self.send("* SEARCH%s\r\n%s OK done\r\n" % ("".join(" %d" % u for u in found), tag))
            elif cmd.startswith("UID FETCH "):
                want = uid_set(rest.split(" ")[2])
                for n, u in enumerate(UIDS, 1):
                    if not want(u):
                        continue
                    if u == 2:
                        if user.startswith("nil-"):
                            self.send("* %d FETCH (UID 2 RFC822.SIZE 0 INTERNALDATE %s BODY[] NIL)\r\n"
                                      % (n, DATE))
                        continue
                    b = body(u)
                    self.send(b"* %d FETCH (UID %d RFC822.SIZE %d INTERNALDATE %s BODY[] {%d}\r\n"
                              % (n, u, len(b), DATE.encode(), len(b)) + b + b")\r\n")
                self.send("%s OK done\r\n" % tag)
            elif cmd.startswith("NOOP"):
                self.send("%s OK done\r\n" % tag)
            elif cmd.startswith("LOGOUT"):
                self.send("* BYE bye\r\n%s OK done\r\n" % tag)
                return
            else:
                self.send("%s BAD unknown command\r\n" % tag)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = super().get_request()
        return CTX.wrap_socket(sock, server_side=True), addr


if __name__ == "__main__":
    cert, key, ready, LOG = sys.argv[1:5]
    LOCK = threading.Lock()
    CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CTX.load_cert_chain(cert, key)
    srv = Server(("127.0.0.1", 0), Handler)
    with open(ready + ".tmp", "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(ready + ".tmp", ready)
    srv.serve_forever()
