"""Load: a slow consumer among many readers, fed locally or from
another node, and many consumers under concurrent joins, leaves and
broadcasts.

Each test runs a fixed number of operations (never a fixed time) and
checks exact counts: what each reader received, in which order, and what
a bounded mailbox dropped.  The figures are quoted in docs/reliability.md.
"""
from __future__ import annotations

import os
import random
import sys
import threading

import pytest

import pubsub
from test_cluster import _mesh, nodes  # noqa: F401

READERS = 1_000         # mailboxes on the channel, the slow one included
CAPACITY = 100          # each mailbox's capacity
BURSTS = 50             # broadcasts go out in bursts of CAPACITY
PAYLOAD = 16 * 1024     # bytes per payload, each a fresh object
READER_THREADS = 4


def _rss() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _run_slow_consumer(channel: str, policy: str) -> dict:
    """Broadcast BURSTS * CAPACITY messages to READERS mailboxes, one of
    which is never read.  Reader threads drain the others after every
    burst (a barrier keeps them in step, so they keep up by
    construction) and check each message is the next one expected."""
    boxes = [pubsub.Mailbox(CAPACITY, policy) for _ in range(READERS)]
    slow, fast = boxes[0], boxes[1:]
    for mb in boxes:
        mb.join(channel)
    barrier = threading.Barrier(READER_THREADS + 1)
    errors: list[str] = []
    received = [0] * len(fast)
    biggest = [0]           # the slow mailbox's largest length seen

    def read(k: int) -> None:
        mine = range(k, len(fast), READER_THREADS)
        expect = [0] * len(fast)
        for _ in range(BURSTS):
            barrier.wait()          # a burst was sent
            for i in mine:
                got = [m.payload[0] for m in fast[i].recv_many()]
                want = list(range(expect[i], expect[i] + len(got)))
                if got != want and len(errors) < 5:
                    errors.append(f"reader {i}: {got[:3]}... != "
                                  f"{want[:3]}...")
                expect[i] += len(got)
                received[i] += len(got)
            barrier.wait()          # drained

    threads = [threading.Thread(target=read, args=(k,))
               for k in range(READER_THREADS)]
    for t in threads:
        t.start()
    base = peak = _rss()
    try:
        seq = 0
        for _ in range(BURSTS):
            for _ in range(CAPACITY):
                # A fresh object per message: if the slow mailbox kept
                # them all, the traced memory would show it.
                pubsub.broadcast(channel, "t",
                                 (seq, bytes([seq % 251]) * PAYLOAD))
                seq += 1
            biggest[0] = max(biggest[0], len(slow) if not slow.closed
                             else 0)
            peak = max(peak, _rss())
            barrier.wait()
            barrier.wait()
    except BaseException:
        barrier.abort()     # frees the readers
        raise
    finally:
        for t in threads:
            t.join(30)
    out = {"slow": slow, "fast": fast, "errors": errors, "sent": seq,
           "received": received, "growth": peak - base, "biggest": biggest[0],
           "members": len(pubsub.get_members(channel))}
    return out


def _close_all(result: dict) -> None:
    result["slow"].close()
    for mb in result["fast"]:
        mb.close()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "close"])
def test_one_slow_consumer_among_a_thousand(channel, policy):
    r = _run_slow_consumer(channel, policy)
    try:
        sent, slow = r["sent"], r["slow"]
        assert sent == BURSTS * CAPACITY
        # The readers that kept up got every message, in order.
        assert r["errors"] == []
        assert r["received"] == [sent] * (READERS - 1)
        assert all(mb.dropped == 0 for mb in r["fast"])
        # Memory stayed bounded: holding every message would take
        # sent * PAYLOAD = 80 MB; the slow mailbox and one burst in the
        # readers' hands hold 2 * CAPACITY * PAYLOAD = 3.2 MB.
        assert r["biggest"] <= CAPACITY
        assert r["growth"] < sent * PAYLOAD / 4

        if policy == "close":
            # Closed as a slow consumer by message CAPACITY + 1, which
            # is the one counted; it then left the channel.
            assert slow.closed
            assert slow.dropped == 1
            assert r["members"] == READERS - 1
            with pytest.raises(pubsub.SlowConsumer):
                slow.recv_nowait()
            return
        assert not slow.closed
        assert r["members"] == READERS
        assert len(slow) == CAPACITY
        assert slow.dropped == sent - CAPACITY
        kept = [m.payload[0] for m in slow.recv_many()]
        if policy == "drop_oldest":
            assert kept == list(range(sent - CAPACITY, sent))
        else:
            assert kept == list(range(CAPACITY))
    finally:
        _close_all(r)


# ---- many consumers ----

CHANNELS = 100
STABLE_PER_CHANNEL = 90         # 9,000 members that never move
CHURNERS = 1_000                # 1,000 that join and leave throughout
SENDERS = 4
BROADCASTS_PER_SENDER = 10_000
CHURN_THREADS = 2
CHURN_STEPS = 5_000             # join or leave operations per thread


def _check_period(msgs, errors: list[str], who: str) -> None:
    """Messages received during one membership period: per sender and
    channel, strictly increasing and without gaps."""
    last: dict[tuple[int, int], int] = {}
    for m in msgs:
        k, ch, seq = m.payload
        prev = last.get((k, ch))
        if prev is not None and seq != prev + 1 and len(errors) < 5:
            errors.append(f"{who}: sender {k} channel {ch}: {seq} "
                          f"after {prev}")
        last[(k, ch)] = seq


def test_ten_thousand_mailboxes_under_concurrent_churn(new_channel):
    names = [new_channel() for _ in range(CHANNELS)]
    stable = [[pubsub.Mailbox() for _ in range(STABLE_PER_CHANNEL)]
              for _ in names]
    churners = [pubsub.Mailbox() for _ in range(CHURNERS)]
    for ch, group in zip(names, stable):
        for mb in group:
            mb.join(ch)
    errors: list[str] = []
    sent = [[0] * CHANNELS for _ in range(SENDERS)]
    senders = [pubsub.Mailbox() for _ in range(SENDERS)]
    periods = [0]
    churn_received = [0]
    start = threading.Barrier(SENDERS + CHURN_THREADS + 1)

    def send(k: int) -> None:
        rnd = random.Random(k)
        pid = senders[k].pid
        start.wait()
        for _ in range(BROADCASTS_PER_SENDER):
            c = rnd.randrange(CHANNELS)
            pubsub.broadcast(names[c], "t", (k, c, sent[k][c]), sender=pid)
            sent[k][c] += 1

    def churn(t: int) -> None:
        # Each thread owns its own churners, each in at most one channel
        # at a time: one join, so no copy is a legitimate duplicate.
        rnd = random.Random(100 + t)
        mine = churners[t::CHURN_THREADS]
        where: dict[int, int] = {}
        start.wait()
        for _ in range(CHURN_STEPS):
            i = rnd.randrange(len(mine))
            mb = mine[i]
            if i in where:
                assert mb.leave(names[where.pop(i)]) is True
                msgs = mb.recv_many()
                _check_period(msgs, errors, f"churner {t}/{i}")
                churn_received[0] += len(msgs)
                periods[0] += 1
            else:
                where[i] = rnd.randrange(CHANNELS)
                mb.join(names[where[i]])
        for i, c in where.items():
            mine[i].leave(names[c])
            _check_period(mine[i].recv_many(), errors, f"churner {t}/{i}")

    threads = [threading.Thread(target=send, args=(k,))
               for k in range(SENDERS)]
    threads += [threading.Thread(target=churn, args=(t,))
                for t in range(CHURN_THREADS)]
    # Switch threads often, so that joins, leaves and broadcasts
    # interleave finely instead of each thread running its whole share.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for t in threads:
            t.start()
        start.wait()
        # This thread reads the stable members while the others run.
        drained = [[[] for _ in group] for group in stable]
        while any(t.is_alive() for t in threads):
            for c, group in enumerate(stable):
                for j, mb in enumerate(group):
                    drained[c][j].extend(mb.recv_many())
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)

    try:
        assert errors == []
        total = 0
        for c, group in enumerate(stable):
            for j, mb in enumerate(group):
                msgs = drained[c][j] + mb.recv_many()
                total += len(msgs)
                per: dict[int, list[int]] = {}
                for m in msgs:
                    k, ch, seq = m.payload
                    assert ch == c
                    per.setdefault(k, []).append(seq)
                for k in range(SENDERS):
                    # Exactly 0..n-1 from each sender: no loss, no
                    # duplicate, no disorder.
                    assert per.get(k, []) == list(range(sent[k][c]))
        assert total == STABLE_PER_CHANNEL * SENDERS * BROADCASTS_PER_SENDER
        assert periods[0] > CHURN_STEPS // 2
        # The churners were members while broadcasts went on.
        assert churn_received[0] > 0
        for c, ch in enumerate(names):
            assert len(pubsub.get_members(ch)) == STABLE_PER_CHANNEL
    finally:
        for group in stable:
            for mb in group:
                mb.close()
        for mb in churners + senders:
            mb.close()
    assert not set(names) & set(pubsub.which_channels())


# ---- a slow consumer fed from another node ----

REMOTE_SENT = 5_000


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "close"])
def test_slow_consumer_fed_from_another_node(nodes, policy):
    """The I/O thread pushes into a bounded mailbox by its own path; the
    policy, the count and the end must be those of a local overflow.  An
    unbounded member on the same node tells when everything arrived."""
    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    a.call("mailbox", mb="slow", capacity=CAPACITY, overflow=policy)
    a.call("mailbox", mb="all")
    for mb in ("slow", "all"):
        a.call("join", mb=mb, channel="feed")
    b.call("mailbox", mb="s")
    b.call("wait_members", channel="feed", n=2)

    b.call("broadcast", channel="feed", count=REMOTE_SENT, sender="s",
           timeout=60)
    got = a.call("recv_seq", mb="all", n=REMOTE_SENT, timeout=60)
    assert got == {"received": REMOTE_SENT, "first_disorder": None}

    state = a.call("mailbox_state", mb="slow")
    kept = a.call("drain_payloads", mb="slow")
    if policy == "close":
        assert state["closed"] and state["dropped"] == 1
        assert kept == {"error": "SlowConsumer"}
        # It left the channel on both nodes.
        for n in (a, b):
            assert len(n.call("wait_members", channel="feed",
                              n=1)["members"]) == 1
        return
    assert state == {"len": CAPACITY, "dropped": REMOTE_SENT - CAPACITY,
                     "closed": False}
    first = REMOTE_SENT - CAPACITY if policy == "drop_oldest" else 0
    assert kept["payloads"] == [repr(i) for i in
                                range(first, first + CAPACITY)]
