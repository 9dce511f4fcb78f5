"""The pure-Python peers: the pub/sub a Python programmer writes first.

``NaivePubSub`` is a dict from channel to a set of subscribers, each a
deque.  A broadcast builds the message tuple once and appends it to every
member's deque; a receive is the deque's own ``popleft``, a C method, so
the peer pays no Python frame on the receive side.  That is as fast as
plain Python gets without changing the API shape (broadcast a tuple,
receive from a per-subscriber queue).

``LockedPubSub`` is the same behind one ``threading.Lock``, which is what
a library needs once several threads publish and join.
"""
from __future__ import annotations

import collections
import threading


class NaiveBox(collections.deque):
    """A subscriber's queue, hashable by identity so it can sit in a set."""

    __slots__ = ()
    __hash__ = object.__hash__
    __eq__ = object.__eq__

    def recv_nowait(self) -> tuple:
        return self.popleft()


class NaivePubSub:
    """channel -> set of NaiveBox; one message tuple per broadcast."""

    def __init__(self) -> None:
        self.channels: dict[str, set[NaiveBox]] = {}

    def join(self, channel: str, box: NaiveBox) -> None:
        self.channels.setdefault(channel, set()).add(box)

    def leave(self, channel: str, box: NaiveBox) -> bool:
        members = self.channels.get(channel)
        if members is None or box not in members:
            return False
        members.discard(box)
        if not members:
            del self.channels[channel]
        return True

    def broadcast(self, channel: str, topic: object, payload: object,
                  sender: object = None) -> None:
        msg = (channel, sender, topic, payload)
        for box in self.channels.get(channel, ()):
            box.append(msg)


class LockedPubSub(NaivePubSub):
    """NaivePubSub whose table is guarded by one lock."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def join(self, channel: str, box: NaiveBox) -> None:
        with self.lock:
            super().join(channel, box)

    def broadcast(self, channel: str, topic: object, payload: object,
                  sender: object = None) -> None:
        msg = (channel, sender, topic, payload)
        with self.lock:
            for box in self.channels.get(channel, ()):
                box.append(msg)
