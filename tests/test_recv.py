"""Receiving from a mailbox: blocking, with a timeout, without waiting, in
batches, through a selector, and interrupted by close() or a signal."""
import gc
import selectors
import signal
import time

import pytest

import pubsub


def test_recv_returns_a_queued_message_at_once(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.broadcast(channel, "t", 1)
    assert mb.recv().payload == 1


def test_recv_blocks_until_another_thread_broadcasts(
        channel, mailbox, call_in_thread):
    mb = mailbox()
    pubsub.join(channel, mb)
    receiver = call_in_thread(lambda: mb.recv(timeout=None))
    pubsub.broadcast(channel, "t", "wake up")
    result, error = receiver.outcome()
    assert error is None
    assert result.payload == "wake up"


def test_recv_releases_the_gil_while_it_waits(
        channel, mailbox, call_in_thread):
    mb = mailbox()
    pubsub.join(channel, mb)
    receiver = call_in_thread(lambda: mb.recv(timeout=10))
    # Pure-Python work for far longer than the switch interval: were the
    # waiting thread holding the GIL, this loop would stall until its
    # recv timed out, and the receiver would report Timeout.
    deadline = time.monotonic() + 0.3
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    assert receiver.is_alive()
    pubsub.broadcast(channel, "t", "done")
    result, error = receiver.outcome()
    assert error is None and result.payload == "done"
    assert spins > 1000


def test_recv_times_out_with_timeout(mailbox):
    mb = mailbox()
    start = time.monotonic()
    with pytest.raises(pubsub.Timeout):
        mb.recv(timeout=0.2)
    elapsed = time.monotonic() - start
    assert elapsed >= 0.19
    assert elapsed < 5


def test_timeout_is_a_timeout_error(mailbox):
    with pytest.raises(TimeoutError):
        mailbox().recv(timeout=0)
    assert issubclass(pubsub.Timeout, pubsub.PubSubError)


def test_recv_with_zero_timeout_returns_a_queued_message(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.broadcast(channel, "t", "ready")
    assert mb.recv(timeout=0).payload == "ready"


@pytest.mark.parametrize("timeout", [float("inf"), 1e300, 10**12])
def test_recv_with_a_huge_timeout_waits_for_a_message(
        timeout, channel, mailbox, call_in_thread):
    mb = mailbox()
    pubsub.join(channel, mb)
    # Returns at once if recv wrongly timed out at once.
    receiver = call_in_thread(lambda: mb.recv(timeout=timeout))
    pubsub.broadcast(channel, "t", "late")
    result, error = receiver.outcome()
    assert error is None
    assert result.payload == "late"


def test_recv_nowait_raises_empty_on_an_empty_mailbox(mailbox):
    mb = mailbox()
    with pytest.raises(pubsub.Empty):
        mb.recv_nowait()
    assert issubclass(pubsub.Empty, pubsub.PubSubError)


def test_recv_nowait_returns_messages_in_order(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    for i in range(3):
        pubsub.broadcast(channel, "t", i)
    assert [mb.recv_nowait().payload for _ in range(3)] == [0, 1, 2]
    with pytest.raises(pubsub.Empty):
        mb.recv_nowait()


def test_recv_many_drains_every_message_in_order(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    for i in range(500):
        pubsub.broadcast(channel, "t", i)
    assert [m.payload for m in mb.recv_many()] == list(range(500))
    assert len(mb) == 0


def test_recv_many_respects_max(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    for i in range(10):
        pubsub.broadcast(channel, "t", i)
    assert [m.payload for m in mb.recv_many(3)] == [0, 1, 2]
    assert [m.payload for m in mb.recv_many(max=4)] == [3, 4, 5, 6]
    assert [m.payload for m in mb.recv_many(max=100)] == [7, 8, 9]
    assert mb.recv_many(max=None) == []


def test_recv_many_returns_an_empty_list_when_empty(mailbox):
    assert mailbox().recv_many() == []


def test_recv_many_on_a_closed_mailbox_raises_mailbox_closed(mailbox):
    mb = mailbox()
    mb.close()
    with pytest.raises(pubsub.MailboxClosed):
        mb.recv_many()


@pytest.mark.parametrize("gc_on", [True, False])
@pytest.mark.parametrize("queued", ["messages", "nothing", "closed"])
def test_recv_many_leaves_the_collector_as_it_found_it(
        channel, mailbox, gc_on, queued):
    """recv_many pauses the cyclic GC while it builds a batch; whatever
    the batch's outcome, the collector is on or off as before."""
    mb = mailbox()
    pubsub.join(channel, mb)
    if queued == "messages":
        for i in range(2000):
            pubsub.broadcast(channel, "t", {"i": [i]})
    elif queued == "closed":
        mb.close()
    was = gc.isenabled()
    (gc.enable if gc_on else gc.disable)()
    try:
        if queued == "closed":
            with pytest.raises(pubsub.MailboxClosed):
                mb.recv_many()
        else:
            assert len(mb.recv_many()) == (2000 if queued == "messages"
                                           else 0)
        assert gc.isenabled() is gc_on
    finally:
        (gc.enable if was else gc.disable)()


def test_len_counts_queued_messages(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    assert len(mb) == 0
    for i in range(1, 4):
        pubsub.broadcast(channel, "t", i)
        assert len(mb) == i
    mb.recv_nowait()
    assert len(mb) == 2
    mb.recv_many()
    assert len(mb) == 0


def test_fileno_is_an_int_that_stays_the_same(mailbox):
    mb = mailbox()
    fd = mb.fileno()
    assert isinstance(fd, int) and fd >= 0
    assert mb.fileno() == fd


def test_fileno_becomes_readable_when_a_message_arrives(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    with selectors.DefaultSelector() as sel:
        sel.register(mb.fileno(), selectors.EVENT_READ)
        with pytest.raises(pubsub.Empty):
            mb.recv_nowait()
        assert sel.select(timeout=0) == []
        pubsub.broadcast(channel, "t", "ping")
        assert len(sel.select(timeout=5)) == 1
        assert mb.recv_nowait().payload == "ping"


def test_fileno_is_quiet_again_after_the_mailbox_is_drained(
        channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    with selectors.DefaultSelector() as sel:
        sel.register(mb.fileno(), selectors.EVENT_READ)
        for round_ in range(3):
            assert mb.recv_many() == []
            assert sel.select(timeout=0) == []
            for i in range(5):
                pubsub.broadcast(channel, "t", (round_, i))
            assert len(sel.select(timeout=5)) == 1
            got = [m.payload for m in mb.recv_many()]
            assert got == [(round_, i) for i in range(5)]


def test_fileno_wakes_a_selector_in_another_thread(
        channel, mailbox, call_in_thread):
    mb = mailbox()
    pubsub.join(channel, mb)
    fd = mb.fileno()
    with pytest.raises(pubsub.Empty):
        mb.recv_nowait()

    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        selector = call_in_thread(lambda: sel.select(timeout=10))
        pubsub.broadcast(channel, "t", "hello")
        ready, error = selector.outcome()
    assert error is None and len(ready) == 1
    assert mb.recv_nowait().payload == "hello"


def test_fileno_becomes_readable_when_the_mailbox_is_closed(mailbox):
    mb = mailbox()
    with selectors.DefaultSelector() as sel:
        sel.register(mb.fileno(), selectors.EVENT_READ)
        with pytest.raises(pubsub.Empty):
            mb.recv_nowait()
        mb.close()
        assert len(sel.select(timeout=5)) == 1
    with pytest.raises(pubsub.MailboxClosed):
        mb.recv_nowait()


def test_close_wakes_a_thread_blocked_in_recv(mailbox, call_in_thread):
    mb = mailbox()
    receiver = call_in_thread(lambda: mb.recv(timeout=None))
    mb.close()
    result, error = receiver.outcome()
    assert isinstance(error, pubsub.MailboxClosed)
    assert result is None


def test_recv_on_a_closed_mailbox_raises_mailbox_closed(mailbox):
    mb = mailbox()
    mb.close()
    with pytest.raises(pubsub.MailboxClosed):
        mb.recv()
    with pytest.raises(pubsub.MailboxClosed):
        mb.recv(timeout=0)
    with pytest.raises(pubsub.MailboxClosed):
        mb.recv_nowait()


def test_close_drops_queued_messages(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.broadcast(channel, "t", 1)
    mb.close()
    assert len(mb) == 0


def test_iterating_a_mailbox_ends_when_it_is_closed(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    for i in range(3):
        pubsub.broadcast(channel, "t", i)
    got = []
    for msg in mb:
        got.append(msg.payload)
        if len(got) == 3:
            mb.close()
    assert got == [0, 1, 2]


class Interrupted(Exception):
    pass


@pytest.fixture
def alarm():
    """Arm SIGALRM to raise Interrupted in the main thread."""
    def raise_interrupted(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, raise_interrupted)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("timeout", [None, 5])
def test_signal_handler_exception_interrupts_a_blocking_recv(
        timeout, alarm, mailbox):
    mb = mailbox()
    alarm(0.1)
    start = time.monotonic()
    with pytest.raises(Interrupted):
        mb.recv(timeout=timeout)
    assert time.monotonic() - start < 4


def test_signal_whose_handler_returns_does_not_end_the_wait(mailbox):
    seen = []
    previous = signal.signal(signal.SIGALRM, lambda *a: seen.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        with pytest.raises(pubsub.Timeout):
            mailbox().recv(timeout=0.3)
        assert time.monotonic() - start >= 0.29
        assert seen == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
