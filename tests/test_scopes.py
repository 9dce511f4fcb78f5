"""Scopes: independent membership namespaces."""
import itertools

import pytest

import pubsub

_names = itertools.count()


@pytest.fixture
def scope():
    return pubsub.Scope(f"test-scope-{next(_names)}")


def test_scope_is_independent_of_the_default_scope(scope, channel, mailbox):
    in_default, in_scope = mailbox(), mailbox()
    pubsub.join(channel, in_default)
    scope.join(channel, in_scope)
    assert pubsub.get_members(channel) == [in_default.pid]
    assert scope.get_members(channel) == [in_scope.pid]
    pubsub.broadcast(channel, "t", "default")
    scope.broadcast(channel, "t", "scoped")
    assert [m.payload for m in in_default.recv_many()] == ["default"]
    assert [m.payload for m in in_scope.recv_many()] == ["scoped"]


def test_two_scopes_are_independent_of_each_other(channel, mailbox):
    first = pubsub.Scope(f"test-scope-{next(_names)}")
    second = pubsub.Scope(f"test-scope-{next(_names)}")
    a, b = mailbox(), mailbox()
    first.join(channel, a)
    second.join(channel, b)
    first.broadcast(channel, "t", 1)
    assert len(a) == 1 and len(b) == 0


def test_scopes_with_the_same_name_are_the_same_scope(channel, mailbox):
    name = f"test-scope-{next(_names)}"
    one, two = pubsub.Scope(name), pubsub.Scope(name)
    assert one == two
    assert not one != two
    assert hash(one) == hash(two)
    mb = mailbox()
    one.join(channel, mb)
    assert two.get_members(channel) == [mb.pid]
    two.broadcast(channel, "t", "shared")
    assert mb.recv_nowait().payload == "shared"


def test_scopes_with_different_names_are_not_equal():
    a = pubsub.Scope(f"test-scope-{next(_names)}")
    b = pubsub.Scope(f"test-scope-{next(_names)}")
    assert a != b
    assert not a == b
    assert a != a.name


def test_default_scope_is_the_scope_of_its_name():
    default = pubsub.default_scope
    assert isinstance(default, pubsub.Scope)
    assert pubsub.Scope(default.name) == default


def test_module_functions_act_on_the_default_scope(channel, mailbox):
    mb = mailbox()
    pubsub.default_scope.join(channel, mb)
    assert pubsub.get_members(channel) == [mb.pid]
    pubsub.broadcast(channel, "t", 1)
    assert pubsub.default_scope.leave(channel, mb) is True


def test_scope_name_and_repr(scope):
    assert scope.name.startswith("test-scope-")
    assert scope.name in repr(scope)
    assert repr(pubsub.Scope("x")) == "Scope('x')"


def test_scope_names_are_compared_exactly():
    assert pubsub.Scope("Café") != pubsub.Scope("Cafe\u0301")
    assert pubsub.Scope("a") != pubsub.Scope("A")


def test_mailbox_join_and_leave_take_a_scope(scope, channel, mailbox):
    mb = mailbox()
    mb.join(channel, scope)
    assert scope.get_members(channel) == [mb.pid]
    assert pubsub.get_members(channel) == []
    assert mb.leave(channel) is False
    assert mb.leave(channel, scope=scope) is True
    assert scope.get_members(channel) == []


def test_one_mailbox_may_join_a_channel_in_several_scopes(
        scope, channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    scope.join(channel, mb)
    pubsub.broadcast(channel, "t", "default")
    scope.broadcast(channel, "t", "scoped")
    assert [m.payload for m in mb.recv_many()] == ["default", "scoped"]


def test_closing_a_mailbox_leaves_every_scope(scope, channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    scope.join(channel, mb)
    mb.close()
    assert pubsub.get_members(channel) == []
    assert scope.get_members(channel) == []


def test_which_channels_is_per_scope(scope, channel, mailbox):
    mb = mailbox()
    scope.join(channel, mb)
    assert scope.which_channels() == [channel]
    assert channel not in pubsub.which_channels()


def test_scope_local_broadcast_and_local_members(scope, channel, mailbox):
    mb = mailbox()
    scope.join(channel, mb)
    assert scope.get_local_members(channel) == [mb.pid]
    scope.local_broadcast(channel, "t", "local")
    assert mb.recv_nowait().payload == "local"


def test_scope_attributes_are_read_only(scope):
    with pytest.raises(AttributeError):
        scope.name = "other"
