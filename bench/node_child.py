"""The receiving side of the cross-node scenarios, run in its own process.

``python -m bench.node_child SYSTEM MODE COUNT ADDRESS [CHANNEL]``

SYSTEM is cpubsub, zmq, redis, raw or pipe (or sync, for s_cluster_sync); MODE is ``throughput`` (report the
time the COUNT-th message was decoded) or ``latency`` (report each
message's one-way delay, from the send stamp it carries).  ADDRESS is
where the sending side is (host:port), or for raw where to listen (port 0).
Talks to the parent in JSON lines on stdout: {"ready": ...} once set up,
{"synced": true} once a probe or the connection shows the path works, and
the result last.  Every wait is bounded; a child that hears nothing for
60 s exits.

Clocks: perf_counter is CLOCK_MONOTONIC on Linux, one clock for every
process of the machine, so stamps from the parent compare with ours.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import sys
import time

QUIET = 60.0        # seconds without traffic before giving up


def say(**obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Collector:
    """Counts messages; in latency mode keeps each message's delay."""

    def __init__(self, mode: str, count: int) -> None:
        self.latency = mode == "latency"
        self.count = count
        self.seen = 0
        self.delays: list[int] = []
        self.t_first = 0.0

    def add(self, payload: dict) -> bool:
        """Record one decoded payload; True when all have come."""
        if self.seen == 0:
            self.t_first = time.perf_counter()
        self.seen += 1
        if self.latency:
            self.delays.append(time.perf_counter_ns() - payload["t"])
        return self.seen >= self.count

    def report(self) -> None:
        t_end = time.perf_counter()
        say(done=True, count=self.seen, t_first=self.t_first, t_end=t_end,
            delays=self.delays if self.latency else None)


def run_cpubsub(col: Collector, address: str, channel: str) -> None:
    import pubsub

    pubsub.start_node(name=f"bench-b-{channel}", listen="127.0.0.1:0",
                      cookie="bench-cookie", seeds=[address])
    mb = pubsub.Mailbox()
    mb.join(channel)
    host, port = pubsub.listen_address()
    say(ready=f"{host}:{port}")
    first = mb.recv(timeout=QUIET)          # the parent's probe
    say(synced=True)
    del first
    while True:
        msg = mb.recv(timeout=QUIET)
        if col.add(msg.payload):
            break
        done = False
        for msg in mb.recv_many():
            if col.add(msg.payload):
                done = True
                break
        if done:
            break
    col.report()


def run_zmq(col: Collector, address: str) -> None:
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://{address}")
    say(ready=address)
    if not sub.poll(int(QUIET * 1000)):
        return
    sub.recv()                              # a probe
    say(synced=True)
    loads, recv, poll = pickle.loads, sub.recv, sub.poll
    while True:
        if not poll(int(QUIET * 1000)):
            return
        data = recv()
        if data[:1] != b"d":
            continue                        # a late probe
        if col.add(loads(memoryview(data)[1:])):
            break
    col.report()
    sub.close(0)
    ctx.term()


def run_redis(col: Collector, address: str, channel: str) -> None:
    import redis

    host, port = address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    ps = client.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(channel)
    ps.get_message(timeout=5.0)             # the confirmation
    say(ready=address)
    say(synced=True)                        # parent checks NUMSUB
    loads, get = pickle.loads, ps.get_message
    while True:
        msg = get(timeout=QUIET)
        if msg is None:
            return
        if col.add(loads(msg["data"])):
            break
    col.report()
    ps.close()


def run_raw(col: Collector) -> None:
    """Length-prefixed pickled frames over one TCP connection."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(QUIET)
    say(ready=f"127.0.0.1:{lsock.getsockname()[1]}")
    conn, _ = lsock.accept()
    conn.settimeout(QUIET)
    say(synced=True)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    have = 0
    unpack, loads = struct.Struct("<I").unpack_from, pickle.loads
    while True:
        got = conn.recv_into(view[have:])
        if got == 0:
            return
        have += got
        pos = 0
        while have - pos >= 4:
            size = unpack(buf, pos)[0]
            if have - pos - 4 < size:
                break
            if col.add(loads(view[pos + 4:pos + 4 + size])):
                col.report()
                return
            pos += 4 + size
        buf[:have - pos] = buf[pos:have]
        have -= pos


def run_pipe(col: Collector) -> None:
    """The wake-up floor: 8-byte stamps through a pipe, no decoding."""
    fd = sys.stdin.fileno()
    say(ready="stdin")
    say(synced=True)
    while True:
        data = os.read(fd, 8)
        if len(data) < 8:
            return
        if col.add({"t": int.from_bytes(data, "little")}):
            break
    col.report()


def run_sync(count: int, address: str, prefix: str) -> None:
    """Hold count memberships (mailboxes of 10 channels each, over
    count / 100 channels), then start a node that joins the one at
    address, stamping the moment before start_node."""
    import pubsub

    channels = [f"{prefix}-{k}" for k in range(max(1, count // 100))]
    boxes = [pubsub.Mailbox() for _ in range(count // 10)]
    for i, mb in enumerate(boxes):
        for j in range(10):
            mb.join(channels[(i * 7 + j * 1009) % len(channels)])
    say(ready=len(channels))
    sys.stdin.readline()                    # the parent's "go"
    t_start = time.perf_counter()
    pubsub.start_node(name=f"bench-sync-{prefix}", listen="127.0.0.1:0",
                      cookie="bench-cookie", seeds=[address])
    say(started=True, t_start=t_start)
    sys.stdin.readline()                    # the parent is done
    del boxes


def main() -> None:
    system, mode, count, address = sys.argv[1:5]
    channel = sys.argv[5] if len(sys.argv) > 5 else "bench"
    if system == "sync":
        run_sync(int(count), address, channel)
        return
    col = Collector(mode, int(count))
    if system == "cpubsub":
        run_cpubsub(col, address, channel)
    elif system == "zmq":
        run_zmq(col, address)
    elif system == "redis":
        run_redis(col, address, channel)
    elif system == "raw":
        run_raw(col)
    elif system == "pipe":
        run_pipe(col)
    else:
        raise SystemExit(f"unknown system {system!r}")


if __name__ == "__main__":
    main()
