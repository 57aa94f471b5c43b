#!/usr/bin/env python3
"""s3_fault_proxy: an HTTP proxy in front of an S3 server (the stack's MinIO)
that answers some requests itself, for the object store's faults a test
cannot ask of the shared server.

  s3_fault_proxy.py --upstream HOST:PORT --port-file F --log F

Listens on a free 127.0.0.1 port (written to --port-file once listening) and
forwards every request as it came (the Host header too: the signature holds).
A test arms faults with a request to the proxy itself:

  GET /_fault/slowdown?n=N   the next N object requests (PUT, GET, HEAD) are
                             answered 503 SlowDown, not forwarded;
  GET /_fault/drop?n=N       the next N PUTs are forwarded and stored, but
                             their answers never reach the client: the
                             connection stays open and silent (an answer lost
                             in the network, no reset);
  GET /_fault/state          "slowdown=N drop=N" still armed.

Each fault and each forwarded request is a line in --log ("slowdown PUT
/bucket/key", "drop PUT /bucket/key stored 200", "pass PUT /bucket/key
200"). Standard library only. Runs until killed.
"""
import argparse
import http.client
import http.server
import os
import socketserver
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
       "upgrade", "expect"}
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


class State:
    def __init__(self, upstream, log):
        self.host, port = upstream.rsplit(":", 1)
        self.port = int(port)
        self.mu = threading.Lock()
        self.slowdown = 0
        self.drop = 0
        self.log = open(log, "a", buffering=1)

    def take(self, what):
        with self.mu:
            n = getattr(self, what)
            if n > 0:
                setattr(self, what, n - 1)
                return True
            return False

    def note(self, line):
        with self.mu:
            self.log.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(min(1 << 20, n - len(data)))
            if not chunk:
                break
            data += chunk
        return data

    def answer(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self):
        st = self.server.st
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        what = u.path[len("/_fault/"):]
        if what in ("slowdown", "drop"):
            with st.mu:
                setattr(st, what, int(q.get("n", ["1"])[0]))
        with st.mu:
            text = "slowdown=%d drop=%d\n" % (st.slowdown, st.drop)
        self.answer(200, text.encode(), [("Content-Type", "text/plain")])

    def handle_any(self):
        st = self.server.st
        if self.path.startswith("/_fault/"):
            self.body()
            return self.control()
        data = self.body()
        object_request = self.path.count("/") >= 2 and self.command in ("PUT", "GET", "HEAD")
        if object_request and st.take("slowdown"):
            st.note("slowdown %s %s" % (self.command, self.path))
            return self.answer(503, SLOWDOWN, [("Content-Type", "application/xml"),
                                              ("Retry-After", "1")])
        drop = self.command == "PUT" and object_request and st.take("drop")
        c = http.client.HTTPConnection(st.host, st.port, timeout=120)
        c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in HOP and k.lower() != "content-length":
                c.putheader(k, v)
        if data or self.command in ("PUT", "POST"):
            c.putheader("Content-Length", str(len(data)))
        c.endheaders(data if data else None)
        r = c.getresponse()
        rbody = r.read()
        c.close()
        if drop:
            st.note("drop %s %s stored %d" % (self.command, self.path, r.status))
            # silent from now on: hold the connection until the client leaves
            self.close_connection = True
            try:
                while self.rfile.read(1):
                    pass
            except OSError:
                pass
            return
        st.note("pass %s %s %d" % (self.command, self.path, r.status))
        head = self.command == "HEAD"  # its Content-Length is the object's: kept
        hdrs = [(k, v) for k, v in r.getheaders()
                if k.lower() not in HOP and (head or k.lower() != "content-length")]
        self.send_response(r.status)
        for k, v in hdrs:
            self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(rbody)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(rbody)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    a = p.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.st = State(a.upstream, a.log)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
