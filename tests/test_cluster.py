"""The cluster between real processes on loopback: membership, delivery,
order, failure and restart.  Each node is a tests/cluster_node.py
process; every wait is bounded and driven by events or replies."""
from __future__ import annotations

import logging
import signal
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pubsub
from cluster_node import Node, NodeError

FAST = {"heartbeat": 0.05, "timeout": 0.6}


@pytest.fixture
def nodes():
    made: list[Node] = []

    def make(name, seeds=(), **kw):
        settings = dict(FAST)
        settings.update(kw)
        node = Node(name, seeds=[s.address if isinstance(s, Node) else s
                                 for s in seeds], **settings)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def _mesh(*ns: Node, timeout: float = 5.0) -> None:
    names = {n.name for n in ns}
    for n in ns:
        n.call("wait_nodes", nodes=sorted(names - {n.name}),
               timeout=timeout)


def test_two_nodes_link_and_see_each_others_members(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    pa = a.call("mailbox", mb="x")["pid"]
    pb = b.call("mailbox", mb="y")["pid"]
    a.call("join", mb="x", channel="room")
    b.call("join", mb="y", channel="room")
    for n in (a, b):
        got = n.call("wait_members", channel="room", n=2)["members"]
        assert got == sorted([pa, pb])
    assert a.call("members", channel="room", local=True)["members"] == [pa]


def test_broadcast_reaches_every_node_local_broadcast_only_this_one(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    c = nodes("c", seeds=[a])
    _mesh(a, b, c)
    for n in (a, b, c):
        n.call("mailbox", mb="m")
        n.call("join", mb="m", channel="news")
    for n in (a, b, c):
        n.call("wait_members", channel="news", n=3)

    b.call("broadcast", channel="news", topic="hello", payload="'x'")
    for n in (a, b, c):
        msgs = n.call("recv", mb="m", n=1, timeout=5)["messages"]
        assert msgs == [["news", "None", "'hello'", "'x'"]]

    b.call("broadcast", channel="news", payload="1", local=True)
    assert b.call("recv", mb="m", n=1)["messages"][0][3] == "1"
    # A later broadcast overtakes nothing on the same link: if the local
    # one had gone out, it would arrive first.
    b.call("broadcast", channel="news", payload="2")
    for n in (a, c):
        msgs = n.call("recv", mb="m", n=1)["messages"]
        assert [m[3] for m in msgs] == ["2"]


def test_order_of_100000_messages_from_one_sender_is_kept(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="seq")
    a.call("mailbox", mb="s")
    a.call("wait_members", channel="seq", n=1)
    a.call("broadcast", channel="seq", count=100_000, sender="s",
           timeout=60)
    got = b.call("recv_seq", mb="m", n=100_000, timeout=60)
    assert got == {"received": 100_000, "first_disorder": None}
    stats = a.call("stats")["stats"]
    assert stats["frames_out"] >= 100_000
    # Frames queued while a write is under way go out together.
    assert stats["writes"] < stats["frames_out"] / 2
    assert b.call("stats")["stats"]["reads"] < 100_000 / 2


def test_broadcast_and_direct_send_keep_their_mutual_order(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="c")
    a.call("mailbox", mb="s")
    a.call("wait_members", channel="c", n=1)
    a.call("broadcast", channel="c", payload="'first'", sender="s")
    assert a.call("send_members", channel="c", sender="s")["sent"] == 1
    a.call("broadcast", channel="c", payload="'last'", sender="s")
    msgs = b.call("recv", mb="m", n=3)["messages"]
    assert [(m[0], m[3]) for m in msgs] == [
        ("c", "'first'"), (None, "0"), ("c", "'last'")]
    assert msgs[1][1].startswith("<Pid a#")


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**80, -(2**70), 1.5, "text é", b"\x00\xff",
    [1, [2, (3,)]], (1, "a"), {"k": [1, 2], 3: None}, {1, 2, 3},
    frozenset({"x"}),
], ids=repr)
def test_payload_types_round_trip_between_nodes(nodes, value):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="p")
    a.call("wait_members", channel="p", n=1)
    a.call("broadcast", channel="p", payload=repr(value))
    got = b.call("recv", mb="m", n=1)["messages"][0][3]
    assert got == repr(value)


def test_a_forked_child_never_writes_to_its_parents_links(nodes):
    """A child forked from a running node shares its links' sockets but
    has no I/O thread.  Its broadcasts must not reach the wire: bytes
    written there by the child would be taken as the parent's, and cut
    into a frame the parent's I/O thread is writing.  (A sender writes a
    frame to an idle link itself; in the child, every link looks idle.)"""
    a = nodes("a", heartbeat=0.5, timeout=5.0)
    b = nodes("b", seeds=[a], heartbeat=0.5, timeout=5.0)
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="p")
    a.call("wait_members", channel="p", n=1)

    assert a.call("fork_broadcast", channel="p", count=20)["status"] == 0
    a.call("broadcast", channel="p", payload="('parent', 0)")
    got = [m[3] for m in b.call("recv", mb="m", n=1, timeout=5)["messages"]]
    assert got == ["('parent', 0)"]
    assert b.call("recv", mb="m", n=1, timeout=0.2)["messages"] == []
    assert a.call("stats")["stats"]["links_dropped"] == 0


def test_joining_one_node_of_a_cluster_connects_to_all(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    c = nodes("c", seeds=[b])      # c knows only b
    _mesh(a, b, c)
    a.call("mailbox", mb="m")
    a.call("join", mb="m", channel="ch")
    c.call("wait_members", channel="ch", n=1)


def test_closing_a_mailbox_removes_it_on_every_node(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    c = nodes("c", seeds=[a])
    _mesh(a, b, c)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="x")
    b.call("join", mb="m", channel="x")
    for n in (a, c):
        n.call("wait_members", channel="x", n=2)
    b.call("close", mb="m")
    for n in (a, b, c):
        n.call("wait_members", channel="x", n=0)


def test_killed_node_is_dropped_within_the_timeout(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    c = nodes("c", seeds=[a])
    _mesh(a, b, c)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="x")
    c.call("mailbox", mb="m")
    c.call("join", mb="m", channel="x")
    a.call("wait_members", channel="x", n=2)

    b.signal(signal.SIGKILL)
    t0 = time.monotonic()
    a.call("wait_nodes", nodes=["c"], timeout=5)
    a.call("wait_members", channel="x", n=1, timeout=5)
    c.call("wait_members", channel="x", n=1, timeout=5)
    # SIGKILL closes the socket, so this is quick; the bound is the
    # timeout plus scheduling slack.
    assert time.monotonic() - t0 < FAST["timeout"] + 3


def test_hung_node_is_dropped_by_heartbeat_timeout(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="x")
    a.call("wait_members", channel="x", n=1)

    b.signal(signal.SIGSTOP)
    try:
        a.call("wait_nodes", nodes=[], timeout=FAST["timeout"] + 3)
        a.call("wait_members", channel="x", n=0)
        a.call("wait_log", id="PEER-TIMEOUT")
        assert a.call("stats")["stats"]["timeouts"] >= 1
    finally:
        b.signal(signal.SIGCONT)


def test_restarted_node_rejoins_and_its_old_pids_never_return(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    a.call("mailbox", mb="m")
    a.call("join", mb="m", channel="x")
    old = b.call("mailbox", mb="m")["pid"]
    b.call("join", mb="m", channel="x")
    a.call("wait_members", channel="x", n=2)

    b.kill()
    a.call("wait_members", channel="x", n=1)
    b2 = nodes("b", seeds=[a])
    _mesh(a, b2)
    new = b2.call("mailbox", mb="m")["pid"]
    b2.call("join", mb="m", channel="x")
    members = a.call("wait_members", channel="x", n=2)["members"]
    assert old not in members and new in members
    assert old != new

    a.call("broadcast", channel="x", payload="'again'")
    assert b2.call("recv", mb="m", n=1)["messages"][0][3] == "'again'"
    # a direct send to the old pid's node record goes nowhere.
    a.call("send_members", channel="x")
    assert a.call("members", channel="x")["members"].count(old) == 0


def test_rejoin_after_link_drop_lists_each_membership_once(nodes):
    a = nodes("a", seeds=[])
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    pid = b.call("mailbox", mb="m")["pid"]
    b.call("join", mb="m", channel="x")
    b.call("leave", mb="m", channel="x")
    b.call("join", mb="m", channel="x")
    a.call("wait_members", channel="x", n=1)

    # Drop the link from b's side and let the seed bring it back.
    b.call("stop")
    a.call("wait_members", channel="x", n=0)
    b.call("start", name="b", cookie="test-cookie", seeds=[a.address],
           **FAST)
    _mesh(a, b)
    assert a.call("wait_members", channel="x", n=1)["members"] == [pid]


def test_oversized_payload_fails_at_the_sender_and_the_link_stays(nodes):
    a = nodes("a", max_frame=64 * 1024)
    b = nodes("b", seeds=[a], max_frame=64 * 1024)
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="x")
    a.call("wait_members", channel="x", n=1)
    with pytest.raises(NodeError, match="ValueError.*frame limit"):
        a.call("broadcast", channel="x", payload=repr(b"z" * 100000))
    a.call("broadcast", channel="x", payload="'small'")
    assert b.call("recv", mb="m", n=1)["messages"][0][3] == "'small'"
    assert a.call("nodes")["nodes"] == ["b"]


def test_scopes_are_kept_apart_across_nodes(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="x", scope="other")
    a.call("wait_members", channel="x", n=1, scope="other")
    assert a.call("members", channel="x")["members"] == []


def test_node_events_reach_a_monitoring_mailbox(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    # cluster_node monitors nodes itself; wait_nodes relies on it.
    b.call("stop")
    a.call("wait_nodes", nodes=[])


def test_simultaneous_dials_leave_one_link_and_no_duplicates(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    a.call("connect", address=b.address)
    _mesh(a, b)
    pid = b.call("mailbox", mb="m")["pid"]
    b.call("join", mb="m", channel="x")
    assert a.call("wait_members", channel="x", n=1)["members"] == [pid]
    assert a.call("nodes")["nodes"] == ["b"]
    assert b.call("nodes")["nodes"] == ["a"]


def test_send_to_a_pid_of_a_past_incarnation_is_dropped_and_counted(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="x")
    a.call("wait_members", channel="x", n=1)
    a.call("remember", channel="x")
    b.kill()
    a.call("wait_members", channel="x", n=0)
    b2 = nodes("b", seeds=[a])
    _mesh(a, b2)
    assert a.call("send_remembered")["sent"] == [False]
    assert a.call("stats")["stats"]["nopeer_drops"] >= 1


def test_a_node_starts_from_its_environment(nodes):
    a = nodes("a")
    b = Node("b", start=False)
    try:
        reply = b.call("start_env", env={
            "PUBSUB_NODE": "b", "PUBSUB_COOKIE": "test-cookie",
            "PUBSUB_SEEDS": a.address, "PUBSUB_LISTEN": "127.0.0.1:0"})
        assert reply["port"]
        _mesh(a, b)
    finally:
        b.close()


def test_start_node_from_env_without_a_node_name_returns_none(monkeypatch):
    import pubsub.cluster as cluster
    monkeypatch.delenv("PUBSUB_NODE", raising=False)
    assert cluster.start_node_from_env() is None
    assert cluster.node_name() is None


def test_a_node_without_a_cookie_refuses_to_start(monkeypatch):
    import pubsub.cluster as cluster
    monkeypatch.delenv("PUBSUB_COOKIE", raising=False)
    with pytest.raises(ValueError, match="cookie is required"):
        cluster.start_node("solo")
    assert cluster.node_name() is None


@pytest.mark.parametrize("text", ["nohost", "h:", ":1", "h:99999", "h:x"])
def test_bad_addresses_are_refused(text):
    import pubsub.cluster as cluster
    with pytest.raises(ValueError):
        cluster.start_node("solo", listen=text, cookie="k")


@pytest.mark.parametrize("count, pause_every", [(20_000, 0), (5_000, 50)],
                         ids=["flat-out", "pausing"])
def test_concurrent_senders_each_keep_their_order(nodes, count,
                                                  pause_every):
    """Flat out, the I/O thread writes what the threads queue.  Pausing
    together now and then, each burst starts on an idle link: its first
    message is written by its sender's thread while the other threads
    queue behind it and the I/O thread flushes the backlog."""
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="c")
    a.call("wait_members", channel="c", n=1)
    a.call("broadcast_threads", channel="c", threads=4, count=count,
           pause_every=pause_every, pause=0.002, timeout=60)
    got = b.call("recv_per_sender", mb="m", n=4 * count, timeout=60)
    assert got == {"received": 4 * count, "first_disorder": None,
                   "senders": 4}
    if pause_every:
        assert a.call("stats")["stats"]["direct_writes"] > 0


def test_membership_stays_consistent_under_join_leave_churn(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    # Churn while the link is up, then a new node syncs from scratch.
    view = a.call("churn", boxes=20, channels=10, steps=3000,
                  close_some=True, timeout=60)["view"]
    c = nodes("c", seeds=[a])
    _mesh(a, b, c)
    for ch, members in view.items():
        for n in (b, c):
            n.call("wait_members", channel=ch, n=len(members),
                   expect=members)


def test_a_node_restarted_before_its_death_was_noticed_lists_only_new_pids(
        nodes):
    """b hangs (SIGSTOP), so a still holds a live link to it when b's
    successor under the same name dials in.  a ends up listing only the
    new b's members, never the old pid, and delivers to the new one."""
    a = nodes("a", timeout=2.0)
    b = nodes("b", seeds=[a], timeout=2.0)
    _mesh(a, b)
    old = b.call("mailbox", mb="m")["pid"]
    b.call("join", mb="m", channel="x")
    a.call("wait_members", channel="x", n=1, expect=[old])

    b.signal(signal.SIGSTOP)
    try:
        b2 = nodes("b", seeds=[a], timeout=2.0)
        new = b2.call("mailbox", mb="m")["pid"]
        b2.call("join", mb="m", channel="x")
        assert new != old
        a.call("wait_members", channel="x", n=1, expect=[new], timeout=15)
        _mesh(a, b2, timeout=15)
        a.call("broadcast", channel="x", payload="'to the new b'")
        got = b2.call("recv", mb="m", n=1)["messages"]
        assert [m[3] for m in got] == ["'to the new b'"]
        assert a.call("members", channel="x")["members"] == [new]
    finally:
        b.signal(signal.SIGCONT)
    b.kill()
    assert a.call("members", channel="x")["members"] == [new]


# -- payloads of every supported type, drawn by hypothesis ------------------

_scalars = (st.none() | st.booleans()
            | st.integers(min_value=-(2 ** 200), max_value=2 ** 200)
            | st.floats(allow_nan=False) | st.text() | st.binary())
_keys = (st.none() | st.booleans() | st.integers() | st.text()
         | st.binary())
_payloads = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=5)
                   | st.lists(inner, max_size=5).map(tuple)
                   | st.dictionaries(_keys, inner, max_size=5)
                   | st.frozensets(_keys, max_size=5)
                   | st.sets(_keys, max_size=5)),
    max_leaves=20)


def _same(x, y) -> bool:
    """Equal and of the same types all the way down (True is not 1)."""
    if type(x) is not type(y):
        return False
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(map(_same, x, y))
    if isinstance(x, dict):
        return (list(x) == list(y)
                and all(_same(x[k], y[k]) for k in x))
    if isinstance(x, float):
        return repr(x) == repr(y)        # -0.0 is not 0.0
    return x == y


@pytest.fixture(scope="module")
def linked_pair():
    a = Node("a", **FAST)
    b = Node("b", seeds=[a.address], **FAST)
    try:
        _mesh(a, b)
        b.call("mailbox", mb="m")
        b.call("join", mb="m", channel="p")
        a.call("wait_members", channel="p", n=1)
        yield a, b
    finally:
        b.close()
        a.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_payloads)
def test_any_payload_crosses_nodes_exactly(linked_pair, value):
    a, b = linked_pair
    a.call("broadcast_encoded", channel="p",
           data=pubsub.encode(value).hex())
    got = pubsub.decode(bytes.fromhex(
        b.call("recv_encoded", mb="m")["data"]))
    assert _same(got, value), (got, value)


def _loopback_buffers() -> int:
    """The most bytes loopback TCP holds between a writer and a stopped
    reader: the largest send and receive buffers the kernel grows to."""
    total = 0
    for name in ("tcp_wmem", "tcp_rmem"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            total += int(f.read().split()[2])
    return total


def test_a_peer_that_stops_reading_then_resumes_gets_every_frame_intact(
        nodes):
    """Frames sent to a stopped peer, each on an idle link, until the
    socket is full many times over: the sender's own write is cut short
    mid-frame, and the I/O thread must finish that frame before the next.
    Once the peer reads again, everything arrives whole and in order, and
    later messages go out directly again."""
    size = 50_003
    count = _loopback_buffers() // size + 8
    queue = 2 * count * size
    a = nodes("a", timeout=10.0, max_queue=queue)
    b = nodes("b", seeds=[a], timeout=10.0, max_queue=queue)
    _mesh(a, b)
    b.call("mailbox", mb="m")
    b.call("join", mb="m", channel="big")
    a.call("wait_members", channel="big", n=1)
    before = a.call("stats")["stats"]

    b.signal(signal.SIGSTOP)
    try:
        a.call("broadcast_big", channel="big", count=count, size=size,
               gap=0.0002, timeout=30)
    finally:
        b.signal(signal.SIGCONT)
    got = b.call("recv_big", mb="m", n=count, size=size, timeout=60)
    assert got == {"received": count, "first_bad": None}
    after = a.call("stats")["stats"]
    assert after["direct_writes"] > before["direct_writes"]
    # The I/O thread wrote what the full socket left.
    assert (after["writes"] - after["direct_writes"]
            > before["writes"] - before["direct_writes"])

    # The backlog is gone: an idle link is written directly once more.
    a.call("broadcast_big", channel="big", count=3, size=10, gap=0.002)
    got = b.call("recv_big", mb="m", n=3, size=10)
    assert got == {"received": 3, "first_bad": None}
    assert a.call("stats")["stats"]["direct_writes"] > after["direct_writes"]


def _dial_failures(node: Node) -> list[int]:
    return [level for level, ident, _ in node.call("logs")["records"]
            if ident == "PEER-DIAL-FAILED"]


def _wait_dials(node: Node, more: int, timeout: float = 10.0) -> None:
    start = node.call("stats")["stats"]["dials"]
    deadline = time.monotonic() + timeout
    while node.call("stats")["stats"]["dials"] < start + more:
        assert time.monotonic() < deadline, "the node stopped redialling"
        time.sleep(0.05)


def test_a_seed_that_refuses_is_a_warning_once_then_debug(nodes):
    # Bound but not listening: every connect to it is refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        seed = "127.0.0.1:%d" % closed.getsockname()[1]
        b = nodes("b", seeds=[seed])
        _wait_dials(b, 4)
        levels = _dial_failures(b)
        assert levels.count(logging.WARNING) == 1
        assert levels[0] == logging.WARNING
        assert set(levels[1:]) == {logging.DEBUG}
        assert len(levels) >= 3
        warning = [r for r in b.call("logs")["records"]
                   if r[1] == "PEER-DIAL-FAILED"][0][2]
        assert seed in warning and "refused" in warning


def test_a_seed_lost_after_a_link_warns_again_once(nodes):
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    assert _dial_failures(b) == []
    a.signal(signal.SIGKILL)
    b.call("wait_log", id="PEER-DIAL-FAILED")
    _wait_dials(b, 3)
    levels = _dial_failures(b)
    assert levels.count(logging.WARNING) == 1
    assert levels[0] == logging.WARNING
