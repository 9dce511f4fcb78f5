"""Leak checks: repeating a public operation leaves the process as it was.

Each check runs an operation many times to warm up (free lists, caches,
interned names, the mailbox rings), takes a snapshot, runs it as many
times again and takes another.  Between the two snapshots these must stay
flat, within a small slack that a leak of one object or a few bytes per
operation would exceed many times over:

- the objects the garbage collector tracks, ``len(gc.get_objects())``;
- the memory Python's allocators hold, as traced by tracemalloc;
- the C heap in use (glibc's ``mallinfo2``), where the core's own
  allocations live (rings, channels, remote messages);
- the core's counters: channels, registered mailboxes and remote messages
  alive (``_core._registry_stats()``), which must be exactly equal.

A release build of CPython has no ``sys.gettotalrefcount``; a leaked
reference keeps its object alive, which the first two measures see.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import itertools
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable

import pytest

import pubsub
from pubsub import cluster
from cluster_node import Node

ROUNDS = 2000           # operations per half of a check
OBJECT_SLACK = 40       # gc-tracked objects
TRACED_SLACK = 24_000   # bytes traced by tracemalloc
HEAP_SLACK = 32_000     # bytes of C heap


def _heap_reader() -> Callable[[], int]:
    """The C heap's bytes in use, or a constant 0 off glibc."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallinfo2"):
        return lambda: 0

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = Mallinfo2

    def read() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    return read


_heap = _heap_reader()


@dataclass(frozen=True)
class Snapshot:
    objects: int
    traced: int
    heap: int
    core: dict[str, int]


def snapshot() -> Snapshot:
    for _ in range(3):
        gc.collect()
    return Snapshot(len(gc.get_objects()), tracemalloc.get_traced_memory()[0],
                    _heap(), pubsub._core._registry_stats())


def assert_flat(op: Callable[[int], object], rounds: int = ROUNDS) -> None:
    """Run op(i) for rounds of warm-up, then rounds more between two
    snapshots, and check that nothing grew."""
    for i in range(rounds):
        op(i)
    before = snapshot()
    for i in range(rounds, 2 * rounds):
        op(i)
    after = snapshot()

    grown = {
        "objects": after.objects - before.objects,
        "traced bytes": after.traced - before.traced,
        "heap bytes": after.heap - before.heap,
    }
    report = f"after {rounds} more runs: {grown}, core {before.core} -> " \
             f"{after.core}"
    print(report)       # the figures, with pytest -s or -rP
    assert grown["objects"] <= OBJECT_SLACK, report
    assert grown["traced bytes"] <= TRACED_SLACK, report
    assert grown["heap bytes"] <= HEAP_SLACK, report
    assert after.core == before.core, report


@pytest.fixture(scope="module", autouse=True)
def _traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.fixture
def box():
    """A mailbox for the check, closed at its end."""
    made = []

    def make(*args, **kwargs):
        made.append(pubsub.Mailbox(*args, **kwargs))
        return made[-1]

    yield make
    for mb in made:
        mb.close()


PAYLOAD = {"id": 7, "tags": ["a", "b"], "body": "x" * 100}

# ---- local operations ----------------------------------------------------


def test_broadcast_and_recv(box, channel):
    mb = box()
    mb.join(channel)
    sender = box()

    def op(i):
        pubsub.broadcast(channel, "t", PAYLOAD, sender=sender)
        pubsub.local_broadcast(channel, b"bt", i)
        assert mb.recv_nowait().payload is PAYLOAD
        assert mb.recv(timeout=1).payload == i

    assert_flat(op)


def test_broadcast_to_a_bounded_mailbox_below_its_capacity(box, channel):
    """The same channel str each time (the cached path), a bounded member
    that never overflows: the room reserved for a drop is given back."""
    mb = box(capacity=8, overflow="close")
    mb.join(channel)
    other = box(capacity=8)
    other.join(channel)

    def op(i):
        pubsub.broadcast(channel, "t", i)
        assert mb.recv_nowait().payload == i
        assert other.recv_nowait().payload == i

    assert_flat(op)


def test_recv_many_and_empty(box, channel):
    mb = box()
    mb.join(channel)

    def op(i):
        for k in range(3):
            pubsub.broadcast(channel, "t", (i, k))
        assert len(mb.recv_many()) == 3
        with pytest.raises(pubsub.Empty):
            mb.recv_nowait()
        with pytest.raises(pubsub.Timeout):
            mb.recv(timeout=0)

    assert_flat(op)


def test_arecv(box, channel):
    mb = box()
    mb.join(channel)
    loop = asyncio.new_event_loop()

    async def one(i):
        pubsub.broadcast(channel, "t", i)
        assert (await mb.arecv()).payload == i
        # an empty mailbox: arecv waits on the fd, and times out
        with pytest.raises(pubsub.Timeout):
            await mb.arecv(timeout=0)

    try:
        assert_flat(lambda i: loop.run_until_complete(one(i)), rounds=500)
    finally:
        loop.close()


def test_send(box):
    mb = box()

    def op(i):
        assert pubsub.send(mb.pid, "direct", PAYLOAD, sender=mb)
        assert mb.recv_nowait().sender == mb.pid

    assert_flat(op)


def test_join_leave_dynamic_channels(box, channel):
    mb = box()
    names = itertools.count()

    def op(i):
        name = f"{channel}-{next(names)}"
        mb.join(name)
        mb.join(name)
        assert pubsub.get_members(name) == [mb.pid, mb.pid]
        assert mb.leave(name) and pubsub.leave(name, mb)
        assert not mb.leave(name)

    assert_flat(op)


def test_mailbox_create_join_close(channel):
    def op(i):
        mb = pubsub.Mailbox(capacity=4)
        mb.join(channel)
        pubsub.broadcast(channel, "t", i)
        mb.close()
        # and one dropped without close: collection makes it leave
        pubsub.Mailbox().join(f"{channel}-gc")

    assert_flat(op)


def test_overflow_policies(box, channel):
    boxes = [box(capacity=2, overflow=p)
             for p in ("drop_oldest", "drop_newest")]
    for mb in boxes:
        mb.join(channel)

    def op(i):
        pubsub.broadcast(channel, "t", [i])
        slow = pubsub.Mailbox(capacity=1, overflow="close")
        slow.join(channel)
        pubsub.broadcast(channel, "t", [i])
        pubsub.broadcast(channel, "t", [i])     # closes the slow one
        assert slow.closed
        slow.close()

    assert_flat(op)


def test_monitor_demonitor(box, channel):
    watcher = box()
    member = box()

    def op(i):
        pubsub.monitor(watcher, channel)
        pubsub.monitor(watcher)
        member.join(channel)
        member.leave(channel)
        assert len(watcher.recv_many()) == 4    # join, leave, per watch
        assert pubsub.demonitor(watcher, channel)
        assert pubsub.demonitor(watcher)

    assert_flat(op)


def test_scope_create_and_use(box, channel):
    mb = box()

    def op(i):
        # Scopes are never freed; the same name gives the same scope.
        scope = pubsub.Scope("refleak-scope")
        scope.join(channel, mb)
        scope.broadcast(channel, "t", i)
        assert scope.which_channels() == [channel]
        assert scope.leave(channel, mb)
        mb.recv_nowait()

    assert_flat(op)


def test_encode_decode():
    data = pubsub.encode(PAYLOAD)
    values = [None, True, 2**100, -1.5, "é", b"b", [1, (2, 3)],
              {"k": {1, 2}}, frozenset({"x"})]

    def op(i):
        for v in values:
            assert pubsub.decode(pubsub.encode(v)) == v
        assert pubsub.decode(data) == PAYLOAD
        with pytest.raises(pubsub.CodecError):
            pubsub.decode(data[:-1])
        with pytest.raises(TypeError):
            pubsub.encode(object())

    assert_flat(op)


def test_pids_and_messages(box):
    mb = box()

    def op(i):
        pid = mb.pid
        assert hash(pid) == hash(mb.pid) and repr(pid)
        assert sorted([pid, pid]) == [pid, pid]
        m = pubsub.Message("c", pid, "t", i)
        channel, sender, topic, payload = m
        assert m.payload == i and sender == pid

    assert_flat(op)


# ---- the cluster ---------------------------------------------------------


def _wait(mb: pubsub.Mailbox, topic: str, timeout: float = 10) -> None:
    """Receive from mb until a message with topic arrives."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {topic!r} within {timeout}s"
        if mb.recv(timeout=left).topic == topic:
            return


@pytest.fixture
def peer():
    node = Node("refleak-peer", heartbeat=0.05, timeout=2.0)
    node.call("mailbox", mb="m")
    node.call("join", mb="m", channel="refleak")
    yield node
    node.close()


@pytest.mark.slow
def test_node_start_connect_stop(peer, box):
    """start_node, link to a peer process, exchange members and
    broadcasts both ways, stop_node; again and again."""
    events = box()
    mine = box()
    mine.join("refleak")
    cluster.monitor_nodes(events)

    def op(i):
        cluster.start_node("refleak-main", cookie="test-cookie",
                           seeds=[peer.address], heartbeat=0.05,
                           timeout=2.0)
        try:
            _wait(events, pubsub.NODEUP)
            peer.call("wait_members", channel="refleak", n=2)
            pubsub.broadcast("refleak", "to-peer", PAYLOAD)
            peer.call("broadcast", channel="refleak", topic="to-main",
                      payload="[1, 'two', b'3']")
            _wait(mine, "to-main")
            got = peer.call("recv", mb="m", n=2)["messages"]
            # two senders: no order between them
            assert sorted(m[2] for m in got) == ["'to-main'", "'to-peer'"]
        finally:
            cluster.stop_node()
        _wait(events, pubsub.NODEDOWN)
        mine.recv_many()

    try:
        assert_flat(op, rounds=15)
    finally:
        cluster.demonitor_nodes(events)
    assert pubsub._core._registry_stats()["remote_messages"] == 0
