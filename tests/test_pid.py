"""Pid: a mailbox's identity."""
import copy

import pytest

import pubsub


def test_pid_cannot_be_instantiated():
    with pytest.raises(TypeError):
        pubsub.Pid()
    with pytest.raises(TypeError):
        pubsub.Pid("nonode", 1)


def test_mailbox_pid_is_a_pid(mailbox):
    assert isinstance(mailbox().pid, pubsub.Pid)


def test_pid_of_a_mailbox_does_not_change(mailbox):
    mb = mailbox()
    assert mb.pid == mb.pid
    pid = mb.pid
    mb.close()
    assert mb.pid == pid


def test_pids_of_distinct_mailboxes_differ(mailbox):
    pids = [mailbox().pid for _ in range(100)]
    assert len(set(pids)) == 100


def test_equal_pids_hash_alike(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    (listed,) = pubsub.get_members(channel)
    assert listed == mb.pid
    assert hash(listed) == hash(mb.pid)
    assert {listed: "x"}[mb.pid] == "x"


def test_pid_is_not_equal_to_other_types(mailbox):
    pid = mailbox().pid
    assert pid != pid.id
    assert pid != repr(pid)
    assert pid != None  # noqa: E711 - the comparison is the point


def test_pids_are_ordered(mailbox):
    first, second = mailbox(), mailbox()
    assert first.pid < second.pid
    assert second.pid > first.pid
    assert first.pid <= first.pid and first.pid >= first.pid
    assert sorted([second.pid, first.pid]) == [first.pid, second.pid]


def test_pid_order_is_consistent_with_equality(mailbox):
    pids = [mailbox().pid for _ in range(20)]
    for a in pids:
        for b in pids:
            assert (a == b) == (not a < b and not b < a)


def test_pids_do_not_order_against_other_types(mailbox):
    with pytest.raises(TypeError):
        mailbox().pid < 1


def test_pid_fields(mailbox):
    pid = mailbox().pid
    assert isinstance(pid.node, str) and pid.node
    assert isinstance(pid.id, int) and pid.id > 0
    assert isinstance(pid.incarnation, int)
    assert pid.is_local is True


def test_pids_of_one_node_share_node_and_incarnation(mailbox):
    a, b = mailbox().pid, mailbox().pid
    assert (a.node, a.incarnation) == (b.node, b.incarnation)
    assert a.id != b.id


def test_pid_ids_are_never_reused(mailbox):
    first = mailbox()
    old = first.pid
    first.close()
    assert all(mailbox().pid != old for _ in range(10))


def test_pid_fields_are_read_only(mailbox):
    pid = mailbox().pid
    for field in ("node", "id", "incarnation", "is_local"):
        with pytest.raises(AttributeError):
            setattr(pid, field, 1)


def test_pid_repr_names_node_and_id(mailbox):
    pid = mailbox().pid
    text = repr(pid)
    assert text.startswith("<Pid ") and text.endswith(">")
    assert pid.node in text
    assert str(pid.id) in text
    assert str(pid) == text


def test_pid_repr_tells_pids_apart(mailbox):
    assert repr(mailbox().pid) != repr(mailbox().pid)


def test_copies_of_a_pid_are_the_pid_itself():
    with pubsub.Mailbox() as mb:
        pid = mb.pid
        assert copy.copy(pid) is pid
        assert copy.deepcopy(pid) is pid
        held = copy.deepcopy({"reply_to": [pid]})
        assert held["reply_to"][0] is pid
