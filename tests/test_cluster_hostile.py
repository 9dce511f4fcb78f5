"""Hostile and mistaken peers: each is turned away or cut off, with a log
line, while the node keeps serving its honest peers.

Raw connections here speak the wire format of csrc/core/ps_wire.h
directly: an 8-byte header (magic "pS", version, type, big-endian body
length) and the bodies it documents.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import time

import pytest

from cluster_node import Node
from test_cluster import FAST, _mesh, nodes  # noqa: F401

HELLO, CHALLENGE, RESPONSE, REFUSE, PEERS, SYNC = 1, 2, 3, 4, 5, 6
BCAST, SEND, HEARTBEAT = 8, 9, 10
COOKIE = "test-cookie"


def frame(ftype: int, body: bytes, version: int = 1) -> bytes:
    return b"pS" + bytes([version, ftype]) + struct.pack(">I", len(body)) \
        + body


def hello_body(name: bytes, inc: int, nonce: bytes,
               max_frame: int = 16 << 20) -> bytes:
    host = b"127.0.0.1"
    return (struct.pack(">IQ", max_frame, inc) + bytes([len(name)]) + name
            + bytes([len(host)]) + host + struct.pack(">H", 1) + nonce)


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def read_frame(s: socket.socket) -> tuple[int, bytes]:
    hdr = recv_exact(s, 8)
    assert hdr[:2] == b"pS"
    return hdr[3], recv_exact(s, struct.unpack(">I", hdr[4:])[0])


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """True when the other side closes within timeout (data is drained)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        return False
    return True


def connect(node: Node) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.port), timeout=5)


def identity(name: bytes, inc: int) -> bytes:
    return bytes([len(name)]) + name + struct.pack(">Q", inc)


def authenticate(node: Node, cookie: str = COOKIE, name: bytes = b"fake",
                 rcvbuf: int | None = None) -> socket.socket:
    """Run the initiator's side of the handshake; return the socket."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", node.port))
    inc = int.from_bytes(os.urandom(8), "big") | 1
    ni = os.urandom(32)
    s.sendall(frame(HELLO, hello_body(name, inc, ni)))
    ftype, body = read_frame(s)
    assert ftype == CHALLENGE
    max_frame, a_inc = struct.unpack(">IQ", body[:12])
    a_name = body[13:13 + body[12]]
    na = body[-32:]
    both = (ni + na + identity(name, inc) + identity(a_name, a_inc)
            + struct.pack(">I", max_frame))
    key = cookie.encode()
    s.sendall(frame(RESPONSE, hmac.new(
        key, b"cpubsub/1 initiator proof" + both, hashlib.sha256).digest()))
    ftype, body = read_frame(s)
    assert ftype == RESPONSE
    assert hmac.compare_digest(body, hmac.new(
        key, b"cpubsub/1 acceptor proof" + both, hashlib.sha256).digest())
    return s


def entry(scope: bytes, channel: bytes, pid: int, count: int) -> bytes:
    return (struct.pack(">H", len(scope)) + scope
            + struct.pack(">H", len(channel)) + channel
            + struct.pack(">Qi", pid, count))


def overflow_queue(node: Node, channel: str, size: int, tries: int) -> None:
    """Broadcast size-byte payloads on channel until a peer's queue
    overflows (at most tries times), and wait for the log line."""
    for _ in range(tries):
        node.call("broadcast", channel=channel, payload=repr(b"y" * size))
        if node.call("stats")["stats"]["queue_overflows"]:
            break
    node.call("wait_log", id="PEER-QUEUE-OVERFLOW")


def test_wrong_cookie_is_refused_and_logged_on_both_sides(nodes):
    a = nodes("a")
    b = Node("b", cookie="another-cookie", seeds=[a.address], **FAST)
    try:
        rec = a.call("wait_log", id="PEER-BAD-COOKIE")["records"]
        assert "test-cookie" not in str(rec)
        rec = b.call("wait_log", id="PEER-REFUSED")["records"]
        assert "authentication failed" in rec[0][2]
        assert "another-cookie" not in str(b.call("logs"))
        assert a.call("nodes")["nodes"] == []
        assert b.call("nodes")["nodes"] == []
    finally:
        b.close()
    c = nodes("c", seeds=[a])
    _mesh(a, c)
    assert a.call("stats")["stats"]["bad_handshakes"] >= 1


@pytest.mark.parametrize("garbage, log_id, why", [
    (os.urandom(64).replace(b"p", b"q"), "PEER-BAD-FRAME", "bad frame"),
    (b"pS\x01\x01\xff\xff\xff\xff", "PEER-BAD-FRAME", "exceeds the limit"),
    (b"pS\x01\x08\x00\x01\x00\x00", "PEER-BAD-FRAME", "exceeds the limit"),
    (frame(HELLO, b"\x00" * 20), "PEER-REFUSING", "malformed HELLO"),
    (frame(HELLO, hello_body(b"\xff", 7, os.urandom(32))), "PEER-REFUSING",
     "malformed HELLO"),
    (frame(HELLO, hello_body(
        b"x\nINFO pubsub.cluster: PEER-UP: admin", 7, os.urandom(32))),
     "PEER-REFUSING", "malformed HELLO"),
], ids=["random", "4GiB", "big-preauth", "short-hello", "non-utf8-name",
        "newline-name"])
def test_bad_bytes_close_only_that_connection(nodes, garbage, log_id, why):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    s = connect(a)
    s.sendall(garbage)
    assert closed_by_peer(s, 5)
    s.close()
    recs = a.call("wait_log", id=log_id)["records"]
    assert why in recs[0][2]
    assert a.call("nodes")["nodes"] == ["b"]
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="still")
    a.call("wait_members", channel="still", n=1)


def test_truncated_frame_closes_the_connection(nodes):
    a = nodes("a")
    s = connect(a)
    s.sendall(frame(HELLO, b"\x00" * 60)[:30])
    s.shutdown(socket.SHUT_WR)
    assert closed_by_peer(s, 5)
    s.close()
    recs = a.call("wait_log", id="PEER-DOWN")["records"]
    assert "truncated" in recs[0][2]


def test_silent_connection_is_closed_after_the_timeout(nodes):
    a = nodes("a")
    s = connect(a)
    assert closed_by_peer(s, FAST["timeout"] + 5)
    s.close()
    a.call("wait_log", id="PEER-HANDSHAKE-TIMEOUT")


def test_nothing_is_delivered_from_an_unauthenticated_peer(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    a.call("mailbox", mb="m")
    a.call("join", mb="m", channel="x")
    b.call("wait_members", channel="x", n=1)

    s = connect(a)
    body = (struct.pack(">H", 7) + b"default" + struct.pack(">H", 1) + b"x"
            + struct.pack(">QB", 0, 0) + struct.pack(">I", 4) + b"evil"
            + b"\x00")
    s.sendall(frame(BCAST, body))
    assert closed_by_peer(s, 5)
    s.close()
    # The first message the member sees is the honest one.
    b.call("broadcast", channel="x", topic="honest", payload="None")
    msgs = a.call("recv", mb="m", n=1)["messages"]
    assert msgs and msgs[0][2] == "'honest'"


def test_protocol_version_mismatch_is_refused_with_a_reason(nodes):
    a = nodes("a")
    s = connect(a)
    s.sendall(frame(HELLO, hello_body(b"future", 5, os.urandom(32)),
                    version=9))
    ftype, body = read_frame(s)
    assert ftype == REFUSE
    assert b"version" in body
    assert closed_by_peer(s, 5)
    s.close()
    rec = a.call("wait_log", id="PEER-REFUSING")["records"]
    assert "version 9" in rec[0][2]


def test_setting_mismatch_is_refused_and_logged_on_both_sides(nodes):
    a = nodes("a", max_frame=1 << 20)
    b = Node("b", seeds=[a.address], max_frame=2 << 20, **FAST)
    try:
        rec = a.call("wait_log", id="PEER-REFUSING")["records"]
        assert "max_frame" in rec[0][2]
        rec = b.call("wait_log", id="PEER-REFUSED")["records"]
        assert "max_frame" in rec[0][2]
        assert a.call("nodes")["nodes"] == []
    finally:
        b.close()


def test_a_node_with_our_own_name_is_refused(nodes):
    a = nodes("a")
    twin = Node("a", seeds=[a.address], **FAST)
    try:
        a.call("wait_log", id="PEER-REFUSING")
        twin.call("wait_log", id="PEER-REFUSED")
        assert a.call("nodes")["nodes"] == []
    finally:
        twin.close()


def test_handshake_as_specified_links_a_foreign_implementation(nodes):
    a = nodes("a")
    s = authenticate(a)
    try:
        a.call("wait_nodes", nodes=["fake"])
        ftype, _ = read_frame(s)
        assert ftype == PEERS
        s.sendall(frame(SYNC, struct.pack(">I", 1)
                        + entry(b"default", b"ch", 42, 2)))
        members = a.call("wait_members", channel="ch", n=2)["members"]
        assert all(m.startswith("<Pid fake#") for m in members)
    finally:
        s.close()
    a.call("wait_members", channel="ch", n=0)


def test_a_replayed_proof_does_not_authenticate(nodes):
    a = nodes("a")
    s = connect(a)
    s.sendall(frame(HELLO, hello_body(b"fake", 7, os.urandom(32))))
    ftype, body = read_frame(s)
    assert ftype == CHALLENGE
    s.sendall(frame(RESPONSE, b"\x00" * 32))
    ftype, body = read_frame(s)
    assert ftype == REFUSE
    assert closed_by_peer(s, 5)
    s.close()
    a.call("wait_log", id="PEER-BAD-COOKIE")
    assert a.call("nodes")["nodes"] == []


def test_slow_peer_is_dropped_when_its_queue_passes_max_queue(nodes):
    # A long timeout: the queue, not the stall check, must catch it.
    a = nodes("a", max_queue=256 * 1024, timeout=5.0)
    s = authenticate(a, rcvbuf=4096)
    try:
        s.sendall(frame(SYNC, struct.pack(">I", 1)
                        + entry(b"default", b"slow", 1, 1)))
        a.call("wait_members", channel="slow", n=1)
        # Never read: the kernel buffers fill, then the node's queue.
        overflow_queue(a, "slow", 100_000, 200)
        a.call("wait_nodes", nodes=[])
    finally:
        s.close()


def test_a_second_live_node_under_a_taken_name_is_refused(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    impostor = Node("b", seeds=[a.address], **FAST)
    try:
        rec = impostor.call("wait_log", id="PEER-REFUSED")["records"]
        assert "already connected" in rec[0][2]
        a.call("wait_log", id="PEER-REFUSING")
        assert impostor.call("nodes")["nodes"] == []
        assert a.call("nodes")["nodes"] == ["b"]
    finally:
        impostor.close()


def test_huge_join_counts_are_capped_and_do_not_stall_the_node(nodes):
    """A SYNC claiming a pid joined 2^31 - 1 times, twice, neither wraps
    the count nor keeps the I/O thread busy: the pid is listed 1,024
    times (PS_MAX_JOINS, the most a local mailbox can have), a watcher
    gets one join event per listing, and the honest peer is served."""
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    a.call("mailbox", mb="watch")
    a.call("monitor", mb="watch", channel="big")
    s = authenticate(a)
    try:
        a.call("wait_nodes", nodes=["b", "fake"])
        big = 2 ** 31 - 1
        s.sendall(frame(SYNC, struct.pack(">I", 3)
                        + entry(b"default", b"big", 42, big)
                        + entry(b"default", b"big", 42, big)
                        + entry(b"default", b"big", 43, 1)))
        members = a.call("wait_members", channel="big", n=1024 + 1,
                         timeout=10)["members"]
        assert sum(m.startswith("<Pid fake#") and m.endswith(".42>")
                   for m in members) == 1024
        topics = a.call("drain_topics", mb="watch")["topics"]
        # 1,024 for pid 42's first entry, none for its capped second,
        # one for pid 43.
        assert topics == ["$join"] * 1025
        # The honest peer still gets a broadcast through at once.
        b.call("mailbox", mb="m")
        b.call("join", mb="m", channel="after")
        a.call("wait_members", channel="after", n=1)
    finally:
        s.close()
    a.call("wait_members", channel="big", n=0)


def test_a_worker_survives_a_message_it_cannot_decode(nodes):
    """A SEND whose payload does not decode, then one whose str topic is
    not UTF-8: the worker logs each as lost and goes on serving."""
    a = nodes("a")
    pid = a.call("worker", channel="jobs")
    s = authenticate(a)
    try:
        a.call("wait_nodes", nodes=["fake"])
        for topic, payload in ((b"t", b"\xff"), (b"\xff\xfe", b"N")):
            s.sendall(frame(SEND, struct.pack(
                ">QQQBI", pid["id"], pid["incarnation"], 0, 0, len(topic))
                + topic + payload))
        a.call("broadcast", channel="jobs", payload="'after'")
        deadline = time.monotonic() + 5
        while a.call("worker_state")["handled"] != ["'after'"]:
            assert time.monotonic() < deadline, a.call("worker_state")
            time.sleep(0.02)
        state = a.call("worker_state")
        assert state["alive"] and not state["closed"]
    finally:
        s.close()


@pytest.mark.parametrize("body", [
    frame(SYNC, struct.pack(">I", 1) + entry(b"default", b"bad\xff", 5, 1)),
    frame(SYNC, struct.pack(">I", 1) + entry(b"sc\xc0\x80", b"ch", 5, 1)),
    frame(SYNC, struct.pack(">I", 1) + entry(b"default", b"ch", 0, 1)),
    frame(BCAST, struct.pack(">H", 7) + b"default" + struct.pack(">H", 2)
          + b"ch" + struct.pack(">QBI", 0, 0, 2) + b"\xff\xfe" + b"N"),
    frame(SEND, struct.pack(">QQQBI", 1, 1, 0, 0, 1) + b"\x80" + b"N"),
], ids=["sync-channel", "sync-scope-overlong", "sync-pid-0",
        "bcast-topic", "send-topic"])
def test_text_that_is_not_utf8_closes_an_authenticated_link(nodes, body):
    """Names and str topics cross as (surrogatepass) UTF-8; anything else
    is a protocol error that ends that link, and nothing of it stays."""
    a = nodes("a")
    a.call("mailbox", mb="m")
    a.call("join", mb="m", channel="ch")
    s = authenticate(a)
    try:
        a.call("wait_nodes", nodes=["fake"])
        s.sendall(body)
        assert closed_by_peer(s, 5)
    finally:
        s.close()
    a.call("wait_nodes", nodes=[])
    assert a.call("members", channel="ch")["members"] == [
        a.call("members", channel="ch", local=True)["members"][0]]
    assert a.call("members", channel="bad\udcff")["members"] == []
    assert a.call("pending", mb="m")["len"] == 0


def test_surrogates_in_names_and_topics_still_cross_nodes(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="s\ud800")
    a.call("wait_members", channel="s\ud800", n=1)
    a.call("broadcast", channel="s\ud800", topic="t\udfff",
           payload="1")
    got = b.call("recv", mb="m", n=1)["messages"]
    assert [(m[0], m[2]) for m in got] == [("s\ud800", "'t\\udfff'")]


def test_log_records_quote_a_refusal_reason_without_control_characters(
        nodes):
    a = nodes("a")
    s = connect(a)
    s.sendall(frame(HELLO, hello_body(b"ok", 7, os.urandom(32))))
    ftype, body = read_frame(s)
    assert ftype == CHALLENGE
    reason = b"bye\nINFO pubsub.cluster: PEER-UP: forged\xff"
    s.sendall(frame(REFUSE, struct.pack(">HH", 1, len(reason)) + reason))
    assert closed_by_peer(s, 5)
    s.close()
    logs = a.call("logs")["records"]
    assert logs and all("\n" not in r[2] for r in logs)
