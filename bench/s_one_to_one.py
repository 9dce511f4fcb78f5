"""1→1 in one thread: broadcast one small dict to one member, receive it.

Every system does the same loop: publish the payload on channel "c", then
take it out of the one subscriber's queue without waiting.  The message is
a fresh object per publish where the system makes one (our Message, the
naive tuple), and the payload dict is the same object each time.
"""
from __future__ import annotations

import queue

from . import deps
from .harness import OURS, Settings, Table, Target, Timer, measure, \
    speed_table
from .peers import LockedPubSub, NaiveBox, NaivePubSub

NAME = "one_to_one"
TITLE = "1→1 in one thread: broadcast a small dict, recv_nowait it"

PAYLOAD = {"id": 42, "title": "hello", "tags": ["a", "b"]}

TARGETS = {
    "naive Python": Target(2.0),
    "naive Python + Lock": Target(4.0),
    "pyzmq inproc (bytes)": Target(10.0),
    "queue.SimpleQueue (floor)": Target(0.55),
}


def case_ours(n: int) -> float:
    import pubsub

    with pubsub.Mailbox() as mb:
        mb.join("c")
        broadcast, recv = pubsub.broadcast, mb.recv_nowait
        payload = PAYLOAD
        with Timer() as t:
            for _ in range(n):
                broadcast("c", "post", payload)
                recv()
    return t.seconds


def naive_case(ps: NaivePubSub):
    def case(n: int) -> float:
        box = NaiveBox()
        ps.join("c", box)
        broadcast, recv = ps.broadcast, box.popleft
        payload = PAYLOAD
        with Timer() as t:
            for _ in range(n):
                broadcast("c", "post", payload)
                recv()
        ps.leave("c", box)
        return t.seconds
    return case


def case_simplequeue(n: int) -> float:
    q = queue.SimpleQueue()
    put, get = q.put, q.get_nowait
    payload = PAYLOAD
    with Timer() as t:
        for _ in range(n):
            put(payload)
            get()
    return t.seconds


def zmq_cases(zmq) -> dict:
    """Inproc PUB/SUB, with the payload pickled and as ready-made bytes."""
    import itertools
    import pickle

    ctx = zmq.Context.instance()
    names = itertools.count()

    def pair():
        pub = ctx.socket(zmq.PUB)
        sub = ctx.socket(zmq.SUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        # A fresh name each time: a closed socket's inproc name can
        # outlive it for a moment, and ids are reused.
        addr = f"inproc://one2one-{next(names)}"
        pub.bind(addr)
        sub.connect(addr)
        sub.setsockopt(zmq.SUBSCRIBE, b"c")
        # A subscription reaches the publisher asynchronously: probe until
        # one gets through (bounded), then drain the probes.
        for _ in range(1000):
            pub.send(b"c probe")
            if sub.poll(10):
                break
        while sub.poll(0):
            sub.recv()
        return pub, sub

    def case_pickled(n: int) -> float:
        pub, sub = pair()
        send, recv = pub.send_multipart, sub.recv_multipart
        dumps, loads, payload = pickle.dumps, pickle.loads, PAYLOAD
        with Timer() as t:
            for _ in range(n):
                send([b"c", dumps(payload)])
                loads(recv()[1])
        pub.close(0)
        sub.close(0)
        return t.seconds

    def case_bytes(n: int) -> float:
        pub, sub = pair()
        send, recv = pub.send, sub.recv
        data = b"c" + pickle.dumps(PAYLOAD)
        with Timer() as t:
            for _ in range(n):
                send(data)
                recv()
        pub.close(0)
        sub.close(0)
        return t.seconds

    return {"pyzmq inproc (bytes)": case_bytes,
            "pyzmq inproc (pickled dict)": case_pickled}


def blinker_case(blinker):
    """A blinker signal whose receiver queues what it is sent."""
    def case(n: int) -> float:
        import collections

        signal = blinker.Signal()
        box = collections.deque()

        def receiver(sender, topic, payload):
            box.append((sender, topic, payload))

        signal.connect(receiver)
        send, recv = signal.send, box.popleft
        payload = PAYLOAD
        with Timer() as t:
            for _ in range(n):
                send(None, topic="post", payload=payload)
                recv()
        signal.disconnect(receiver)
        return t.seconds
    return case


def run(settings: Settings) -> list[Table]:
    cases = {
        OURS: case_ours,
        "naive Python": naive_case(NaivePubSub()),
        "naive Python + Lock": naive_case(LockedPubSub()),
        "queue.SimpleQueue (floor)": case_simplequeue,
    }
    missing = {}
    zmq = deps.need("zmq")
    if isinstance(zmq, str):
        missing["pyzmq inproc (bytes)"] = zmq
    else:
        cases.update(zmq_cases(zmq))
    blinker = deps.need("blinker")
    if isinstance(blinker, str):
        missing["blinker"] = blinker
    else:
        cases["blinker"] = blinker_case(blinker)
    samples = measure(cases, settings)
    return [speed_table(
        TITLE, samples, targets=TARGETS, unavailable=missing,
        notes=["peer / ours: how many times longer the peer takes per "
               "message than cpubsub (higher favours cpubsub).",
               "pyzmq (bytes) sends a ready-made pickled payload and does "
               "not unpickle it: the most generous zmq row.  The pickled "
               "row pays the (de)serialisation that inproc needs to carry "
               "a dict."])]
