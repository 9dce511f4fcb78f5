"""cpubsub: process-group publish/subscribe for Python, with its core in C.

Mailboxes join channels; a broadcast on a channel reaches every member
mailbox, in this process and on every node of the cluster, as a
``Message(channel, sender, topic, payload)`` tuple::

    import pubsub

    with pubsub.Mailbox() as mb:
        mb.join("posts")
        pubsub.broadcast("posts", "post_created", {"id": 1})
        channel, sender, topic, payload = mb.recv()

The membership functions act on the default scope; ``Scope(name)``
gives an independent namespace with them as methods (``send`` is not
one: it names a pid).  Errors form one tree::

    PubSubError
     +-- Empty            recv_nowait() found nothing
     +-- MailboxClosed    (also ValueError) the mailbox is closed
     |    +-- SlowConsumer   closed because it overflowed its capacity
     +-- Timeout          (also TimeoutError) recv(timeout) ran out
     +-- CodecError       (also ValueError) bad encoded data
     +-- ProtocolError    a peer broke the node protocol
     +-- PeerLost         (also ConnectionError) the node is not connected
"""
from ._core import (
    JOIN,
    LEAVE,
    MAX_CHANNEL,
    MAX_JOINS,
    NODEDOWN,
    NODEUP,
    CodecError,
    Empty,
    MailboxClosed,
    Message,
    PeerLost,
    Pid,
    ProtocolError,
    PubSubError,
    Scope,
    SlowConsumer,
    Timeout,
    decode,
    default_scope,
    encode,
    send,
    set_codec_hooks,
)
from .cluster import (
    cluster_stats,
    connect,
    demonitor_nodes,
    listen_address,
    monitor_nodes,
    node_name,
    nodes,
    start_node,
    start_node_from_env,
    stop_node,
)
from .mailbox import Mailbox
from .worker import Worker

def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cpubsub")
    except PackageNotFoundError:    # imported from a source tree
        return "unknown"


__version__ = _installed_version()

join = default_scope.join
leave = default_scope.leave
broadcast = default_scope.broadcast
local_broadcast = default_scope.local_broadcast
get_members = default_scope.get_members
get_local_members = default_scope.get_local_members
which_channels = default_scope.which_channels
monitor = default_scope.monitor
demonitor = default_scope.demonitor

__all__ = [
    "CodecError",
    "Empty",
    "JOIN",
    "LEAVE",
    "MAX_CHANNEL",
    "MAX_JOINS",
    "Mailbox",
    "MailboxClosed",
    "Message",
    "NODEDOWN",
    "NODEUP",
    "PeerLost",
    "Pid",
    "ProtocolError",
    "PubSubError",
    "Scope",
    "SlowConsumer",
    "Timeout",
    "Worker",
    "broadcast",
    "cluster_stats",
    "connect",
    "decode",
    "default_scope",
    "demonitor",
    "demonitor_nodes",
    "encode",
    "get_local_members",
    "get_members",
    "join",
    "leave",
    "listen_address",
    "local_broadcast",
    "monitor",
    "monitor_nodes",
    "node_name",
    "nodes",
    "send",
    "set_codec_hooks",
    "start_node",
    "start_node_from_env",
    "stop_node",
    "which_channels",
]
