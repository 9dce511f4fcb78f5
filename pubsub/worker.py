"""Worker: a mailbox with its own thread or task, in the spirit of an
Erlang gen_server.

Subclass it, name the channels it joins, and write ``handle_message``::

    class Indexer(pubsub.Worker):
        channels = ("posts",)

        def handle_message(self, msg):
            match msg:
                case pubsub.Message(topic="post_created", payload=post):
                    index(post)

    indexer = Indexer().start()      # a thread; or: await indexer.run()
    ...
    indexer.stop()

The channels are joined before ``start`` returns, so a broadcast made
after it reaches the worker.  An exception from ``handle_message`` is
logged and the worker goes on with the next message (there is no
supervisor to restart it).  A worker whose mailbox is closed as a slow
consumer (``overflow = "close"``) logs that and ends as if stopped; a
message that cannot be received (a payload from another node that does
not decode here) is logged as lost, and the worker goes on.  If ``init``
raises, the worker ends at once: its mailbox is closed and ``terminate``
runs.  ``stop`` queues a stop request behind the
messages already received, so those are handled first (as a gen_server
handles a stop call in turn); then the mailbox is closed and
``terminate`` runs on the worker's own thread or task.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any, ClassVar, Iterable

from ._core import MailboxClosed, Message, Scope, SlowConsumer, send
from .mailbox import Mailbox

__all__ = ["Worker"]

log = logging.getLogger(__name__)

# The stop request: a direct message only this module can make.
_STOP = object()
_STOP_TOPIC = b"pubsub.worker.stop"


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:        # no running loop in this thread
        return None


class Worker:
    """A mailbox plus the loop that feeds its messages to a handler."""

    #: Channels joined when the worker starts.
    channels: ClassVar[Iterable[str]] = ()
    #: The scope they are joined in (None: the default scope).
    scope: ClassVar[Scope | None] = None
    #: Mailbox bound and overflow policy (see Mailbox).
    capacity: ClassVar[int | None] = None
    overflow: ClassVar[str] = "drop_oldest"

    def __init__(self) -> None:
        self.mailbox = Mailbox(self.capacity, self.overflow)
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> Any:
        """The worker's address: its mailbox's pid."""
        return self.mailbox.pid

    # ---- what subclasses write ----

    def init(self) -> None:
        """Runs on the worker's thread or task before the first message."""

    def handle_message(self, msg: Message) -> Any:
        """Handle one message; may be a coroutine function under asyncio."""
        raise NotImplementedError(
            f"{type(self).__name__} must define handle_message(msg)")

    def terminate(self) -> None:
        """Runs on the worker's thread or task after it stopped."""

    # ---- running on a thread ----

    def start(self) -> Worker:
        """Join the channels and run the worker on a daemon thread."""
        if self._thread is not None or self._task is not None:
            raise RuntimeError("worker already started")
        self._join()
        self._thread = threading.Thread(
            target=self._run_thread, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Handle what is queued, then stop; wait up to timeout for that.

        Past the timeout (or when the mailbox is full and refuses the stop
        request) the mailbox is closed, dropping what is still queued.

        A worker running as an asyncio task cannot be waited for here: its
        stop request is queued behind what it received and the call
        returns at once (``await worker.astop()`` waits).
        """
        task = self._task
        if task is not None and not task.done():
            if task is not _current_task():
                self._request_stop()
                return
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._request_stop()
            thread.join(timeout)
        self.mailbox.close()

    def _run_thread(self) -> None:
        try:
            self.init()
            while True:
                try:
                    msg = self.mailbox.recv()
                except MailboxClosed as exc:
                    self._closed(exc)
                    break
                except (OSError, MemoryError):
                    raise           # about the process, not one message
                except Exception:
                    self._lost()
                    continue
                if self._is_stop(msg):
                    break
                self._dispatch(msg)
        finally:
            self.mailbox.close()
            self.terminate()

    # ---- running on asyncio ----

    def start_task(self) -> asyncio.Task[None]:
        """Join the channels and run the worker as a task of this loop."""
        if self._thread is not None or self._task is not None:
            raise RuntimeError("worker already started")
        self._join()
        self._task = asyncio.get_running_loop().create_task(
            self._run_async(), name=type(self).__name__)
        return self._task

    async def run(self) -> None:
        """Join the channels and run in the calling task until stopped."""
        self._join()
        await self._run_async()

    async def astop(self) -> None:
        """Handle what is queued, then stop the task of start_task."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            self._request_stop()
            await task
        self.mailbox.close()

    async def _run_async(self) -> None:
        try:
            self.init()
            while True:
                try:
                    msg = await self.mailbox.arecv()
                except MailboxClosed as exc:
                    self._closed(exc)
                    break
                except (OSError, MemoryError):
                    raise           # about the process, not one message
                except Exception:
                    self._lost()
                    continue
                if self._is_stop(msg):
                    break
                result = self._dispatch(msg)
                if inspect.isawaitable(result):
                    try:
                        await result
                    except Exception:
                        log.exception("%s failed on %r", self, msg)
        finally:
            self.mailbox.close()
            self.terminate()

    # ---- both ----

    def _request_stop(self) -> None:
        """Queue the stop request behind what was received, or, when the
        mailbox cannot take it, close the mailbox (dropping the queue).

        A full bounded mailbox cannot take it without dropping (the
        oldest message, or the request itself) or closing as a slow
        consumer, so it is closed at once.  A drop_newest mailbox that
        fills meanwhile drops the request: a drop counted during the
        send counts as a refusal too.
        """
        mb = self.mailbox
        if mb.closed:
            return
        if mb.capacity is not None and len(mb) >= mb.capacity:
            mb.close()
            return
        dropped = mb.dropped
        send(mb.pid, _STOP_TOPIC, _STOP)
        if mb.overflow == "drop_newest" and mb.dropped != dropped:
            mb.close()

    @staticmethod
    def _is_stop(msg: Message) -> bool:
        return msg.channel is None and msg.payload is _STOP

    def _join(self) -> None:
        for channel in self.channels:
            self.mailbox.join(channel, self.scope)

    def _closed(self, exc: MailboxClosed) -> None:
        """The mailbox was closed: by stop() or close(), or (overflow=
        "close") as a slow consumer, which the worker says."""
        if isinstance(exc, SlowConsumer):
            log.error("%s stopped: its mailbox overflowed its capacity of "
                      "%s and was closed as a slow consumer", self,
                      self.capacity)

    def _lost(self) -> None:
        """A message that could not be received (a payload or topic from
        another node that does not decode here, or a decode hook that
        raised) is lost; the worker says so and goes on."""
        log.exception("%s lost a message it could not receive", self)

    def _dispatch(self, msg: Message) -> Any:
        try:
            return self.handle_message(msg)
        except Exception:
            log.exception("%s failed on %r", self, msg)
            return None

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.mailbox.pid!r}>"
