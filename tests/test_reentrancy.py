"""Python code that runs in the middle of a delivery cannot spoil it.

A message dropped by a full mailbox is released during the broadcast that
dropped it; when it held the last reference to its payload, the payload's
``__del__`` runs then, and may join, leave, close or broadcast.  Each test
arms such a payload in a "trap" mailbox placed among the members, checks
that ``__del__`` really ran inside the broadcast, and that every member
that was not itself touched got the message exactly once.
"""
import pubsub


class Tripwire:
    """A payload whose finaliser runs action() and records when it ran."""

    def __init__(self, action, log):
        self.action = action
        self.log = log

    def __del__(self):
        self.log.append("fired")
        self.action()


def arm(trap, action):
    """Queue a Tripwire in trap (a full mailbox) as its only reference.

    Returns the log that __del__ appends to.
    """
    log = []
    assert pubsub.send(trap.pid, "armed", Tripwire(action, log))
    assert len(trap) == 1 and log == []
    return log


def broadcast_and_check_fired(log, *args, **kwargs):
    """Broadcast; assert the trap fired during the call, not before."""
    assert log == []
    pubsub.broadcast(*args, **kwargs)
    assert log == ["fired"]


def payloads(mb):
    return [m.payload for m in mb.recv_many()]


def test_member_leaving_during_fanout_makes_no_one_miss_it(
        channel, mailbox):
    first, trap, middle, last = (mailbox(), mailbox(1, "drop_oldest"),
                                 mailbox(), mailbox())
    for mb in (first, trap, middle, last):
        pubsub.join(channel, mb)
    # Removing the first member moves the last one into its slot.
    log = arm(trap, lambda: pubsub.leave(channel, first))
    broadcast_and_check_fired(log, channel, "t", "news")
    assert payloads(middle) == ["news"]
    assert payloads(last) == ["news"]
    assert payloads(first) in (["news"], [])
    assert first.pid not in pubsub.get_members(channel)


def test_member_leaving_later_in_the_order_still_gets_its_copy_once(
        channel, mailbox):
    trap, a, b = mailbox(1, "drop_oldest"), mailbox(), mailbox()
    for mb in (trap, a, b):
        pubsub.join(channel, mb)
    log = arm(trap, lambda: pubsub.leave(channel, b))
    broadcast_and_check_fired(log, channel, "t", "news")
    assert payloads(a) == ["news"]
    assert payloads(b) in (["news"], [])


def test_member_joining_during_fanout_is_not_given_that_message(
        channel, mailbox):
    a, trap, b, late = (mailbox(), mailbox(1, "drop_oldest"), mailbox(),
                        mailbox())
    for mb in (a, trap, b):
        pubsub.join(channel, mb)
    log = arm(trap, lambda: pubsub.join(channel, late))
    broadcast_and_check_fired(log, channel, "t", "first")
    assert payloads(a) == ["first"]
    assert payloads(b) == ["first"]
    assert payloads(late) == []
    pubsub.broadcast(channel, "t", "second")
    assert payloads(late) == ["second"]


def test_many_joins_during_fanout_make_no_one_miss_it(channel, mailbox):
    # Enough joins to make the channel's member array move in memory.
    members = [mailbox() for _ in range(3)]
    trap = mailbox(1, "drop_oldest")
    newcomers = [mailbox() for _ in range(200)]
    for mb in members[:1] + [trap] + members[1:]:
        pubsub.join(channel, mb)

    def join_all():
        for mb in newcomers:
            pubsub.join(channel, mb)

    log = arm(trap, join_all)
    broadcast_and_check_fired(log, channel, "t", "news")
    for mb in members:
        assert payloads(mb) == ["news"]
    assert len(pubsub.get_members(channel)) == 204


def test_member_closed_during_fanout_makes_no_one_miss_it(
        channel, mailbox):
    a, trap, victim, b = (mailbox(), mailbox(1, "drop_oldest"), mailbox(),
                          mailbox())
    for mb in (a, trap, victim, b):
        pubsub.join(channel, mb)
    log = arm(trap, victim.close)
    broadcast_and_check_fired(log, channel, "t", "news")
    assert payloads(a) == ["news"]
    assert payloads(b) == ["news"]
    assert victim.closed
    assert victim.pid not in pubsub.get_members(channel)


def test_every_member_leaving_during_fanout_removes_the_channel(
        channel, mailbox):
    a, trap, b = mailbox(), mailbox(1, "drop_oldest"), mailbox()
    for mb in (a, trap, b):
        pubsub.join(channel, mb)

    def everyone_leaves():
        for mb in (a, trap, b):
            pubsub.leave(channel, mb)

    log = arm(trap, everyone_leaves)
    broadcast_and_check_fired(log, channel, "t", "news")
    assert payloads(a) == ["news"]
    assert payloads(b) == ["news"]
    assert channel not in pubsub.which_channels()
    assert pubsub.get_members(channel) == []


def test_broadcast_from_inside_a_fanout_keeps_per_sender_order(
        channel, mailbox):
    sender = mailbox()
    a, trap, b = mailbox(), mailbox(1, "drop_oldest"), mailbox()
    for mb in (a, trap, b):
        pubsub.join(channel, mb)
    log = arm(trap, lambda: pubsub.broadcast(channel, "t", "inner",
                                             sender=sender))
    broadcast_and_check_fired(log, channel, "t", "outer", sender=sender)
    assert payloads(a) == ["outer", "inner"]
    assert payloads(b) == ["outer", "inner"]
    assert payloads(trap) == ["inner"]


def test_slow_consumer_closed_by_a_broadcast_may_run_code_safely(
        channel, mailbox):
    # The trap overflows under "close": closing it releases its queue,
    # whose payload's __del__ makes another member leave.
    a, trap, b, c = (mailbox(), mailbox(1, "close"), mailbox(), mailbox())
    for mb in (a, trap, b, c):
        pubsub.join(channel, mb)
    log = arm(trap, lambda: pubsub.leave(channel, a))
    broadcast_and_check_fired(log, channel, "t", "news")
    assert trap.closed
    for mb in (b, c):
        assert payloads(mb) == ["news"]
    assert sorted(pubsub.get_members(channel)) == sorted([b.pid, c.pid])


def test_watcher_dropping_an_event_during_join_may_run_code(
        channel, mailbox):
    # A full watcher drops its oldest message to take the join event; the
    # dropped payload's __del__ broadcasts on the channel just joined.
    watcher = mailbox(1, "drop_oldest")
    pubsub.monitor(watcher, channel)
    joiner = mailbox()
    log = arm(watcher, lambda: pubsub.broadcast(channel, "t", "hi"))
    pubsub.join(channel, joiner)
    assert log == ["fired"]
    assert payloads(joiner) == ["hi"]
    (event,) = watcher.recv_many()
    assert event == (channel, None, pubsub.JOIN, joiner.pid)


def test_closing_the_trap_itself_during_fanout_is_safe(channel, mailbox):
    a, trap, b = mailbox(), mailbox(1, "drop_oldest"), mailbox()
    for mb in (a, trap, b):
        pubsub.join(channel, mb)
    log = arm(trap, trap.close)
    broadcast_and_check_fired(log, channel, "t", "news")
    assert trap.closed
    assert payloads(a) == ["news"]
    assert payloads(b) == ["news"]


def test_code_run_while_a_mailbox_closes_cannot_reach_it(channel, mailbox):
    # close() releases the queue: a payload's __del__ that broadcasts to
    # the channel, sends to the closing mailbox or joins it again finds
    # it already gone, and the other members are served.
    closing, other = mailbox(), mailbox()
    pubsub.join(channel, closing)
    pubsub.join(channel, other)
    seen = []

    def poke():
        pubsub.broadcast(channel, "t", "from __del__")
        seen.append(pubsub.send(closing.pid, "t", "direct"))
        try:
            pubsub.join(channel, closing)
        except pubsub.MailboxClosed:
            seen.append("refused")

    log = arm(closing, poke)
    closing.close()
    assert log == ["fired"]
    assert seen == [False, "refused"]
    assert payloads(other) == ["from __del__"]
    assert len(closing) == 0
    assert pubsub.get_members(channel) == [other.pid]


def test_code_run_while_a_mailbox_is_collected_cannot_reach_it(
        channel, mailbox):
    doomed, other = pubsub.Mailbox(), mailbox()
    pid = doomed.pid
    pubsub.join(channel, doomed)
    pubsub.join(channel, other)
    seen = []

    def poke():
        seen.append(pubsub.send(pid, "t", "direct"))
        seen.append(pubsub.get_members(channel))
        pubsub.broadcast(channel, "t", "from __del__")

    log = arm(doomed, poke)
    del doomed
    assert log == ["fired"]
    assert seen == [False, [other.pid]]
    assert payloads(other) == ["from __del__"]
