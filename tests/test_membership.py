"""Joining and leaving channels, with pg's counting rules."""
import pytest

import pubsub


def test_join_makes_a_mailbox_a_member(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    assert pubsub.get_members(channel) == [mb.pid]
    assert pubsub.get_local_members(channel) == [mb.pid]
    assert channel in pubsub.which_channels()


def test_mailbox_join_method_is_the_default_scope_join(channel, mailbox):
    mb = mailbox()
    mb.join(channel)
    assert pubsub.get_members(channel) == [mb.pid]
    assert mb.leave(channel) is True
    assert pubsub.get_members(channel) == []


def test_duplicate_join_is_listed_once_per_join(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.join(channel, mb)
    assert pubsub.get_members(channel) == [mb.pid, mb.pid]
    assert pubsub.get_local_members(channel) == [mb.pid, mb.pid]


def test_duplicate_join_receives_each_broadcast_once_per_join(
        channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.join(channel, mb)
    pubsub.broadcast(channel, "t", "once")
    assert [m.payload for m in mb.recv_many()] == ["once", "once"]


def test_leave_undoes_one_join_only(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.join(channel, mb)
    assert pubsub.leave(channel, mb) is True
    assert pubsub.get_members(channel) == [mb.pid]
    pubsub.broadcast(channel, "t", 1)
    assert len(mb.recv_many()) == 1
    assert pubsub.leave(channel, mb) is True
    assert pubsub.get_members(channel) == []


def test_leave_of_a_channel_not_joined_returns_false(channel, mailbox):
    mb, other = mailbox(), mailbox()
    assert pubsub.leave(channel, mb) is False
    pubsub.join(channel, other)
    assert pubsub.leave(channel, mb) is False
    assert mb.leave(channel) is False
    assert pubsub.get_members(channel) == [other.pid]


def test_leave_once_too_often_returns_false(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    assert pubsub.leave(channel, mb) is True
    assert pubsub.leave(channel, mb) is False


def test_leave_with_a_closed_mailbox_returns_false(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    mb.close()
    assert pubsub.leave(channel, mb) is False


def test_broadcast_reaches_every_member(channel, mailbox):
    members = [mailbox() for _ in range(5)]
    for mb in members:
        pubsub.join(channel, mb)
    pubsub.broadcast(channel, "t", "hello")
    for mb in members:
        assert mb.recv_nowait().payload == "hello"
        assert len(mb) == 0


def test_broadcast_to_a_channel_without_members_is_a_no_op(channel):
    assert pubsub.broadcast(channel, "t", 1) is None
    assert channel not in pubsub.which_channels()


def test_non_member_does_not_receive(channel, mailbox):
    outsider = mailbox()
    pubsub.join(channel, mailbox())
    pubsub.broadcast(channel, "t", 1)
    assert len(outsider) == 0


def test_local_broadcast_reaches_local_members(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.local_broadcast(channel, "t", "local")
    assert mb.recv_nowait().payload == "local"


def test_sender_that_is_a_member_receives_its_own_broadcast(
        channel, mailbox):
    me, peer = mailbox(), mailbox()
    pubsub.join(channel, me)
    pubsub.join(channel, peer)
    pubsub.broadcast(channel, "t", "mine", sender=me)
    assert me.recv_nowait().payload == "mine"
    assert peer.recv_nowait().payload == "mine"


def test_sender_given_as_mailbox_is_its_pid(channel, mailbox):
    me, peer = mailbox(), mailbox()
    pubsub.join(channel, peer)
    pubsub.broadcast(channel, "t", 1, sender=me)
    assert peer.recv_nowait().sender == me.pid


def test_sender_given_as_local_pid_is_that_pid(channel, mailbox):
    me, peer = mailbox(), mailbox()
    pubsub.join(channel, peer)
    pubsub.broadcast(channel, "t", 1, sender=me.pid)
    assert peer.recv_nowait().sender == me.pid


def test_sender_of_a_closed_mailbox_is_still_its_pid(channel, mailbox):
    me, peer = mailbox(), mailbox()
    pid = me.pid
    me.close()
    pubsub.join(channel, peer)
    pubsub.broadcast(channel, "t", 1, sender=me)
    assert peer.recv_nowait().sender == pid


def test_sender_defaults_to_none(channel, mailbox):
    peer = mailbox()
    pubsub.join(channel, peer)
    pubsub.broadcast(channel, "t", 1)
    pubsub.broadcast(channel, "t", 2, sender=None)
    assert [m.sender for m in peer.recv_many()] == [None, None]


def test_broadcast_from_one_sender_arrives_in_order(channel, mailbox):
    me, peer = mailbox(), mailbox()
    pubsub.join(channel, peer)
    for i in range(1000):
        pubsub.broadcast(channel, "t", i, sender=me)
    assert [m.payload for m in peer.recv_many()] == list(range(1000))


def test_get_members_lists_every_member(
        channel, mailbox):
    a, b, c = mailbox(), mailbox(), mailbox()
    for mb in (a, b, c):
        pubsub.join(channel, mb)
    assert sorted(pubsub.get_members(channel)) == sorted(
        [a.pid, b.pid, c.pid])


def test_channel_without_members_disappears(channel, mailbox):
    a, b = mailbox(), mailbox()
    pubsub.join(channel, a)
    pubsub.join(channel, b)
    pubsub.leave(channel, a)
    assert channel in pubsub.which_channels()
    pubsub.leave(channel, b)
    assert channel not in pubsub.which_channels()
    assert pubsub.get_members(channel) == []


def test_which_channels_lists_each_channel_once(new_channel, mailbox):
    mb = mailbox()
    names = [new_channel() for _ in range(3)]
    for name in names:
        pubsub.join(name, mb)
        pubsub.join(name, mb)
    listed = pubsub.which_channels()
    for name in names:
        assert listed.count(name) == 1


def test_get_members_of_an_unknown_channel_is_empty(channel):
    assert pubsub.get_members(channel) == []
    assert pubsub.get_local_members(channel) == []


def test_a_mailbox_joins_one_channel_at_most_1024_times(channel):
    with pubsub.Mailbox() as mb:
        for _ in range(1024):
            mb.join(channel)
        with pytest.raises(ValueError, match="1024 times"):
            mb.join(channel)
        with pytest.raises(ValueError, match="1024 times"):
            pubsub.join(channel, mb)
        assert len(pubsub.get_members(channel)) == 1024
        assert mb.leave(channel)
        mb.join(channel)              # room for one again
        assert len(pubsub.get_members(channel)) == 1024
        mb.join(channel + "-other")   # other channels are not counted
