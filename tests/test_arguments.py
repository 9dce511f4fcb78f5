"""Bad arguments raise TypeError or ValueError naming the argument, and a
refused broadcast delivers nothing."""
import asyncio
import threading

import pytest

import pubsub


@pytest.fixture
def member(channel, mailbox):
    """A mailbox joined to channel, which must stay empty."""
    mb = mailbox()
    pubsub.join(channel, mb)
    yield mb
    assert len(mb) == 0, "a refused call delivered something"


class NotAStr:
    def __str__(self):
        return "looks like a channel"


@pytest.mark.parametrize("bad", [None, 1, b"bytes", bytearray(b"x"),
                                 NotAStr(), ["list"]])
def test_broadcast_refuses_a_non_str_channel(bad, member):
    for fn in (pubsub.broadcast, pubsub.local_broadcast):
        with pytest.raises(TypeError, match="channel"):
            fn(bad, "t", 1)


@pytest.mark.parametrize("bad", [None, 1, b"bytes", NotAStr()])
def test_membership_calls_refuse_a_non_str_channel(bad, mailbox):
    mb = mailbox()
    for call in (lambda: pubsub.join(bad, mb),
                 lambda: pubsub.leave(bad, mb),
                 lambda: mb.join(bad),
                 lambda: mb.leave(bad),
                 lambda: pubsub.get_members(bad),
                 lambda: pubsub.get_local_members(bad)):
        with pytest.raises(TypeError, match="channel"):
            call()
    if bad is not None:     # None stands for the whole scope here
        with pytest.raises(TypeError, match="channel"):
            pubsub.monitor(mb, bad)
        with pytest.raises(TypeError, match="channel"):
            pubsub.demonitor(mb, bad)


def test_str_subclass_is_a_channel_name(channel, mailbox):
    class Name(str):
        pass

    mb = mailbox()
    pubsub.join(Name(channel), mb)
    pubsub.broadcast(channel, "t", 1)
    assert mb.recv_nowait().payload == 1


@pytest.mark.parametrize("bad", [None, 1, 1.5, bytearray(b"t"),
                                 memoryview(b"t"), ("t",), NotAStr()])
def test_broadcast_refuses_a_topic_neither_str_nor_bytes(
        bad, channel, member):
    for fn in (pubsub.broadcast, pubsub.local_broadcast):
        with pytest.raises(TypeError, match="topic"):
            fn(channel, bad, 1)


@pytest.mark.parametrize("bad", [None, "mailbox", 1, object()])
def test_join_and_leave_refuse_a_non_mailbox(bad, channel):
    for fn in (pubsub.join, pubsub.leave):
        with pytest.raises(TypeError, match="mailbox"):
            fn(channel, bad)
    assert pubsub.get_members(channel) == []


def test_monitor_refuses_a_non_mailbox(channel):
    with pytest.raises(TypeError, match="mailbox"):
        pubsub.monitor("not a mailbox", channel)
    with pytest.raises(TypeError, match="mailbox"):
        pubsub.demonitor(None, channel)


def test_join_with_a_closed_mailbox_raises_mailbox_closed(channel, mailbox):
    mb = mailbox()
    mb.close()
    for call in (lambda: pubsub.join(channel, mb), lambda: mb.join(channel)):
        with pytest.raises(pubsub.MailboxClosed) as info:
            call()
        assert isinstance(info.value, ValueError)
    assert pubsub.get_members(channel) == []


def test_monitor_with_a_closed_mailbox_raises_mailbox_closed(
        channel, mailbox):
    mb = mailbox()
    mb.close()
    with pytest.raises(pubsub.MailboxClosed, match="mailbox"):
        pubsub.monitor(mb, channel)


@pytest.mark.parametrize("bad", [0, -1, -(2**70), 2**70])
def test_mailbox_refuses_a_capacity_out_of_range(bad):
    with pytest.raises(ValueError, match="capacity"):
        pubsub.Mailbox(bad)
    with pytest.raises(ValueError, match="capacity"):
        pubsub.Mailbox(capacity=bad)


@pytest.mark.parametrize("bad", [True, False, 1.0, "3", [3]])
def test_mailbox_refuses_a_capacity_that_is_not_an_int(bad):
    with pytest.raises(TypeError, match="capacity"):
        pubsub.Mailbox(bad)


@pytest.mark.parametrize("bad", ["bogus", "", "DROP_OLDEST", "drop-oldest",
                                 None, 1])
def test_mailbox_refuses_an_unknown_overflow_policy(bad):
    with pytest.raises(ValueError, match="overflow"):
        pubsub.Mailbox(4, bad)
    with pytest.raises(ValueError, match="overflow"):
        pubsub.Mailbox(capacity=4, overflow=bad)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "close"])
def test_mailbox_accepts_each_overflow_policy(policy):
    with pubsub.Mailbox(4, policy) as mb:
        assert mb.capacity == 4
        assert mb.overflow == policy


def test_unbounded_mailbox_reports_no_capacity():
    with pubsub.Mailbox() as mb:
        assert mb.capacity is None
        assert mb.dropped == 0


@pytest.mark.parametrize("bad", [1, "pid", object(), b"x"])
def test_broadcast_refuses_a_bad_sender(bad, channel, member):
    for fn in (pubsub.broadcast, pubsub.local_broadcast):
        with pytest.raises(TypeError, match="sender"):
            fn(channel, "t", 1, sender=bad)


def test_send_refuses_a_bad_sender(mailbox):
    target = mailbox()
    with pytest.raises(TypeError, match="sender"):
        pubsub.send(target.pid, "t", 1, sender="me")
    assert len(target) == 0


def test_send_refuses_a_non_pid(mailbox):
    target = mailbox()
    for bad in (target, target.pid.id, None, "pid"):
        with pytest.raises(TypeError, match="pid"):
            pubsub.send(bad, "t", 1)
    assert len(target) == 0


def test_send_refuses_a_bad_topic(mailbox):
    target = mailbox()
    with pytest.raises(TypeError, match="topic"):
        pubsub.send(target.pid, 1, "payload")
    assert len(target) == 0


def test_broadcast_refuses_missing_and_extra_arguments(channel, member):
    with pytest.raises(TypeError, match="payload"):
        pubsub.broadcast(channel, "t")
    with pytest.raises(TypeError):
        pubsub.broadcast(channel, "t", 1, None, "extra")
    with pytest.raises(TypeError, match="colour"):
        pubsub.broadcast(channel, "t", 1, colour="red")
    with pytest.raises(TypeError, match="topic"):
        pubsub.broadcast(channel, "t", 1, topic="again")


def test_broadcast_accepts_keyword_arguments(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.broadcast(channel=channel, topic="t", payload=1, sender=mb)
    assert mb.recv_nowait() == (channel, mb.pid, "t", 1)


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("-inf")])
def test_recv_refuses_a_negative_or_nan_timeout(bad, mailbox):
    mb = mailbox()
    with pytest.raises(ValueError, match="timeout"):
        mb.recv(timeout=bad)


@pytest.mark.parametrize("bad", ["1", [], object()])
def test_recv_refuses_a_timeout_that_is_not_a_number(bad, mailbox):
    mb = mailbox()
    with pytest.raises(TypeError, match="timeout"):
        mb.recv(timeout=bad)


@pytest.mark.parametrize("bad", [0, -1])
def test_recv_many_refuses_a_max_below_one(bad, mailbox):
    with pytest.raises(ValueError, match="max"):
        mailbox().recv_many(bad)


@pytest.mark.parametrize("bad", ["1", 1.5])
def test_recv_many_refuses_a_max_that_is_not_an_int(bad, mailbox):
    with pytest.raises(TypeError, match="max"):
        mailbox().recv_many(bad)


def test_scope_argument_of_mailbox_join_must_be_a_scope(channel, mailbox):
    mb = mailbox()
    with pytest.raises(TypeError, match="scope"):
        mb.join(channel, "default")
    with pytest.raises(TypeError, match="scope"):
        mb.leave(channel, 1)
    assert pubsub.get_members(channel) == []


@pytest.mark.parametrize("bad", [None, 1, b"name"])
def test_scope_refuses_a_non_str_name(bad):
    with pytest.raises(TypeError, match="name"):
        pubsub.Scope(bad)


def test_scope_refuses_a_name_over_the_limit():
    with pytest.raises(ValueError, match="name"):
        pubsub.Scope("s" * (pubsub.MAX_CHANNEL + 1))


@pytest.mark.parametrize("bad", [-1, float("nan"), "1", []])
def test_arecv_refuses_what_recv_refuses(bad, mailbox):
    mb = mailbox()
    assert pubsub.send(mb.pid, "t", "kept")
    error = TypeError if isinstance(bad, (str, list)) else ValueError
    with pytest.raises(error, match="timeout"):
        asyncio.run(mb.arecv(timeout=bad))
    assert mb.recv_nowait().payload == "kept"


def test_an_int_timeout_past_any_float_waits_like_forever():
    mb = pubsub.Mailbox()
    timer = threading.Timer(0.1, pubsub.send, (mb.pid, "t", "late"))
    timer.start()
    try:
        assert mb.recv(timeout=10 ** 400).payload == "late"
    finally:
        timer.cancel()
    with pytest.raises(ValueError, match="timeout"):
        mb.recv(timeout=-(10 ** 400))
