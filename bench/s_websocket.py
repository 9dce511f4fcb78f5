"""WebSocket fan-out: one post broadcast to many /feed clients.

A fresh server process (``bench.ws_server``: Starlette on uvicorn) and a
fresh client process (``bench.ws_clients``) per sample.  The clients'
process stamps the time, POSTs /post, and waits for the post on every
connection; a sample is the median over several posts of the time to the
last client.  The two rows differ only in what sits between /post and
the connections: our pub/sub (one mailbox per feed handler, as in the
blog) or websockets' own broadcast helper with nothing in between.
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
QUEUE = "asyncio.Queue per handler (no pub/sub)"
RELAY = "cpubsub → one mailbox → helper"
VARIANTS = {OURS: "pubsub", HELPER: "helper", QUEUE: "queue",
            RELAY: "relay"}
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


def trial(variant: str, clients: int, posts: int) -> float:
    """Median seconds to the last client over posts posts."""
    port = deps.free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.ws_server", variant, str(port)],
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
    relay_note = []
    if RELAY in samples and HELPER in samples:
        ratio = (statistics.median(samples[RELAY]) /
                 statistics.median(samples[HELPER]))
        relay_note = [f"The relay row takes {ratio:.2f}× the helper's time "
                      "(the target, ≤ 1.25×, applied to it: "
                      f"{'met' if ratio <= 1.25 else 'missed'})."]
    table = speed_table(
        f"{TITLE}, N = {clients:,}", samples, unit="µs to last client",
        targets={HELPER: Target(1 / 1.25)}, unavailable=missing,
        notes=[f"Each sample: the median of {posts} posts, each timed "
               "from just before the POST to the moment the client "
               "process has read the post on its last connection.",
               "Target: ours ≤ 1.25× the helper's time, i.e. peer / ours "
               "≥ 0.8×.",
               "The asyncio.Queue row has the same per-handler shape as "
               "ours (each handler sends its own copy through the ASGI "
               "stack) with a plain queue in place of the mailbox: the "
               "gap between it and the helper is the cost of that shape, "
               "the gap between it and ours is the mailbox's.",
               "The last row puts one mailbox per server in front of the "
               "helper: pub/sub in between, one wake-up per post instead "
               "of one per client."] + relay_note)
    return [table]
