"""Direct sends: send(pid, topic, payload, sender=None)."""
import pubsub


def test_send_delivers_a_message_without_a_channel(mailbox):
    target = mailbox()
    payload = object()
    assert pubsub.send(target.pid, "direct", payload) is True
    msg = target.recv_nowait()
    assert msg == (None, None, "direct", payload)
    assert msg.channel is None
    assert msg.payload is payload


def test_send_names_the_sender(mailbox):
    target, me = mailbox(), mailbox()
    assert pubsub.send(target.pid, "t", 1, sender=me)
    assert pubsub.send(target.pid, "t", 2, sender=me.pid)
    assert [m.sender for m in target.recv_many()] == [me.pid, me.pid]


def test_send_accepts_keyword_arguments(mailbox):
    target = mailbox()
    assert pubsub.send(pid=target.pid, topic=b"t", payload=1, sender=None)
    assert target.recv_nowait() == (None, None, b"t", 1)


def test_send_to_a_closed_mailbox_returns_false(mailbox):
    target = mailbox()
    pid = target.pid
    target.close()
    assert pubsub.send(pid, "t", 1) is False
    assert len(target) == 0


def test_send_does_not_need_a_membership(channel, mailbox):
    target = mailbox()
    assert pubsub.send(target.pid, "t", 1)
    assert pubsub.get_members(channel) == []
    assert len(target) == 1


def test_send_to_oneself_is_delivered(mailbox):
    me = mailbox()
    assert pubsub.send(me.pid, "note", "to self", sender=me)
    assert me.recv_nowait() == (None, me.pid, "note", "to self")


def test_send_and_broadcast_from_one_sender_keep_their_order(
        channel, mailbox):
    target, me = mailbox(), mailbox()
    pubsub.join(channel, target)
    expected = []
    for i in range(200):
        if i % 3 == 0:
            pubsub.send(target.pid, "direct", i, sender=me)
            expected.append((None, i))
        else:
            pubsub.broadcast(channel, "bcast", i, sender=me)
            expected.append((channel, i))
    got = [(m.channel, m.payload) for m in target.recv_many()]
    assert got == expected


def test_send_to_a_pid_from_get_members(channel, mailbox):
    target = mailbox()
    pubsub.join(channel, target)
    (pid,) = pubsub.get_members(channel)
    assert pubsub.send(pid, "t", "via members") is True
    assert target.recv_nowait().payload == "via members"


def test_send_to_a_pid_from_a_message(channel, mailbox):
    # Replying to msg.sender, as a gen_server replies to From.
    server, client = mailbox(), mailbox()
    pubsub.join(channel, server)
    pubsub.broadcast(channel, "ping", None, sender=client)
    request = server.recv_nowait()
    assert pubsub.send(request.sender, "pong", None, sender=server)
    assert client.recv_nowait() == (None, server.pid, "pong", None)


def test_reply_to_a_closed_sender_returns_false(mailbox):
    target, me = mailbox(), mailbox()
    me.close()
    # A closed mailbox may still be named as sender; a reply is dropped.
    assert pubsub.send(target.pid, "t", 1, sender=me)
    assert pubsub.send(target.recv_nowait().sender, "reply", 2) is False
