"""The Message tuple: its fields, unpacking, indexing and matching."""
import pytest

import pubsub


def _one(channel, mailbox, topic="t", payload=None, **kw):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.broadcast(channel, topic, payload, **kw)
    return mb.recv_nowait()


def test_message_is_a_tuple_subclass(channel, mailbox):
    msg = _one(channel, mailbox)
    assert isinstance(msg, tuple)
    assert isinstance(msg, pubsub.Message)
    assert len(msg) == 4


def test_message_has_named_fields(channel, mailbox):
    sender = mailbox()
    msg = _one(channel, mailbox, "post_created", {"id": 1}, sender=sender)
    assert msg.channel == channel
    assert msg.sender == sender.pid
    assert msg.topic == "post_created"
    assert msg.payload == {"id": 1}


def test_message_unpacks_into_four_names(channel, mailbox):
    ch, sender, topic, payload = _one(channel, mailbox, "t", 42)
    assert (ch, sender, topic, payload) == (channel, None, "t", 42)


def test_message_indexes_in_field_order(channel, mailbox):
    msg = _one(channel, mailbox, b"raw", [1])
    assert msg[0] == channel
    assert msg[1] is None
    assert msg[2] == b"raw"
    assert msg[3] == [1]
    assert msg[-1] == [1]
    assert msg[:2] == (channel, None)


def test_message_equals_the_plain_tuple(channel, mailbox):
    assert _one(channel, mailbox, "t", 1) == (channel, None, "t", 1)


def test_message_matches_a_class_pattern_with_keywords(channel, mailbox):
    msg = _one(channel, mailbox, "post_created", {"id": 7})
    match msg:
        case pubsub.Message(topic="post_deleted"):
            got = "wrong clause"
        case pubsub.Message(channel=ch, topic="post_created",
                            payload={"id": post_id}):
            got = (ch, post_id)
        case _:
            got = "no clause"
    assert got == (channel, 7)


def test_message_matches_a_positional_class_pattern(channel, mailbox):
    sender = mailbox()
    msg = _one(channel, mailbox, "t", "p", sender=sender)
    match msg:
        case pubsub.Message(ch, s, t, p):
            got = (ch, s, t, p)
        case _:
            got = None
    assert got == (channel, sender.pid, "t", "p")


def test_message_matches_a_sequence_pattern(channel, mailbox):
    msg = _one(channel, mailbox, "t", 3)
    match msg:
        case (_, None, "t", n):
            got = n
        case _:
            got = None
    assert got == 3


def test_message_fields_are_read_only(channel, mailbox):
    msg = _one(channel, mailbox)
    try:
        msg.topic = "other"
    except AttributeError:
        pass
    else:
        raise AssertionError("a Message field could be assigned")
    assert msg.topic == "t"


def test_str_topic_arrives_as_str_and_bytes_topic_as_bytes(
        channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.broadcast(channel, "text", None)
    pubsub.broadcast(channel, b"bin", None)
    first, second = mb.recv_many()
    assert type(first.topic) is str and first.topic == "text"
    assert type(second.topic) is bytes and second.topic == b"bin"


def test_local_payload_is_the_same_object(channel, mailbox):
    payload = {"big": list(range(1000))}
    assert _one(channel, mailbox, "t", payload).payload is payload


def test_every_member_gets_the_same_payload_object(channel, mailbox):
    a, b = mailbox(), mailbox()
    pubsub.join(channel, a)
    pubsub.join(channel, b)
    payload = object()
    pubsub.broadcast(channel, "t", payload)
    assert a.recv_nowait().payload is payload
    assert b.recv_nowait().payload is payload


def test_payload_may_be_any_object(channel, mailbox):
    class Opaque:
        pass

    for payload in (None, Opaque(), lambda: 1, iter([]), object):
        assert _one(channel, mailbox, "t", payload).payload is payload


def test_channel_field_is_the_broadcast_channel_str(channel, mailbox):
    msg = _one(channel, mailbox)
    assert type(msg.channel) is str
    assert msg.channel == channel


def test_message_built_by_hand_takes_the_delivered_shapes(mailbox):
    pid = mailbox().pid
    assert pubsub.Message("c", pid, "t", 1) == ("c", pid, "t", 1)
    assert pubsub.Message(None, None, b"t", None) == (None, None, b"t", None)


@pytest.mark.parametrize("args, field", [
    ((1, None, "t", None), "channel must be str or None, not int"),
    ((b"c", None, "t", None), "channel must be str or None, not bytes"),
    (("c", "node@x", "t", None), "sender must be a Pid or None, not str"),
    (("c", None, 7, None), "topic must be str or bytes, not int"),
    (("c", None, None, None), "topic must be str or bytes, not NoneType"),
])
def test_message_built_by_hand_refuses_other_shapes(args, field):
    with pytest.raises(TypeError, match=field):
        pubsub.Message(*args)
