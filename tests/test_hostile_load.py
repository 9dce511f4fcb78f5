"""Hostile peers in numbers or at speed: connection floods, replayed
handshakes, malformed frames after authentication, a peer that writes
but never reads.  The node stays up, keeps serving its honest peers, and
its descriptors and queues stay bounded.

Raw connections speak the wire format through the helpers of
test_cluster_hostile; the figures are quoted in docs/reliability.md.
"""
from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
import time

import pytest

from cluster_node import Node
from test_cluster import FAST, _mesh, nodes  # noqa: F401
from test_cluster_hostile import (
    BCAST,
    CHALLENGE,
    COOKIE,
    HEARTBEAT,
    HELLO,
    REFUSE,
    SYNC,
    authenticate,
    closed_by_peer,
    entry,
    frame,
    hello_body,
    overflow_queue,
    read_frame,
)

FLOOD = 1_000


def _flood_socket(port: int, kind: int) -> socket.socket:
    """A connection that never finishes the handshake, in one of four
    ways: silent, a partial header, a header announcing a body that never
    comes, or a HELLO whose CHALLENGE goes unanswered."""
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    if kind == 0:
        return s
    s.setblocking(True)
    s.settimeout(5)
    if kind == 1:
        s.sendall(b"pS\x01")
    elif kind == 2:
        s.sendall(b"pS\x01\x01" + struct.pack(">I", 500) + b"\x00" * 10)
    else:
        s.sendall(frame(HELLO, hello_body(b"flood", 3, os.urandom(32))))
    s.setblocking(False)
    return s


def _wait_all_closed(socks: list[socket.socket], timeout: float) -> int:
    """Wait until the node has closed every socket (EOF or reset seen);
    return how many it closed."""
    left = set(socks)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(deadline - time.monotonic()):
                s = key.fileobj
                try:
                    if s.recv(65536):
                        continue        # a CHALLENGE: keep waiting
                except BlockingIOError:
                    continue
                except OSError:
                    pass                # reset: closed as well
                sel.unregister(s)
                left.discard(s)
    return len(socks) - len(left)


def _wait_fds(node: Node, want: int, timeout: float = 20.0) -> None:
    """Wait (bounded) until the node holds exactly want descriptors."""
    deadline = time.monotonic() + timeout
    while node.fd_count() != want:
        assert time.monotonic() < deadline, \
            f"node {node.name} holds {node.fd_count()} fds, not {want}"
        time.sleep(0.05)


def _honest_pair(nodes, **settings) -> tuple[Node, Node]:
    """Nodes a and b linked, with a's mailbox m a member of "honest"."""
    a = nodes("a", **settings)
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    a.call("mailbox", mb="m")
    a.call("join", mb="m", channel="honest")
    b.call("wait_members", channel="honest", n=1)
    return a, b


def _honest_traffic_flows(a: Node, b: Node, tag: str) -> None:
    b.call("broadcast", channel="honest", topic=tag, payload="None")
    msgs = a.call("recv", mb="m", n=1)["messages"]
    assert msgs and msgs[0][2] == repr(tag)


def test_a_flood_of_unfinished_handshakes_is_shed(nodes):
    a, b = _honest_pair(nodes)
    base = a.fd_count()
    bad_before = a.call("stats")["stats"]["bad_handshakes"]

    socks = [_flood_socket(a.port, i % 4) for i in range(FLOOD)]
    try:
        # While the flood is held open, the established link carries
        # traffic and a new honest node gets in.
        _honest_traffic_flows(a, b, "during")
        assert a.fd_count() <= base + FLOOD
        c = nodes("c", seeds=[a])
        _mesh(a, b, c)
        # Every flooding connection is closed by its handshake deadline.
        assert _wait_all_closed(socks, FAST["timeout"] * 10 + 10) == FLOOD
    finally:
        for s in socks:
            s.close()
    c.close()
    a.call("wait_nodes", nodes=["b"])
    _wait_fds(a, base)
    stats = a.call("stats")["stats"]
    assert stats["bad_handshakes"] - bad_before >= FLOOD
    assert stats["timeouts"] == 0       # no honest link timed out
    _honest_traffic_flows(a, b, "after")


def test_a_flood_past_the_descriptor_limit_pauses_accepting_only(nodes):
    """With 64 descriptors the node runs out while 300 connections
    arrive: it stops accepting until deadlines free some, keeps its
    link, and takes a new honest peer once the flood is shed."""
    a, b = _honest_pair(nodes, prefix=["prlimit", "--nofile=64"])
    base = a.fd_count()

    # Past the accept queue, connects stay pending (SYNs are retried):
    # the flood is not waited out, it is withdrawn once it has bitten.
    socks = [_flood_socket(a.port, 0) for _ in range(300)]
    try:
        a.call("wait_log", id="NODE-NO-FDS")
        assert a.fd_count() <= 64
        _honest_traffic_flows(a, b, "during")
    finally:
        for s in socks:
            s.close()
    c = nodes("c", seeds=[a])
    _mesh(a, b, c, timeout=15)
    c.close()
    a.call("wait_nodes", nodes=["b"])
    _wait_fds(a, base)
    assert a.call("stats")["stats"]["timeouts"] == 0


def _record_handshake(node: Node) -> list[bytes]:
    """Authenticate once as "fake", keeping every byte we sent."""
    sent: list[bytes] = []

    class Recording(socket.socket):
        def sendall(self, data, *args):
            sent.append(bytes(data))
            return super().sendall(data, *args)

    real = socket.socket
    socket.socket = Recording
    try:
        s = authenticate(node)
    finally:
        socket.socket = real
    s.close()
    return sent


def test_a_recorded_handshake_replayed_verbatim_is_refused(nodes):
    """An eavesdropper who captured a whole honest handshake (HELLO and
    proof) cannot log in with it: the node's fresh nonce makes the old
    proof wrong."""
    a = nodes("a")
    hello, proof = _record_handshake(a)
    a.call("wait_nodes", nodes=[])
    refusals = 0
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
        s.sendall(hello)
        ftype, _ = read_frame(s)
        assert ftype == CHALLENGE
        s.sendall(proof)
        ftype, _ = read_frame(s)
        refusals += ftype == REFUSE
        assert closed_by_peer(s, 5)
        s.close()
    assert refusals == 20
    a.call("wait_log", id="PEER-BAD-COOKIE")
    assert a.call("nodes")["nodes"] == []
    # The same bytes with the proof sent before the challenge arrives
    # are no better.
    s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    s.sendall(hello + proof)
    assert read_frame(s)[0] == CHALLENGE
    assert read_frame(s)[0] == REFUSE
    s.close()
    assert a.call("nodes")["nodes"] == []


def _bcast_body(channel: bytes, payload: bytes) -> bytes:
    return (struct.pack(">H", 7) + b"default"
            + struct.pack(">H", len(channel)) + channel
            + struct.pack(">QB", 0, 0) + struct.pack(">I", 1) + b"t"
            + payload)


MALFORMED = {
    "unknown-type": frame(77, b""),
    "wrong-version": frame(HEARTBEAT, b"", version=2),
    "heartbeat-with-body": frame(HEARTBEAT, b"x"),
    "sync-count-too-high": frame(SYNC, struct.pack(">I", 5)
                                 + entry(b"default", b"ch", 1, 1)),
    "sync-zero-count": frame(SYNC, struct.pack(">I", 1)
                             + entry(b"default", b"ch", 1, 0)),
    "delta-of-two": frame(7, struct.pack(">I", 1)
                          + entry(b"default", b"ch", 1, 2)),
    "sync-trailing-bytes": frame(SYNC, struct.pack(">I", 1)
                                 + entry(b"default", b"ch", 1, 1) + b"x"),
    "bcast-truncated": frame(BCAST, _bcast_body(b"ch", b"\x00")[:12]),
    "bcast-channel-overruns": frame(BCAST, struct.pack(">H", 7)
                                    + b"default"
                                    + struct.pack(">H", 60000) + b"ch"),
    "peers-overruns": frame(5, struct.pack(">H", 3) + b"\x01"),
    "over-max-frame": b"pS\x01\x08" + struct.pack(">I", (16 << 20) + 1),
    "send-truncated": frame(9, b"\x00" * 5),
    "handshake-frame-again": frame(HELLO, hello_body(b"fake", 9,
                                                     os.urandom(32))),
}


def test_malformed_frames_after_authentication_close_that_link(nodes):
    a, b = _honest_pair(nodes)
    bad_before = a.call("stats")["stats"]["bad_frames"]

    for name, data in MALFORMED.items():
        s = authenticate(a)
        try:
            a.call("wait_nodes", nodes=["b", "fake"])
            # A member of its own first, to see it dropped with the link.
            s.sendall(frame(SYNC, struct.pack(">I", 1)
                            + entry(b"default", b"fk", 1, 1)))
            a.call("wait_members", channel="fk", n=1)
            s.sendall(data)
            assert closed_by_peer(s, 5), name
        finally:
            s.close()
        a.call("wait_nodes", nodes=["b"])
        a.call("wait_members", channel="fk", n=0)
        _honest_traffic_flows(a, b, name)
    stats = a.call("stats")["stats"]
    assert stats["bad_frames"] - bad_before == len(MALFORMED)
    assert stats["timeouts"] == 0


def test_a_peer_that_writes_fast_and_never_reads_is_cut_off(nodes):
    """The peer floods broadcasts at the node and reads nothing while the
    node broadcasts to it: its queue hits max_queue, the link is dropped
    and counted, and the node's own member got what arrived in order."""
    # A long timeout: the queue, not the stall check, must catch it.
    a = nodes("a", max_queue=512 * 1024, timeout=5.0)
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    a.call("mailbox", mb="m")
    a.call("join", mb="m", channel="in")
    s = authenticate(a, rcvbuf=4096)
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        # Payloads are encoded ints: the codec's tag 0x03 is not assumed;
        # an encoded None (b"\x00") is enough to be delivered.
        batch = frame(BCAST, _bcast_body(b"in", b"\x00")) * 64
        try:
            while not stop.is_set():
                s.sendall(batch)
                sent[0] += 64
        except OSError:
            pass

    try:
        s.sendall(frame(SYNC, struct.pack(">I", 1)
                        + entry(b"default", b"out", 1, 1)))
        a.call("wait_members", channel="out", n=1)
        writer = threading.Thread(target=flood)
        writer.start()
        overflow_queue(a, "out", 50_000, 100)
        a.call("wait_nodes", nodes=["b"])
    finally:
        stop.set()
        s.close()
        writer.join(10)
    assert a.call("stats")["stats"]["queue_overflows"] == 1
    got = a.call("pending", mb="m")["len"]
    assert 0 < got <= sent[0]
    a.call("drain_topics", mb="m")
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="after")
    a.call("wait_members", channel="after", n=1)


def test_a_peer_that_never_reads_is_dropped_before_max_queue(nodes):
    """A peer that keeps sending heartbeats but reads nothing holds our
    queued frames forever unless something notices: the node drops a link
    that has accepted no byte for the timeout while output waits, so the
    frames queued to it are not kept without bound, nor silently."""
    a = nodes("a")
    s = authenticate(a, rcvbuf=4096)
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(FAST["heartbeat"]):
                s.sendall(frame(HEARTBEAT, b""))
        except OSError:
            pass

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        s.sendall(frame(SYNC, struct.pack(">I", 1)
                        + entry(b"default", b"out", 1, 1)))
        a.call("wait_members", channel="out", n=1)
        # Well under max_queue (64 MiB), well over what the kernel
        # buffers between us hold.
        for _ in range(40):
            a.call("broadcast", channel="out", payload=repr(b"z" * 100_000))
        a.call("wait_log", id="PEER-STALLED", timeout=FAST["timeout"] * 10)
        a.call("wait_nodes", nodes=[])
    finally:
        stop.set()
        s.close()
        beater.join(10)
    stats = a.call("stats")["stats"]
    assert stats["queue_overflows"] == 0
    assert stats["timeouts"] == 1
