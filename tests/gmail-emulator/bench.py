#!/usr/bin/env python3
"""Load generator for the Gmail emulator (measures the emulator, not the connector).

  bench.py [--users 16] [--messages 2000] [--size 8192] [--procs 4] [--conns 4]
           [--duration 10] [--latency-ms 0] [--rate-per-user 0] [--format raw]
           [--batch 0] [--quota 0]

Starts its own emulator (throwaway self-signed cert) unless --port is given,
creates the users, then runs --procs client processes, each with --conns
keep-alive HTTPS connections per user, doing messages.get (or batches of
--batch gets) for random ids.  --rate-per-user paces each user (messages/s);
0 = as fast as possible.  Prints requests/s, messages/s, p50/p99 latency,
status counts and the emulator's own counters.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))


def ctl(port, ctx, method, path, obj=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=600)
    c.request(method, "/_emulator" + path, body=json.dumps(obj) if obj is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return data


def token(port, ctx, i):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
    c.request("POST", "/token", body=urllib.parse.urlencode({
        "grant_type": "refresh_token", "client_id": "bench", "client_secret": "bench",
        "refresh_token": "rt-%d" % i}), headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    tok = json.loads(r.read())["access_token"]
    c.close()
    return tok


def worker(args, port, cafile, users, out_q):
    ctx = ssl.create_default_context(cafile=cafile)
    stats = {"n": 0, "msgs": 0, "lat": [], "status": {}}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.duration

    def run(u, tok, ids):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
        rng = random.Random()
        per_conn_rate = args.rate_per_user / (args.conns * args.procs) if args.rate_per_user else 0
        next_t = time.monotonic()
        hdr = {"Authorization": "Bearer " + tok, "Accept-Encoding": "identity"}
        while time.monotonic() < stop_at:
            if per_conn_rate:
                next_t += (args.batch or 1) / per_conn_rate
                d = next_t - time.monotonic()
                if d > 0:
                    time.sleep(d)
            t0 = time.monotonic()
            try:
                if args.batch:
                    b = "batch_b"
                    body = "".join(
                        "--%s\r\nContent-Type: application/http\r\nContent-ID: <%d>\r\n\r\n"
                        "GET /gmail/v1/users/me/messages/%s?format=%s\r\n\r\n"
                        % (b, k, rng.choice(ids), args.format) for k in range(args.batch))
                    body += "--%s--\r\n" % b
                    conn.request("POST", "/batch/gmail/v1", body=body, headers=dict(
                        hdr, **{"Content-Type": "multipart/mixed; boundary=" + b}))
                else:
                    conn.request("GET", "/gmail/v1/users/me/messages/%s?format=%s&prettyPrint=false"
                                 % (rng.choice(ids), args.format), headers=hdr)
                r = conn.getresponse()
                r.read()
                st = r.status
            except Exception as e:  # noqa: BLE001 - count and reconnect
                st = type(e).__name__
                conn.close()
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
            dt = time.monotonic() - t0
            with lock:
                stats["n"] += 1
                stats["msgs"] += (args.batch or 1) if st == 200 else 0
                stats["lat"].append(dt)
                stats["status"][str(st)] = stats["status"].get(str(st), 0) + 1
        conn.close()

    threads = []
    for (u, tok, ids) in users:
        for _ in range(args.conns):
            t = threading.Thread(target=run, args=(u, tok, ids))
            t.start()
            threads.append(t)
    for t in threads:
        t.join()
    out_q.put(stats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--conns", type=int, default=2, help="connections per user per process")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--rate-per-user", type=float, default=0)
    ap.add_argument("--format", default="raw")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--quota", type=float, default=0, help="units/s per user (0 = off)")
    ap.add_argument("--port", type=int, default=0, help="use a running emulator")
    ap.add_argument("--cafile")
    args = ap.parse_args()

    proc = None
    if not args.port:
        tmp = tempfile.mkdtemp(prefix="gmail-emu-bench-")
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        proc = subprocess.Popen([os.path.join(HERE, "run"), "--port", "0", "--cert", cert,
                                 "--key", key, "--state-dir", tmp, "--concurrency-limit", "0"],
                                stdout=open(os.path.join(tmp, "log"), "w"),
                                stderr=subprocess.STDOUT)
        ready = os.path.join(tmp, "gmail-emulator.ready")
        while not os.path.exists(ready):
            time.sleep(0.05)
        args.port = int(open(ready).read().strip().rsplit(":", 1)[1])
        args.cafile = cert
    ctx = ssl.create_default_context(cafile=args.cafile)
    try:
        ctl(args.port, ctx, "POST", "/config", {"latency_ms": args.latency_ms,
                                                "quota_units_per_s": args.quota,
                                                "concurrency_limit": 0})
        t0 = time.monotonic()
        users = []
        for i in range(args.users):
            addr = "bench%d@example.com" % i
            ctl(args.port, ctx, "POST", "/users", {"email": addr, "refresh_token": "rt-%d" % i,
                                                   "client_id": "bench", "client_secret": "bench"})
            g = ctl(args.port, ctx, "POST", "/users/%s/messages/generate" % addr,
                    {"count": args.messages, "size": args.size, "return_ids": True})
            users.append((addr, token(args.port, ctx, i), g["ids"]))
        print("setup: %d users x %d messages in %.1fs" % (args.users, args.messages,
                                                           time.monotonic() - t0))
        ctl(args.port, ctx, "POST", "/counters/reset")
        q = mp.Queue()
        procs = [mp.Process(target=worker, args=(args, args.port, args.cafile, users, q))
                 for _ in range(args.procs)]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        res = [q.get() for _ in procs]
        for p in procs:
            p.join()
        el = time.monotonic() - t0
        n = sum(r["n"] for r in res)
        msgs = sum(r["msgs"] for r in res)
        lat = sorted(x for r in res for x in r["lat"])
        status = {}
        for r in res:
            for k, v in r["status"].items():
                status[k] = status.get(k, 0) + v
        c = ctl(args.port, ctx, "GET", "/counters")
        print(json.dumps({
            "http_requests_per_s": round(n / el, 1), "messages_per_s": round(msgs / el, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
            "status": status, "elapsed_s": round(el, 1),
            "emulator": {k: c[k] for k in ("http_requests", "api_calls", "units_spent",
                                           "rate_limited", "max_concurrency", "bytes_sent")},
        }, indent=1))
    finally:
        if proc:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
