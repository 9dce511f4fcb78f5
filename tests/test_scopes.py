"""Scopes: independent membership namespaces."""
import gc
import itertools
import struct

import pytest

import pubsub
from pubsub import _core
from test_cluster import nodes  # noqa: F401

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


# ---- lifetime: a scope lives while something uses it ----

def _scopes() -> int:
    gc.collect()
    return _core._registry_stats()["scopes"]


def test_registry_stats_count_scopes():
    base = _scopes()
    held = [pubsub.Scope(f"test-scope-{next(_names)}") for _ in range(3)]
    assert _scopes() == base + 3
    del held
    assert _scopes() == base


def test_many_scopes_made_and_dropped_leave_nothing_behind(mailbox):
    before = _core._registry_stats()
    base = _scopes()
    mb, watch = mailbox(), mailbox()
    for i in range(20_000):
        sc = pubsub.Scope(f"user_{i}_{next(_names)}")
        sc.join("inbox", mb)
        sc.monitor(watch, "inbox")
        sc.broadcast("inbox", "t", i)
        assert sc.leave("inbox", mb) is True
        sc.demonitor(watch, "inbox")
    del sc
    mb.recv_many(100_000)
    watch.recv_many(100_000)
    assert _scopes() == base
    after = _core._registry_stats()
    # The two mailboxes above are alive and registered meanwhile.
    assert after.pop("mailboxes") == before.pop("mailboxes") + 2
    assert after == before


def test_scope_made_twice_shares_membership_after_the_first_goes(
        channel, mailbox):
    name = f"test-scope-{next(_names)}"
    base = _scopes()
    mb = mailbox()
    pubsub.Scope(name).join(channel, mb)     # the Scope object is dropped
    assert _scopes() == base + 1             # the membership keeps it
    again = pubsub.Scope(name)
    assert again.get_members(channel) == [mb.pid]
    assert again.which_channels() == [channel]
    del again
    mb.close()                               # the last use goes
    assert _scopes() == base
    assert pubsub.Scope(name).get_members(channel) == []


def test_a_scope_watcher_keeps_its_scope_until_it_closes(channel, mailbox):
    name = f"test-scope-{next(_names)}"
    base = _scopes()
    watch, mb = mailbox(), mailbox()
    pubsub.Scope(name).monitor(watch)
    assert _scopes() == base + 1
    pubsub.Scope(name).join(channel, mb)
    assert watch.recv_nowait().topic == pubsub.JOIN
    mb.close()
    assert watch.recv_nowait().topic == pubsub.LEAVE
    assert _scopes() == base + 1
    watch.close()
    assert _scopes() == base


def test_the_default_scope_is_never_freed():
    base = _scopes()
    default = pubsub.Scope(pubsub.default_scope.name)
    assert default == pubsub.default_scope
    del default
    assert _scopes() == base
    assert pubsub.Scope("default") == pubsub.default_scope


# ---- scopes named by a remote peer ----

def test_a_sync_naming_50000_scopes_is_served_and_freed(nodes):
    """A peer's SYNC creates the scopes it names (their members are seen
    by a Scope made later); the node keeps serving its honest peer, and
    when the peer goes, the scope count is back where it was."""
    from test_cluster import _mesh
    from test_cluster_hostile import SYNC, authenticate, entry, frame

    a = nodes("a")
    b = nodes("b", seeds=[a])
    _mesh(a, b)
    a.call("mailbox", mb="m")
    a.call("join", mb="m", channel="honest")
    b.call("wait_members", channel="honest", n=1)
    base = a.call("registry_stats")["stats"]["scopes"]
    n = 50_000
    s = authenticate(a)
    try:
        a.call("wait_nodes", nodes=["b", "fake"])
        s.sendall(frame(SYNC, struct.pack(">I", n) + b"".join(
            entry(b"remote-%d" % i, b"c", 7, 1) for i in range(n))))
        # Entries are applied in order: the last one in means all are.
        members = a.call("wait_members", scope=f"remote-{n - 1}",
                         channel="c", n=1, timeout=15)["members"]
        assert members[0].startswith("<Pid fake#")
        a.call("wait_members", scope="remote-123", channel="c", n=1)
        assert a.call("registry_stats")["stats"]["scopes"] == base + n
        # The honest peer is served: its broadcast lands, its join shows.
        b.call("broadcast", channel="honest", payload="'still here'")
        msgs = a.call("recv", mb="m", n=1, timeout=10)["messages"]
        assert msgs and msgs[0][3] == "'still here'"
        b.call("mailbox", mb="late")
        b.call("join", mb="late", channel="after", scope="remote-5")
        a.call("wait_members", channel="after", scope="remote-5", n=1,
               timeout=10)
    finally:
        s.close()
    a.call("wait_nodes", nodes=["b"], timeout=10)
    # Scope remote-5 still has b's member; the rest are gone.
    assert a.call("registry_stats")["stats"]["scopes"] == base + 1
    b.call("close", mb="late")
    a.call("wait_members", channel="after", scope="remote-5", n=0)
    assert a.call("registry_stats")["stats"]["scopes"] == base
