"""The WebSocket fan-out clients, in their own process.

``python -m bench.ws_clients PORT CLIENTS POSTS``: open CLIENTS /feed
connections, wait until the server counts them all, then POSTS times:
stamp, POST /post, and wait for every client to receive the post.  Prints
one JSON line: the seconds from each stamp to the last client's receipt.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

import websockets

TIMEOUT = 30.0


async def http(port: int, method: str, path: str, body: bytes = b"") -> str:
    """One HTTP/1.1 request on a fresh connection; the response body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                 f"\r\n".encode() + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    return data.split(b"\r\n\r\n", 1)[1].decode()


async def main(port: int, clients: int, posts: int) -> None:
    url = f"ws://127.0.0.1:{port}/feed"
    conns = []
    for _ in range(clients):
        conns.append(await websockets.connect(url, max_queue=None,
                                              compression=None))
    deadline = time.monotonic() + TIMEOUT
    while int(await http(port, "GET", "/ready")) < clients:
        if time.monotonic() > deadline:
            raise SystemExit("server never counted every client")
        await asyncio.sleep(0.01)

    times = []
    for i in range(posts):
        body = json.dumps({"post": i, "title": "hello"}).encode()
        waits = [asyncio.ensure_future(c.recv()) for c in conns]
        await asyncio.sleep(0)          # every recv is now waiting
        t0 = time.perf_counter()
        await http(port, "POST", "/post", body)
        last = 0.0
        for fut in asyncio.as_completed(waits, timeout=TIMEOUT):
            await fut
            last = time.perf_counter()
        times.append(last - t0)
        await asyncio.sleep(0.02)       # let both sides settle
    print(json.dumps({"times": times}), flush=True)
    for c in conns:
        await c.close()


if __name__ == "__main__":
    asyncio.run(main(*map(int, sys.argv[1:4])))
