"""Shared fixtures.

The registry is process-wide, so every test works on channel names of its
own (the ``channel`` fixture and ``fresh_channel``) and closes the mailboxes
it makes (the ``mailbox`` factory), so that no test sees another's members.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterator

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
