"""Many Python threads publishing, joining, leaving and receiving at once."""
import random
import sys
import threading
import time

import pytest

import pubsub

SENDERS = 4
PER_SENDER = 50_000
RECEIVERS = 3


@pytest.fixture(autouse=True)
def frequent_switches():
    """Switch threads far more often than usual, to mix the operations."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


def test_concurrent_broadcasts_arrive_once_each_in_sender_order(
        new_channel):
    channel, other = new_channel(), new_channel()
    receivers = [pubsub.Mailbox() for _ in range(RECEIVERS)]
    for mb in receivers:
        pubsub.join(channel, mb)
    stop_churn = threading.Event()
    start = threading.Barrier(SENDERS + RECEIVERS + 2)
    errors = []
    results = {}

    def guarded(fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)
        return run

    @guarded
    def send(tid):
        me = pubsub.Mailbox()
        start.wait()
        for seq in range(PER_SENDER):
            pubsub.broadcast(channel, "t", (tid, seq), sender=me)
        me.close()

    @guarded
    def receive(index):
        mb = receivers[index]
        got = []
        start.wait()
        while len(got) < SENDERS * PER_SENDER:
            if index == 0:
                got.append(mb.recv(timeout=30).payload)
            else:
                got.extend(m.payload for m in mb.recv_many(100))
                if len(got) < SENDERS * PER_SENDER and len(mb) == 0:
                    got.append(mb.recv(timeout=30).payload)
        results[index] = got

    churned = []

    @guarded
    def churn(seed):
        rng = random.Random(seed)
        start.wait()
        while not stop_churn.is_set():
            churned.append(seed)
            boxes = [pubsub.Mailbox(rng.choice([None, 3]))
                     for _ in range(rng.randint(1, 5))]
            for mb in boxes:
                pubsub.join(rng.choice([channel, other]), mb)
            pubsub.broadcast(other, "churn", None)
            for mb in boxes:
                mb.recv_many()
                if rng.random() < 0.5:
                    pubsub.leave(channel, mb)
                    pubsub.leave(other, mb)
                else:
                    mb.close()

    threads = ([threading.Thread(target=send, args=(t,))
                for t in range(SENDERS)]
               + [threading.Thread(target=receive, args=(r,))
                  for r in range(RECEIVERS)]
               + [threading.Thread(target=churn, args=(s,))
                  for s in range(2)])
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads[:SENDERS + RECEIVERS]:
        thread.join(60)
    stop_churn.set()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert time.monotonic() - began < 30
    assert len(churned) > 10, "membership changes did not overlap"

    for index in range(RECEIVERS):
        got = results[index]
        assert len(got) == SENDERS * PER_SENDER
        assert len(set(got)) == len(got), "a message arrived twice"
        for tid in range(SENDERS):
            seqs = [seq for t, seq in got if t == tid]
            assert seqs == list(range(PER_SENDER))
        assert len(receivers[index]) == 0
    for mb in receivers:
        mb.close()
    assert pubsub.get_members(channel) == []


def test_concurrent_joins_and_leaves_keep_counts_exact(channel):
    boxes = [pubsub.Mailbox() for _ in range(8)]
    start = threading.Barrier(len(boxes))
    rounds = pubsub.MAX_JOINS

    def join_leave(mb):
        start.wait()
        for cycle in range(10):
            if cycle:
                for _ in range(rounds):
                    assert pubsub.leave(channel, mb) is True
            for _ in range(rounds):
                pubsub.join(channel, mb)
                assert pubsub.leave(channel, mb) is True
                pubsub.join(channel, mb)
        # Each thread ends with `rounds` joins left.

    threads = [threading.Thread(target=join_leave, args=(mb,))
               for mb in boxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    members = pubsub.get_members(channel)
    assert len(members) == rounds * len(boxes)
    for mb in boxes:
        assert members.count(mb.pid) == rounds
        mb.close()
    assert pubsub.get_members(channel) == []
    assert channel not in pubsub.which_channels()


def test_concurrent_direct_sends_keep_per_sender_order(mailbox):
    target = mailbox()
    start = threading.Barrier(SENDERS)

    def send(tid):
        me = pubsub.Mailbox()
        start.wait()
        for seq in range(PER_SENDER):
            pubsub.send(target.pid, "t", (tid, seq), sender=me)
        me.close()

    threads = [threading.Thread(target=send, args=(t,))
               for t in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    got = [m.payload for m in target.recv_many()]
    assert len(got) == SENDERS * PER_SENDER
    for tid in range(SENDERS):
        assert [s for t, s in got if t == tid] == list(range(PER_SENDER))
