"""WebSocket fan-out: one post broadcast to many /feed clients.

A fresh server process (``bench.ws_server``: Starlette on uvicorn) and a
fresh client process (``bench.ws_clients``) per sample.  The clients'
process stamps the time, POSTs /post, and waits for the post on every
connection; a sample is the median over several posts of the time to the
last client.  The rows differ in what sits between /post and the
connections.  Ours is the blog's own /feed endpoint and feed hub
(examples/blog/feed.py), on the same uvicorn protocol as the helper row
(the legacy ``websockets`` one, which the helper needs); a second blog
row runs on ``websockets-sansio``, the protocol the blog itself picks.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time

from . import deps
from .harness import OURS, Settings, Table, Target, speed_table

NAME = "websocket"
TITLE = "WebSocket fan-out: one post to N /feed clients (another process)"

HELPER = "websockets.broadcast helper"
SANSIO = "cpubsub, blog hub on websockets-sansio"
MAILBOX = "mailbox per handler (blog before its hub)"
QUEUE = "asyncio.Queue per handler (no pub/sub)"
LEGACY = "websockets"               # uvicorn's legacy protocol
# Row -> (bench.ws_server variant, uvicorn WebSocket protocol).
VARIANTS = {OURS: ("blog", LEGACY), HELPER: ("helper", LEGACY),
            SANSIO: ("blog", "websockets-sansio"),
            MAILBOX: ("mailbox", LEGACY), QUEUE: ("queue", LEGACY)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_listening(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: " +
                               proc.stderr.read().decode()[-300:])
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not listen in time")


def trial(variant: tuple[str, str], clients: int, posts: int) -> float:
    """Median seconds to the last client over posts posts."""
    port = deps.free_port()
    name, protocol = variant
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.ws_server", name, str(port), protocol],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, server, 20)
        out = subprocess.run(
            [sys.executable, "-m", "bench.ws_clients", str(port),
             str(clients), str(posts)],
            cwd=ROOT, capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError("clients failed: " + out.stderr[-300:])
        times = json.loads(out.stdout.strip().splitlines()[-1])["times"]
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()
    return statistics.median(times)


def run(settings: Settings) -> list[Table]:
    clients = 100 if settings.quick else 1_000
    posts = 5 if settings.quick else 20
    missing = {}
    for module in ("websockets", "starlette", "uvicorn"):
        got = deps.need(module)
        if isinstance(got, str):
            missing = {name: got for name in VARIANTS}
    samples: dict[str, list[float]] = {}
    names = [] if missing else list(VARIANTS)
    for r in range(settings.repeats):
        k = r % max(1, len(names))
        for name in names[k:] + names[:k]:
            if name in missing:
                continue
            try:
                seconds = trial(VARIANTS[name], clients, posts)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                missing[name] = str(exc).splitlines()[-1][:200]
                samples.pop(name, None)
                continue
            samples.setdefault(name, []).append(seconds * 1e6)
    samples = {n: samples[n] for n in VARIANTS if n in samples}
    table = speed_table(
        f"{TITLE}, N = {clients:,}", samples, unit="µs to last client",
        targets={HELPER: Target(1 / 1.25)}, unavailable=missing,
        notes=[f"Each sample: the median of {posts} posts, each timed "
               "from just before the POST to the moment the client "
               "process has read the post on its last connection.",
               "cpubsub: the blog's /feed endpoint and feed hub (one "
               "mailbox and one task per server process, each post "
               "rendered once and written straight to every "
               "connection), on uvicorn's legacy websockets protocol "
               "like the helper row.  Target: ours ≤ 1.25× the helper's "
               "time, i.e. peer / ours ≥ 0.8×.",
               "The sansio row is the same blog code on uvicorn's "
               "websockets-sansio protocol, which the blog runs on: "
               "frames come from websockets' sans-I/O connection, not "
               "the broadcast helper.",
               "The per-handler rows are the shape the blog had before "
               "its hub: a task per connection awaiting its mailbox (or "
               "an asyncio.Queue, no pub/sub) and Starlette's send_text, "
               "on the legacy protocol."])
    return [table]
