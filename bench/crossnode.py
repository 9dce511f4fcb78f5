"""The sending side of the cross-node scenarios and the child process link.

One *trial* runs one system once: start a receiver in a fresh process
(``bench.node_child``), wait until the path is proven to work (a probe got
through, or the subscriber is registered), then send COUNT small dicts
either as fast as the system takes them (throughput) or one per
millisecond, each stamped with its send time (latency).  The child reports
when the last one was decoded, or every one-way delay.

Each system sends the way its users would, and pays its own encoding:
ours the payload codec in C, the peers pickle (the fastest standard
serialiser in CPython) on the way out and unpickle on the way in.
"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import selectors
import socket
import struct
import subprocess
import sys
import time

from . import deps

SYNC_TIMEOUT = 20.0
RESULT_TIMEOUT = 120.0
RAW_BATCH = 64 * 1024
LATENCY_WARMUP = 50


class TrialError(RuntimeError):
    """A trial that could not run; its message goes into the table."""


class Child:
    """A node_child process and its JSON lines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.node_child", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.pending = b""

    def poll(self, timeout: float) -> dict | None:
        """The next JSON line, or None if none came within timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")
                tail = err.strip().splitlines()[-1:] or ["no output"]
                raise TrialError(f"receiver exited: {tail[0]}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def expect(self, key: str, timeout: float) -> dict:
        """The next line that has key, skipping others, within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.poll(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise TrialError(f"receiver sent no {key!r} within "
                                 f"{timeout:g} s")
            if key in msg:
                return msg

    def tell(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        self.sel.close()
        self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def payload(i: int, stamp: bool) -> dict:
    """The small dict every system carries; stamped with the send time."""
    p = {"id": i, "title": "hello", "tags": ["a", "b"]}
    if stamp:
        p["t"] = time.perf_counter_ns()
    return p


def paced(count: int, rate: float, send) -> None:
    """Call send(i) count times at rate per second (sleep, then spin)."""
    period = 1.0 / rate
    next_at = time.perf_counter()
    for i in range(count):
        while True:
            left = next_at - time.perf_counter()
            if left <= 0:
                break
            if left > 0.0003:
                time.sleep(left - 0.0002)
        send(i)
        next_at += period


# ---- the systems' sending sides ----

class Ours:
    """cpubsub: this process is node A; each trial's child is a node B."""

    name = "cpubsub"
    started = False
    trials = 0

    @staticmethod
    def available() -> str | None:
        return None

    @classmethod
    def start(cls) -> str:
        """Start node A once; its "host:port" for the children's seeds."""
        import pubsub

        if not cls.started:
            pubsub.start_node(name=f"bench-a-{os.getpid()}",
                              listen="127.0.0.1:0", cookie="bench-cookie")
            cls.started = True
        host, port = pubsub.listen_address()
        return f"{host}:{port}"

    def __init__(self, mode: str, count: int) -> None:
        import pubsub

        address = self.start()
        Ours.trials += 1
        self.channel = f"bench-{os.getpid()}-{Ours.trials}"
        self.watch = pubsub.Mailbox()
        pubsub.monitor(self.watch, self.channel)
        self.child = Child("cpubsub", mode, str(count), address,
                           self.channel)
        self.child.expect("ready", SYNC_TIMEOUT)
        # The member becomes visible here one link round-trip after it
        # joined there: wait for its JOIN event, then prove the path.
        deadline = time.monotonic() + SYNC_TIMEOUT
        while not pubsub.get_members(self.channel):
            if time.monotonic() > deadline:
                raise TrialError("remote member never became visible")
            try:
                self.watch.recv(timeout=0.1)
            except pubsub.Timeout:
                pass
        pubsub.broadcast(self.channel, "probe", None)
        self.child.expect("synced", SYNC_TIMEOUT)
        self.broadcast = pubsub.broadcast

    def send_many(self, count: int) -> None:
        broadcast, channel = self.broadcast, self.channel
        for i in range(count):
            broadcast(channel, "post", payload(i, False))

    def send_one(self, i: int) -> None:
        self.broadcast(self.channel, "post", payload(i, True))

    def close(self) -> None:
        self.child.close()
        self.watch.close()


class Zmq:
    """pyzmq PUB bound here, the child's SUB connected over TCP."""

    name = "pyzmq PUB/SUB (TCP)"

    @staticmethod
    def available() -> str | None:
        zmq = deps.need("zmq")
        return zmq if isinstance(zmq, str) else None

    def __init__(self, mode: str, count: int) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 0)
        port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.child = Child("zmq", mode, str(count), f"127.0.0.1:{port}")
        self.child.expect("ready", SYNC_TIMEOUT)
        deadline = time.monotonic() + SYNC_TIMEOUT
        while True:
            self.pub.send(b"p")
            msg = self.child.poll(0.01)
            if msg and "synced" in msg:
                break
            if time.monotonic() > deadline:
                raise TrialError("zmq subscription never got through")

    def send_many(self, count: int) -> None:
        send, dumps = self.pub.send, pickle.dumps
        for i in range(count):
            send(b"d" + dumps(payload(i, False)))

    def send_one(self, i: int) -> None:
        self.pub.send(b"d" + pickle.dumps(payload(i, True)))

    def close(self) -> None:
        self.child.close()
        self.pub.close(0)
        self.ctx.term()


class Redis:
    """PUBLISH from here (pipelined for throughput) to a child SUBSCRIBE."""

    name = "Redis PUBLISH/SUBSCRIBE"
    PIPE = 1_000

    @staticmethod
    def available() -> str | None:
        redis = deps.need("redis")
        if isinstance(redis, str):
            return redis
        server = deps.redis_server.start()
        return server if isinstance(server, str) else None

    def __init__(self, mode: str, count: int) -> None:
        import redis

        port = deps.redis_server.port
        self.client = redis.Redis(host="127.0.0.1", port=port)
        self.channel = f"bench-{secrets.token_hex(4)}"
        self.child = Child("redis", mode, str(count), f"127.0.0.1:{port}",
                           self.channel)
        self.child.expect("synced", SYNC_TIMEOUT)
        deadline = time.monotonic() + SYNC_TIMEOUT
        while self.client.pubsub_numsub(self.channel)[0][1] < 1:
            if time.monotonic() > deadline:
                raise TrialError("redis subscriber never registered")
            time.sleep(0.005)

    def send_many(self, count: int) -> None:
        dumps, channel = pickle.dumps, self.channel
        for start in range(0, count, self.PIPE):
            pipe = self.client.pipeline(transaction=False)
            for i in range(start, min(count, start + self.PIPE)):
                pipe.publish(channel, dumps(payload(i, False)))
            pipe.execute()

    def send_one(self, i: int) -> None:
        self.client.publish(self.channel, pickle.dumps(payload(i, True)))

    def close(self) -> None:
        self.child.close()
        self.client.close()


class Raw:
    """Length-prefixed pickled frames on one TCP connection, batched."""

    name = "raw socket relay (batched)"

    @staticmethod
    def available() -> str | None:
        return None

    def __init__(self, mode: str, count: int) -> None:
        self.child = Child("raw", mode, str(count), "127.0.0.1:0")
        host, port = self.child.expect("ready", SYNC_TIMEOUT)["ready"] \
            .rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), 5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.child.expect("synced", SYNC_TIMEOUT)

    def send_many(self, count: int) -> None:
        pack, dumps, sendall = struct.Struct("<I").pack, pickle.dumps, \
            self.sock.sendall
        buf = bytearray()
        for i in range(count):
            frame = dumps(payload(i, False))
            buf += pack(len(frame))
            buf += frame
            if len(buf) >= RAW_BATCH:
                sendall(buf)
                buf.clear()
        if buf:
            sendall(buf)

    def send_one(self, i: int) -> None:
        frame = pickle.dumps(payload(i, True))
        self.sock.sendall(struct.pack("<I", len(frame)) + frame)

    def close(self) -> None:
        self.sock.close()
        self.child.close()


class Pipe:
    """Latency floor: a raw 8-byte stamp written to the child's stdin.

    No framing, no serialisation, one os.read per message: what is left
    is the kernel waking a blocked process on the other core, plus the
    least Python can do around it.
    """

    name = "pipe wake-up (floor)"

    @staticmethod
    def available() -> str | None:
        return None

    def __init__(self, mode: str, count: int) -> None:
        self.child = Child("pipe", mode, str(count), "-")
        self.child.expect("synced", SYNC_TIMEOUT)
        self.fd = self.child.proc.stdin.fileno()

    def send_one(self, i: int) -> None:
        os.write(self.fd, time.perf_counter_ns().to_bytes(8, "little"))

    def close(self) -> None:
        self.child.close()


SYSTEMS = [Ours, Zmq, Redis, Raw]
LATENCY_SYSTEMS = SYSTEMS + [Pipe]


def stop() -> None:
    """Stop our node if a trial started it."""
    import pubsub

    if Ours.started:
        pubsub.stop_node()
        Ours.started = False


def throughput_trial(system, count: int) -> float:
    """Nanoseconds per message from the first send to the last decode."""
    trial = system("throughput", count)
    try:
        t0 = time.perf_counter()
        trial.send_many(count)
        result = trial.child.expect("done", RESULT_TIMEOUT)
    finally:
        trial.close()
    return (result["t_end"] - t0) * 1e9 / count


def latency_trial(system, count: int, rate: float) -> list[int]:
    """One-way delays in nanoseconds of count messages sent at rate/s.

    LATENCY_WARMUP more are sent first and left out: the receiver process
    has just started, and its first wake-ups pay for page faults and
    cold caches that say nothing about the steady state.
    """
    trial = system("latency", count + LATENCY_WARMUP)
    try:
        paced(count + LATENCY_WARMUP, rate, trial.send_one)
        result = trial.child.expect("done", RESULT_TIMEOUT)
    finally:
        trial.close()
    return result["delays"][LATENCY_WARMUP:]
