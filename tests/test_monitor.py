"""Monitors: a mailbox watching a channel's or a scope's joins and leaves
(pg:monitor)."""
import gc

import pytest

import pubsub


def events(watcher):
    return watcher.recv_many()


def join_event(channel, mb):
    return (channel, None, pubsub.JOIN, mb.pid)


def leave_event(channel, mb):
    return (channel, None, pubsub.LEAVE, mb.pid)


def test_join_and_leave_topics_are_distinct_strs():
    assert isinstance(pubsub.JOIN, str) and isinstance(pubsub.LEAVE, str)
    assert pubsub.JOIN != pubsub.LEAVE


def test_monitor_returns_the_current_members(channel, mailbox):
    a, b, watcher = mailbox(), mailbox(), mailbox()
    pubsub.join(channel, a)
    pubsub.join(channel, b)
    pubsub.join(channel, b)
    members = pubsub.monitor(watcher, channel)
    assert sorted(members) == sorted([a.pid, b.pid, b.pid])
    assert events(watcher) == []


def test_monitor_of_an_empty_channel_returns_no_members(channel, mailbox):
    assert pubsub.monitor(mailbox(), channel) == []


def test_monitor_delivers_a_join_event(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.monitor(watcher, channel)
    pubsub.join(channel, mb)
    (event,) = events(watcher)
    assert isinstance(event, pubsub.Message)
    assert event == join_event(channel, mb)
    assert event.topic == pubsub.JOIN and event.payload == mb.pid


def test_monitor_delivers_a_leave_event(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.join(channel, mb)
    pubsub.monitor(watcher, channel)
    pubsub.leave(channel, mb)
    assert events(watcher) == [leave_event(channel, mb)]


def test_monitor_delivers_one_event_per_duplicate_join(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.monitor(watcher, channel)
    pubsub.join(channel, mb)
    pubsub.join(channel, mb)
    pubsub.leave(channel, mb)
    assert events(watcher) == [join_event(channel, mb),
                               join_event(channel, mb),
                               leave_event(channel, mb)]


def test_leave_of_a_non_member_makes_no_event(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.monitor(watcher, channel)
    assert pubsub.leave(channel, mb) is False
    assert events(watcher) == []


def test_closing_a_member_delivers_a_leave_event_per_join(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.join(channel, mb)
    pubsub.join(channel, mb)
    pubsub.monitor(watcher, channel)
    mb.close()
    assert events(watcher) == [leave_event(channel, mb)] * 2


def test_collecting_a_member_delivers_a_leave_event(channel, mailbox):
    watcher = mailbox()
    mb = pubsub.Mailbox()
    pid = mb.pid
    pubsub.join(channel, mb)
    pubsub.monitor(watcher, channel)
    del mb
    gc.collect()
    assert events(watcher) == [(channel, None, pubsub.LEAVE, pid)]


def test_slow_consumer_closing_delivers_a_leave_event(channel, mailbox):
    watcher, slow = mailbox(), mailbox(1, "close")
    pubsub.join(channel, slow)
    pubsub.monitor(watcher, channel)
    pubsub.broadcast(channel, "t", 1)
    pubsub.broadcast(channel, "t", 2)
    assert slow.closed
    assert events(watcher) == [leave_event(channel, slow)]


def test_channel_monitor_ignores_other_channels(
        new_channel, mailbox):
    watched, other = new_channel(), new_channel()
    watcher, mb = mailbox(), mailbox()
    pubsub.monitor(watcher, watched)
    pubsub.join(other, mb)
    pubsub.leave(other, mb)
    assert events(watcher) == []


def test_monitor_does_not_receive_broadcasts(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.join(channel, mb)
    pubsub.monitor(watcher, channel)
    pubsub.broadcast(channel, "t", "not for watchers")
    assert events(watcher) == []


def test_watcher_that_is_a_member_sees_its_own_join(channel, mailbox):
    watcher = mailbox()
    pubsub.monitor(watcher, channel)
    pubsub.join(channel, watcher)
    pubsub.broadcast(channel, "t", "hello")
    assert events(watcher) == [join_event(channel, watcher),
                               (channel, None, "t", "hello")]


def test_scope_wide_monitor_sees_every_channel_of_the_scope(
        new_channel, mailbox):
    scope = pubsub.Scope(new_channel())
    first, second = new_channel(), new_channel()
    watcher, mb = mailbox(), mailbox()
    assert scope.monitor(watcher) is None
    scope.join(first, mb)
    scope.join(second, mb)
    mb.close()
    got = events(watcher)
    assert got[:2] == [join_event(first, mb), join_event(second, mb)]
    assert sorted(got[2:]) == sorted([leave_event(first, mb),
                                      leave_event(second, mb)])


def test_scope_wide_monitor_ignores_other_scopes(new_channel, mailbox):
    scope = pubsub.Scope(new_channel())
    watcher, mb = mailbox(), mailbox()
    scope.monitor(watcher, None)
    pubsub.join(new_channel(), mb)
    pubsub.Scope(new_channel()).join(new_channel(), mb)
    assert events(watcher) == []


def test_channel_monitor_in_a_scope_ignores_the_default_scope(
        new_channel, channel, mailbox):
    scope = pubsub.Scope(new_channel())
    watcher, mb = mailbox(), mailbox()
    scope.monitor(watcher, channel)
    pubsub.join(channel, mb)
    assert events(watcher) == []
    scope.join(channel, mb)
    assert events(watcher) == [join_event(channel, mb)]


def test_channel_and_scope_monitors_each_deliver_an_event(
        new_channel, channel, mailbox):
    scope = pubsub.Scope(new_channel())
    watcher, mb = mailbox(), mailbox()
    scope.monitor(watcher, channel)
    scope.monitor(watcher)
    scope.join(channel, mb)
    assert events(watcher) == [join_event(channel, mb)] * 2


def test_demonitor_stops_the_events(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.monitor(watcher, channel)
    assert pubsub.demonitor(watcher, channel) is True
    pubsub.join(channel, mb)
    assert events(watcher) == []


def test_demonitor_without_a_monitor_returns_false(channel, mailbox):
    watcher = mailbox()
    assert pubsub.demonitor(watcher, channel) is False
    assert pubsub.demonitor(watcher) is False


def test_demonitor_undoes_one_monitor(channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.monitor(watcher, channel)
    pubsub.monitor(watcher, channel)
    assert pubsub.demonitor(watcher, channel) is True
    pubsub.join(channel, mb)
    assert events(watcher) == [join_event(channel, mb)]
    assert pubsub.demonitor(watcher, channel) is True
    assert pubsub.demonitor(watcher, channel) is False


def test_demonitor_of_the_scope_keeps_channel_monitors(
        new_channel, channel, mailbox):
    scope = pubsub.Scope(new_channel())
    watcher, mb = mailbox(), mailbox()
    scope.monitor(watcher)
    scope.monitor(watcher, channel)
    assert scope.demonitor(watcher) is True
    scope.join(channel, mb)
    assert events(watcher) == [join_event(channel, mb)]


def _channels():
    return pubsub._core._registry_stats()["channels"]


def test_monitors_of_a_closed_watcher_are_removed(new_channel, mailbox):
    names = [new_channel() for _ in range(3)]
    before = _channels()
    watcher = mailbox()
    for name in names:
        pubsub.monitor(watcher, name)
    pubsub.monitor(watcher)
    # A watched channel is kept even without members.
    assert _channels() == before + 3
    watcher.close()
    assert _channels() == before
    assert pubsub.demonitor(watcher, names[0]) is False
    assert pubsub.demonitor(watcher) is False
    mb = mailbox()
    for name in names:
        pubsub.join(name, mb)     # no event goes anywhere; nothing breaks


def test_monitors_of_a_collected_watcher_are_removed(channel, mailbox):
    before = _channels()
    watcher = pubsub.Mailbox()
    pubsub.monitor(watcher, channel)
    pubsub.monitor(watcher)
    assert _channels() == before + 1
    del watcher
    gc.collect()
    assert _channels() == before
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.leave(channel, mb)


def test_watched_channel_without_members_is_not_listed(channel, mailbox):
    pubsub.monitor(mailbox(), channel)
    assert channel not in pubsub.which_channels()
    assert pubsub.get_members(channel) == []


def test_demonitor_of_the_last_watch_frees_the_channel(channel, mailbox):
    before = _channels()
    watcher = mailbox()
    pubsub.monitor(watcher, channel)
    pubsub.demonitor(watcher, channel)
    assert _channels() == before


def test_events_keep_order_with_broadcasts(channel, mailbox):
    watcher, a, b = mailbox(), mailbox(), mailbox()
    pubsub.join(channel, watcher)
    pubsub.monitor(watcher, channel)
    pubsub.join(channel, a)
    pubsub.broadcast(channel, "t", "between")
    pubsub.leave(channel, a)
    pubsub.join(channel, b)
    assert events(watcher) == [join_event(channel, a),
                               (channel, None, "t", "between"),
                               leave_event(channel, a),
                               join_event(channel, b)]


def test_bounded_watcher_counts_dropped_events(channel, mailbox):
    watcher, mb = mailbox(2, "drop_oldest"), mailbox()
    pubsub.monitor(watcher, channel)
    for _ in range(5):
        pubsub.join(channel, mb)
    assert watcher.dropped == 3
    assert events(watcher) == [join_event(channel, mb)] * 2


@pytest.mark.parametrize("name", ["caf\u00e9", "cafe\u0301", "\udc80"])
def test_event_channel_is_the_exact_name(name, channel, mailbox):
    watcher, mb = mailbox(), mailbox()
    pubsub.monitor(watcher, channel + name)
    pubsub.join(channel + name, mb)
    (event,) = events(watcher)
    assert event.channel == channel + name
