"""Shared fixtures.

The registry is process-wide, so every test works on channel names of its
own (the ``channel`` and ``new_channel`` fixtures) and closes the mailboxes
it makes (the ``mailbox`` factory), so that no test sees another's members.
"""
from __future__ import annotations

import itertools
import sys
import threading
import time
from typing import Any, Callable, Iterator

import pytest

import pubsub

_serial = itertools.count()


@pytest.fixture
def new_channel(request: pytest.FixtureRequest) -> Callable[[], str]:
    """A factory of channel names that no other test uses."""
    return lambda: f"test-{request.node.name}-{next(_serial)}"


@pytest.fixture
def channel(new_channel: Callable[[], str]) -> str:
    """A channel name of this test's own."""
    return new_channel()


@pytest.fixture
def mailbox() -> Iterator[Callable[..., pubsub.Mailbox]]:
    """A factory of mailboxes that are closed when the test ends."""
    made: list[pubsub.Mailbox] = []

    def make(*args: object, **kwargs: object) -> pubsub.Mailbox:
        mb = pubsub.Mailbox(*args, **kwargs)
        made.append(mb)
        return mb

    yield make
    for mb in made:
        mb.close()


class Caller(threading.Thread):
    """A daemon thread that calls fn() once and keeps its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # handed to the test by outcome()
            self.error = exc

    def wait_inside(self, timeout: float = 10) -> None:
        """Return once the thread is executing fn or has finished.

        fn should be a lambda wrapping one blocking call: once its frame
        is on the thread's stack, the thread is in (or entering) that
        call.  Polls the thread's stack: a readiness condition, not a
        guess at how long the thread needs.
        """
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            frame = sys._current_frames().get(self.ident)
            while frame is not None:
                if frame.f_code is self.fn.__code__:
                    return
                frame = frame.f_back
            time.sleep(0.001)
        assert not self.is_alive(), "thread never reached its call"

    def outcome(self, timeout: float = 10) -> tuple[Any, BaseException | None]:
        """Join the thread and return (result, exception)."""
        self.join(timeout)
        assert not self.is_alive(), "thread did not return"
        return self.result, self.error


@pytest.fixture
def call_in_thread() -> Iterator[Callable[[Callable[[], Any]], Caller]]:
    """Start fn() on a new thread and wait until it is inside fn."""
    started: list[Caller] = []

    def start(fn: Callable[[], Any]) -> Caller:
        caller = Caller(fn)
        started.append(caller)
        caller.start()
        caller.wait_inside()
        return caller

    yield start
    for caller in started:
        caller.join(10)
