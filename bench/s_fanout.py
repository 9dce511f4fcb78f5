"""Fan-out: one broadcast to N members, then every member drained.

One operation is a publish on a channel with N subscribers followed by one
non-blocking receive from each subscriber; the tables show nanoseconds per
delivery (the operation's time divided by N).  Subscribers are made and
joined outside the timed region.  Redis runs for N ≤ 100 only: each of its
subscribers is a TCP connection of its own.
"""
from __future__ import annotations

import pickle
import statistics
import time

from . import deps
from .harness import OURS, Settings, Table, Target, Timer, measure, \
    speed_table
from .peers import NaiveBox, NaivePubSub

NAME = "fanout"
TITLE = "fan-out: one broadcast to N members, each drained"

PAYLOAD = {"id": 42, "title": "hello", "tags": ["a", "b"]}
SIZES = (1, 10, 100, 1_000, 10_000)
REDIS_MAX = 100


def ours(n_members: int):
    import pubsub

    boxes = [pubsub.Mailbox() for _ in range(n_members)]
    for mb in boxes:
        mb.join("fan")
    recvs = [mb.recv_nowait for mb in boxes]

    def case(n: int) -> float:
        broadcast, payload = pubsub.broadcast, PAYLOAD
        with Timer() as t:
            for _ in range(n):
                broadcast("fan", "post", payload)
                for recv in recvs:
                    recv()
        return t.seconds

    def close() -> None:
        for mb in boxes:
            mb.close()
    return case, close


def naive(n_members: int):
    ps = NaivePubSub()
    boxes = [NaiveBox() for _ in range(n_members)]
    for box in boxes:
        ps.join("fan", box)
    recvs = [box.popleft for box in boxes]

    def case(n: int) -> float:
        broadcast, payload = ps.broadcast, PAYLOAD
        with Timer() as t:
            for _ in range(n):
                broadcast("fan", "post", payload)
                for recv in recvs:
                    recv()
        return t.seconds
    return case, lambda: None


def zmq_inproc(zmq, n_members: int):
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, n_members + 16)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    addr = f"inproc://fan-{n_members}"
    pub.bind(addr)
    subs = []
    for _ in range(n_members):
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.connect(addr)
        sub.setsockopt(zmq.SUBSCRIBE, b"fan")
        subs.append(sub)
    # Subscriptions travel asynchronously: publish probes until every
    # subscriber has seen one (bounded), then empty every queue.
    pending = set(range(n_members))
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        pub.send(b"fan probe")
        for i in list(pending):
            if subs[i].poll(0):
                pending.discard(i)
    if pending:
        raise RuntimeError(f"{len(pending)} zmq subscribers never subscribed")
    for sub in subs:
        while sub.poll(0):
            sub.recv()
    recvs = [sub.recv for sub in subs]
    data = b"fan" + pickle.dumps(PAYLOAD)

    def case(n: int) -> float:
        send = pub.send
        with Timer() as t:
            for _ in range(n):
                send(data)
                for recv in recvs:
                    recv()
        return t.seconds

    def close() -> None:
        for sub in subs:
            sub.close(0)
        pub.close(0)
        ctx.term()
    return case, close


def redis_pubsub(redis, port: int, n_members: int):
    """N subscriber connections, one publisher; payload pickled."""
    pub = redis.Redis(host="127.0.0.1", port=port)
    subs = []
    for _ in range(n_members):
        ps = redis.Redis(host="127.0.0.1", port=port).pubsub(
            ignore_subscribe_messages=True)
        ps.subscribe("fan")
        ps.get_message(timeout=1.0)     # the subscribe confirmation
        subs.append(ps)
    deadline = time.monotonic() + 10
    while pub.pubsub_numsub("fan")[0][1] < n_members:
        if time.monotonic() > deadline:
            raise RuntimeError("redis subscribers did not register")
        time.sleep(0.01)
    data = pickle.dumps(PAYLOAD)

    def case(n: int) -> float:
        publish, loads = pub.publish, pickle.loads
        with Timer() as t:
            for _ in range(n):
                publish("fan", data)
                for ps in subs:
                    msg = ps.get_message(timeout=5.0)
                    if msg is None:
                        raise RuntimeError("redis message lost")
                    loads(msg["data"])
        return t.seconds

    def close() -> None:
        for ps in subs:
            ps.close()
        pub.close()
    return case, close


def run(settings: Settings) -> list[Table]:
    zmq = deps.need("zmq")
    redis = deps.need("redis")
    server = deps.redis_server.start() if not isinstance(redis, str) \
        else redis
    sizes = SIZES
    tables = []
    ours_at_1000 = 0.0
    for size in sizes:
        makers = {OURS: lambda: ours(size), "naive Python":
                  lambda: naive(size)}
        missing = {}
        if isinstance(zmq, str):
            missing["pyzmq inproc"] = zmq
        else:
            makers["pyzmq inproc"] = lambda: zmq_inproc(zmq, size)
        if size > REDIS_MAX:
            missing["Redis (redis-py)"] = f"run for N ≤ {REDIS_MAX} only"
        elif isinstance(server, str):
            missing["Redis (redis-py)"] = server
        else:
            makers["Redis (redis-py)"] = lambda: redis_pubsub(
                redis, server.port, size)
        cases, closers = {}, []
        for name, make in makers.items():
            try:
                case, close = make()
            except Exception as exc:          # a peer that cannot scale
                missing[name] = f"set-up failed: {exc}"
                continue
            cases[name] = case
            closers.append(close)
        try:
            samples = measure(cases, settings, per_op=size)
        finally:
            for close in closers:
                close()
        targets = {}
        if 100 <= size <= 1_000:
            targets = {"naive Python": Target(1.5),
                       "pyzmq inproc": Target(5.0)}
        notes = []
        if size == sizes[-1] and OURS in samples:
            per = statistics.median(samples[OURS])
            notes.append(
                f"no-collapse check: cpubsub's cost per delivery at N = "
                f"{size:,} is {per / ours_at_1000:.2f}× its cost at "
                f"N = 1,000." if ours_at_1000 else "")
            notes.append("pyzmq publishes ready-made bytes and its "
                         "subscribers do not unpickle; Redis subscribers "
                         "unpickle.")
        if size == 1_000 and OURS in samples:
            ours_at_1000 = statistics.median(samples[OURS])
        tables.append(speed_table(
            f"{TITLE}, N = {size:,}", samples, unit="ns/delivery",
            targets=targets, unavailable=missing, notes=notes))
    return tables
