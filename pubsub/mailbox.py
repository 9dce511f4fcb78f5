"""The Mailbox: the C type plus the ways Python code waits on it.

The C base class (``pubsub._core.Mailbox``) holds the queue and does every
receive that does not wait, and the blocking ``recv`` (which releases the
GIL while it waits).  This subclass adds asyncio and iteration on top of
the wake-up descriptor, so a coroutine waits on the event loop itself: no
thread per mailbox and no polling.
"""
from __future__ import annotations

import asyncio
import math
import numbers

from . import _core
from ._core import Empty, MailboxClosed, SlowConsumer, Timeout

__all__ = ["Mailbox"]


def _check_timeout(timeout: float | None) -> None:
    """Refuse what recv() refuses: a non-number, a negative or NaN."""
    if timeout is None:
        return
    if not isinstance(timeout, numbers.Real):
        raise TypeError("timeout must be a number or None, not "
                        f"{type(timeout).__name__}")
    if not timeout >= 0:
        raise ValueError("timeout must be a non-negative number or None, "
                         f"not {timeout!r}")


class Mailbox(_core.Mailbox):
    """Mailbox(capacity=None, overflow="drop_oldest")

    A FIFO of :class:`Message` tuples with a cluster-wide :attr:`pid`.
    Join it to channels; read it from one consumer (a thread, a task).

    ``capacity`` bounds the queue (``None``: unbounded, like Erlang's).
    When full, ``overflow`` decides: ``"drop_oldest"`` and ``"drop_newest"``
    drop a message and count it in :attr:`dropped`; ``"close"`` closes the
    mailbox as a slow consumer, so its reader gets :class:`SlowConsumer`.
    """

    __slots__ = ()

    async def arecv(self, timeout: float | None = None) -> _core.Message:
        """Await the next message.

        Raises :class:`Timeout` when none arrives within ``timeout``
        seconds and :class:`MailboxClosed` once the mailbox is closed.  A
        call that is cancelled while it waits consumes nothing.
        """
        _check_timeout(timeout)
        try:
            return self.recv_nowait()
        except Empty:
            pass
        loop = asyncio.get_running_loop()
        deadline = None
        if timeout is not None and not math.isinf(timeout):
            deadline = loop.time() + timeout
        while True:
            if self._prepare_wait():
                if deadline is not None and loop.time() >= deadline:
                    raise Timeout(f"no message within {timeout!r} seconds")
                await self._readable(loop, deadline)
            try:
                return self.recv_nowait()
            except Empty:
                continue

    async def _readable(self, loop: asyncio.AbstractEventLoop,
                        deadline: float | None) -> None:
        """Wait until the descriptor is readable or the deadline passes."""
        fd = self.fileno()
        waiter = loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        loop.add_reader(fd, wake)
        timer = None if deadline is None else loop.call_at(deadline, wake)
        try:
            await waiter
        finally:
            loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()
        self._clear_wake()

    def __aiter__(self) -> Mailbox:
        return self

    async def __anext__(self) -> _core.Message:
        """The next message; the iteration ends when the mailbox is closed.

        A mailbox closed as a slow consumer raises :class:`SlowConsumer`
        instead, so that the reader can tell its client why.
        """
        try:
            return await self.arecv()
        except SlowConsumer:
            raise
        except MailboxClosed:
            raise StopAsyncIteration from None

    def __iter__(self) -> Mailbox:
        return self

    def __next__(self) -> _core.Message:
        """Block for the next message; stop when the mailbox is closed."""
        try:
            return self.recv()
        except SlowConsumer:
            raise
        except MailboxClosed:
            raise StopIteration from None
