"""Bounded mailboxes: capacity, the three overflow policies, and the
dropped counter."""
import pytest

import pubsub


def fill(channel, count, sender=None):
    for i in range(count):
        pubsub.broadcast(channel, "t", i, sender=sender)


def payloads(mb):
    return [m.payload for m in mb.recv_many()]


def test_mailbox_under_its_capacity_drops_nothing(channel, mailbox):
    mb = mailbox(5, "drop_oldest")
    pubsub.join(channel, mb)
    fill(channel, 5)
    assert len(mb) == 5
    assert mb.dropped == 0
    assert payloads(mb) == [0, 1, 2, 3, 4]


def test_drop_oldest_keeps_the_newest_in_order(channel, mailbox):
    mb = mailbox(5, "drop_oldest")
    pubsub.join(channel, mb)
    fill(channel, 12)
    assert len(mb) == 5
    assert mb.dropped == 7
    assert payloads(mb) == [7, 8, 9, 10, 11]


def test_drop_oldest_is_the_default_policy(channel, mailbox):
    mb = mailbox(2)
    assert mb.overflow == "drop_oldest"
    pubsub.join(channel, mb)
    fill(channel, 3)
    assert payloads(mb) == [1, 2]
    assert mb.dropped == 1


def test_drop_newest_keeps_the_oldest_in_order(channel, mailbox):
    mb = mailbox(5, "drop_newest")
    pubsub.join(channel, mb)
    fill(channel, 12)
    assert len(mb) == 5
    assert mb.dropped == 7
    assert payloads(mb) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_room_made_by_receiving_is_used_again(policy, channel, mailbox):
    mb = mailbox(3, policy)
    pubsub.join(channel, mb)
    fill(channel, 3)
    assert mb.recv_nowait().payload == 0
    pubsub.broadcast(channel, "t", "new")
    assert mb.dropped == 0
    assert payloads(mb) == [1, 2, "new"]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_dropping_mailbox_stays_open_and_joined(policy, channel, mailbox):
    mb = mailbox(1, policy)
    pubsub.join(channel, mb)
    fill(channel, 10)
    assert not mb.closed
    assert pubsub.get_members(channel) == [mb.pid]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_direct_sends_count_against_the_capacity(policy, mailbox):
    mb = mailbox(2, policy)
    for i in range(5):
        assert pubsub.send(mb.pid, "t", i) is True
    assert mb.dropped == 3
    assert payloads(mb) == ([3, 4] if policy == "drop_oldest" else [0, 1])


def test_duplicate_joins_count_each_copy_against_the_capacity(
        channel, mailbox):
    mb = mailbox(3, "drop_newest")
    pubsub.join(channel, mb)
    pubsub.join(channel, mb)
    fill(channel, 2)
    assert mb.dropped == 1
    assert payloads(mb) == [0, 0, 1]


def test_close_policy_closes_the_mailbox_when_it_overflows(
        channel, mailbox):
    mb = mailbox(3, "close")
    pubsub.join(channel, mb)
    fill(channel, 3)
    assert not mb.closed
    pubsub.broadcast(channel, "t", "one too many")
    assert mb.closed


def test_slow_consumer_leaves_every_channel(new_channel, mailbox):
    names = [new_channel() for _ in range(3)]
    mb = mailbox(1, "close")
    for name in names:
        pubsub.join(name, mb)
    fill(names[0], 2)
    for name in names:
        assert pubsub.get_members(name) == []
    assert not set(names) & set(pubsub.which_channels())


def test_slow_consumer_recv_raises_slow_consumer(channel, mailbox):
    mb = mailbox(2, "close")
    pubsub.join(channel, mb)
    fill(channel, 3)
    for receive in (mb.recv_nowait, mb.recv, lambda: mb.recv(timeout=0),
                    mb.recv_many):
        with pytest.raises(pubsub.SlowConsumer):
            receive()


def test_slow_consumer_is_a_mailbox_closed_error():
    assert issubclass(pubsub.SlowConsumer, pubsub.MailboxClosed)
    assert issubclass(pubsub.SlowConsumer, ValueError)
    assert issubclass(pubsub.MailboxClosed, pubsub.PubSubError)


def test_slow_consumer_counts_the_message_that_did_not_fit(
        channel, mailbox):
    mb = mailbox(2, "close")
    pubsub.join(channel, mb)
    fill(channel, 3)
    assert mb.dropped == 1
    # Once closed it is no member: later broadcasts do not reach it.
    fill(channel, 5)
    assert mb.dropped == 1


def test_slow_consumer_cannot_join_again(channel, mailbox):
    mb = mailbox(1, "close")
    pubsub.join(channel, mb)
    fill(channel, 2)
    with pytest.raises(pubsub.MailboxClosed):
        pubsub.join(channel, mb)


def test_direct_send_can_close_a_slow_consumer(mailbox):
    mb = mailbox(1, "close")
    assert pubsub.send(mb.pid, "t", 1) is True
    pubsub.send(mb.pid, "t", 2)
    assert mb.closed
    assert pubsub.send(mb.pid, "t", 3) is False
    with pytest.raises(pubsub.SlowConsumer):
        mb.recv_nowait()


def test_mailbox_closed_by_hand_is_not_a_slow_consumer(mailbox):
    mb = mailbox(1, "close")
    mb.close()
    with pytest.raises(pubsub.MailboxClosed) as info:
        mb.recv_nowait()
    assert not isinstance(info.value, pubsub.SlowConsumer)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "close"])
def test_overflow_does_not_affect_other_members(policy, channel, mailbox):
    small = mailbox(2, policy)
    big, unbounded = mailbox(100, policy), mailbox()
    for mb in (small, big, unbounded):
        pubsub.join(channel, mb)
    fill(channel, 10)
    assert payloads(big) == list(range(10))
    assert payloads(unbounded) == list(range(10))
    assert big.dropped == 0 and unbounded.dropped == 0
    assert sorted(pubsub.get_members(channel)) == sorted(
        [mb.pid for mb in (small, big, unbounded)
         if not mb.closed])


def test_slow_consumer_in_the_middle_does_not_cost_others_a_message(
        channel, mailbox):
    first, slow, last = mailbox(), mailbox(1, "close"), mailbox()
    for mb in (first, slow, last):
        pubsub.join(channel, mb)
    fill(channel, 3)
    assert payloads(first) == [0, 1, 2]
    assert payloads(last) == [0, 1, 2]
    assert slow.closed


def test_dropped_counts_every_message_over_a_long_run(channel, mailbox):
    oldest, newest = mailbox(7, "drop_oldest"), mailbox(7, "drop_newest")
    pubsub.join(channel, oldest)
    pubsub.join(channel, newest)
    received = {"oldest": 0, "newest": 0}
    for i in range(1000):
        pubsub.broadcast(channel, "t", i)
        if i % 10 == 0:
            received["oldest"] += len(oldest.recv_many())
            received["newest"] += len(newest.recv_many())
    received["oldest"] += len(oldest.recv_many())
    received["newest"] += len(newest.recv_many())
    assert oldest.dropped + received["oldest"] == 1000
    assert newest.dropped + received["newest"] == 1000
    assert oldest.dropped > 0 and newest.dropped > 0
