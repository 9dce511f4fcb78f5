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
import weakref

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


_running_loop = asyncio._get_running_loop


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Reader:
    """A mailbox's descriptor registered with one event loop, kept there.

    The loop holds this object through its reader callback; it holds the
    mailbox only weakly, so a mailbox nobody else holds is still
    collected, and its weakref callback removes the reader before the
    mailbox's descriptor is closed (a descriptor number left in the
    loop's selector would be mistaken for the next file to reuse it).
    """

    __slots__ = ("loop", "fd", "mailbox", "waiters")

    def __init__(self, mailbox: Mailbox, loop: asyncio.AbstractEventLoop
                 ) -> None:
        self.loop = loop
        self.fd = mailbox.fileno()
        self.mailbox = weakref.ref(mailbox, self._collected)
        self.waiters: list[asyncio.Future] = []
        loop.add_reader(self.fd, self._ready)

    def _ready(self) -> None:
        """The descriptor is readable: reset it and wake every waiter."""
        mailbox = self.mailbox()
        if mailbox is None:
            self.stop()
            return
        mailbox._clear_wake()
        self.wake_all()
        if mailbox.closed and getattr(mailbox, "_reader", None) is self:
            # Closed from another thread (or as a slow consumer): the
            # waiters above see MailboxClosed; nothing more will come.
            mailbox._reader = None
            self.stop()

    def _collected(self, ref: weakref.ref) -> None:
        # Runs in whichever thread dropped the mailbox, before its
        # descriptor is closed.  Removing the reader must happen now, not
        # by call_soon_threadsafe: by then the number may name another
        # file.  epoll_ctl is thread-safe, and the selector's map is a
        # dict changed under the GIL; a loop that had already picked the
        # event up finds the key gone or this reader stopped.
        self.stop()

    def stop(self) -> None:
        """Take the reader off its loop (a closed loop has none left)."""
        fd, self.fd = self.fd, -1
        if fd >= 0 and not self.loop.is_closed():
            self.loop.remove_reader(fd)

    def wake_all(self) -> None:
        for waiter in self.waiters:
            _resolve(waiter)


class Mailbox(_core.Mailbox):
    """Mailbox(capacity=None, overflow="drop_oldest")

    A FIFO of :class:`Message` tuples with a cluster-wide :attr:`pid`.
    Join it to channels; read it from one consumer (a thread, a task).

    ``capacity`` bounds the queue (``None``: unbounded, like Erlang's).
    When full, ``overflow`` decides: ``"drop_oldest"`` and ``"drop_newest"``
    drop a message and count it in :attr:`dropped`; ``"close"`` closes the
    mailbox as a slow consumer, so its reader gets :class:`SlowConsumer`.
    """

    # The event-loop reader, set by the first wait that needs one.
    __slots__ = ("_reader",)

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
        reader = getattr(self, "_reader", None)
        if reader is None or reader.loop is not loop:
            reader = self._watch(loop)
        waiter = loop.create_future()
        reader.waiters.append(waiter)
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, _resolve, waiter)
        try:
            await waiter
        finally:
            reader.waiters.remove(waiter)
            if timer is not None:
                timer.cancel()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> _Reader:
        """Register this mailbox's descriptor with loop, for good.

        The reader stays registered while the mailbox lives, so a wait
        costs a future and no epoll_ctl.  A reader left on another loop
        (asyncio.run() once per test, say) is taken off it first.
        """
        old = getattr(self, "_reader", None)
        if old is not None:
            old.stop()
        self._reader = _Reader(self, loop)
        return self._reader

    def close(self) -> None:
        """Close the mailbox: it leaves its channels, its waiters wake with
        :class:`MailboxClosed` and its event-loop reader is removed."""
        super().close()
        self._unwatch()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _unwatch(self) -> None:
        """Remove the loop reader now if that is safe from here.

        From the loop's own thread, or while the loop is not running, it
        goes at once; while the loop runs on another thread, the close has
        made the descriptor readable and the reader removes itself on the
        loop's thread when it sees the mailbox closed.
        """
        reader = getattr(self, "_reader", None)
        if reader is not None and (reader.loop is _running_loop() or
                                   not reader.loop.is_running()):
            self._reader = None
            reader.stop()
            reader.wake_all()

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
