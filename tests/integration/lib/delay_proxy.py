#!/usr/bin/env python3
"""A TCP proxy that delays the server's answers: a distant server for tests.

    delay_proxy.py --upstream HOST:PORT --delay-ms N --port-file F --log F

Listens on a free 127.0.0.1 port (written to --port-file once listening).
Every chunk the server sends reaches the client N ms after it arrived
(pipelined: a delay, not a cap on throughput). The client's bytes pass at
once; their HTTP request lines and Expect headers are appended to --log
("PUT /bucket/key", "Expect: 100-continue") so a test can see what the
client sent. Runs until killed.
"""
import argparse
import asyncio
import re

REQ = re.compile(rb"^(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.1\r?$", re.M)
EXPECT = re.compile(rb"^Expect:[ \t]*(\S*)\r?$", re.M | re.I)


async def pipe_up(reader, writer, log):
    while data := await reader.read(65536):
        # headers of small requests arrive whole in one read, good enough for a test
        for m in REQ.finditer(data):
            log.write("%s %s\n" % (m.group(1).decode(), m.group(2).decode(errors="replace")))
        for m in EXPECT.finditer(data):
            log.write("Expect: %s\n" % m.group(1).decode(errors="replace"))
        log.flush()
        writer.write(data)
        await writer.drain()
    writer.close()


async def pipe_down(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(sender())
    while data := await reader.read(65536):
        queue.put_nowait((loop.time() + delay, data))
    queue.put_nowait((loop.time() + delay, None))
    await task


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    log = open(a.log, "a")

    async def handle(creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection(host, int(port))
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pipe_up(creader, uwriter, log),
                             pipe_down(ureader, cwriter, a.delay_ms / 1000.0),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    with open(a.port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


asyncio.run(main())
