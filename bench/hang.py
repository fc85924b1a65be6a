"""Tools for bench/run-hang.sh.

  python3 hang.py server PORT          a backend that accepts, reads, and never answers
  python3 hang.py clients URL N        N clients, each sending GET URL and waiting for the
                                       answer (or 30 s), over and over, waiting as long as
                                       an answer's Retry-After says, give or take a half
                                       (as well-behaved clients do); prints how many answers came back by status
                                       when stopped (SIGTERM)
"""
import asyncio
import collections
import random
import signal
import sys
import urllib.parse


async def serve(port):
    async def hold(reader, writer):
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


async def clients(url, n):
    u = urllib.parse.urlsplit(url)
    statuses = collections.Counter()
    request = f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode()

    async def one():
        await asyncio.sleep(random.uniform(0, 1))
        while True:
            try:
                reader, writer = await asyncio.open_connection(u.hostname, u.port)
                while True:
                    writer.write(request)
                    line = await asyncio.wait_for(reader.readline(), 30)
                    if not line:
                        break
                    statuses[line.split()[1].decode()] += 1
                    length, wait = 0, 0
                    while (h := await reader.readline()) not in (b"\r\n", b""):
                        name, _, value = h.partition(b":")
                        if name.lower() == b"content-length":
                            length = int(value)
                        elif name.lower() == b"retry-after":
                            wait = int(value)
                    await reader.readexactly(length)
                    # Clients are not synchronised: each waits Retry-After, give or take a half.
                    await asyncio.sleep(wait * random.uniform(0.5, 1.5))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.1)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    print(dict(statuses), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        asyncio.run(clients(sys.argv[2], int(sys.argv[3])))
