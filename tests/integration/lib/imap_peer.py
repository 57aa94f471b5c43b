#!/usr/bin/env python3
"""A scripted IMAPS peer for lattice-watcher's tests (not part of the product).
Serves connections one after the other on BIND:PORT (127.0.0.1) with the given
certificate and writes what the client sent, one line per command, to
TRANSCRIPT ("C<n> <line>" with n the connection number; "C<n> connected").

  --mode noidle  no IDLE capability: every NOOP is answered OK, the third NOOP
                 of a connection first reports "* 4 EXISTS"
  --mode deaf    IDLE advertised: IDLE gets "+ idling", DONE is never answered
"""
import argparse, socket, ssl, sys


def serve(conn, n, mode, log):
    f = conn.makefile("rwb", buffering=0)
    def send(s):
        f.write(s.encode() + b"\r\n")
    caps = "IMAP4rev1 AUTH=PLAIN" + (" IDLE" if mode == "deaf" else "")
    send("* OK peer ready")
    noops = 0
    while True:
        line = f.readline()
        if not line:
            return
        line = line.decode(errors="replace").rstrip("\r\n")
        parts = line.split(" ", 2)
        shown = line if not (len(parts) > 1 and parts[1].upper() in ("LOGIN",)) else parts[0] + " LOGIN ..."
        log.write("C%d %s\n" % (n, shown)); log.flush()
        if line == "DONE":
            continue  # deaf: never answered
        tag, cmd = parts[0], (parts[1].upper() if len(parts) > 1 else "")
        if cmd == "CAPABILITY":
            send("* CAPABILITY " + caps); send(tag + " OK done")
        elif cmd == "AUTHENTICATE":
            send("+ ")
            f.readline()  # the credentials: not logged
            send(tag + " OK logged in")
        elif cmd == "LOGIN":
            send(tag + " OK logged in")
        elif cmd == "EXAMINE":
            send("* 3 EXISTS"); send("* OK [UIDVALIDITY 7] ok"); send(tag + " OK [READ-ONLY] done")
        elif cmd == "NOOP":
            noops += 1
            if noops == 3:
                send("* 4 EXISTS")
            send(tag + " OK done")
        elif cmd == "IDLE":
            send("+ idling")
        elif cmd == "LOGOUT":
            send("* BYE"); send(tag + " OK bye"); return
        else:
            send(tag + " BAD unknown")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mode", choices=["noidle", "deaf"], required=True)
    p.add_argument("--transcript", required=True)
    p.add_argument("--bind", default="127.0.0.1")
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(8)
    n = 0
    with open(a.transcript, "a") as log:
        while True:
            raw, _ = s.accept()
            n += 1
            log.write("C%d connected\n" % n); log.flush()
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    serve(conn, n, a.mode, log)
            except (OSError, ssl.SSLError) as e:
                log.write("C%d closed: %s\n" % (n, e)); log.flush()
            else:
                log.write("C%d closed\n" % n); log.flush()


if __name__ == "__main__":
    sys.exit(main())
