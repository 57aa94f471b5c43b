#!/usr/bin/env python3
"""fault_proxy: a TCP forwarder in front of one server that a test can
freeze, for faults the shared stack must not suffer.

  fault_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT PIDFILE

SIGUSR1 freezes it: nothing is forwarded any more, either way, on the open
connections and on new ones (accepted, then left silent), as a server
stopped with SIGSTOP or a network black hole (no RST). SIGUSR2 thaws it:
forwarding goes on where it stopped. Standard library only.
"""
import asyncio
import os
import signal
import sys


class Proxy:
    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.running = asyncio.Event()
        self.running.set()

    async def pump(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.running.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(self, creader, cwriter):
        await self.running.wait()
        try:
            sreader, swriter = await asyncio.open_connection(self.host, self.port)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self.pump(creader, swriter), self.pump(sreader, cwriter))


async def main():
    listen, target, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    p = Proxy(target)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, p.running.clear)
    loop.add_signal_handler(signal.SIGUSR2, p.running.set)
    server = await asyncio.start_server(p.handle, "127.0.0.1", listen)
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
