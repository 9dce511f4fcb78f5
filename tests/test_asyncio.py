"""Waiting for messages from asyncio: arecv() and ``async for``."""
import asyncio
import gc
import os
import threading
import time
import weakref

import pytest

import pubsub


def run(coro, timeout=10):
    """Run coro on a fresh event loop, failing it after timeout seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def blocked(coro):
    """Start coro as a task and let it run up to its first real wait."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    assert not task.done(), "the receive did not wait"
    return task


def test_arecv_returns_a_queued_message(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    pubsub.broadcast(channel, "t", "queued")

    async def main():
        return await mb.arecv()

    assert run(main()).payload == "queued"


def test_arecv_wakes_on_a_broadcast_from_the_loop(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)

    async def main():
        task = await blocked(mb.arecv())
        pubsub.broadcast(channel, "t", "from the loop")
        return await task

    assert run(main()).payload == "from the loop"


def test_arecv_wakes_on_a_broadcast_from_another_thread(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    waiting = threading.Event()

    def publisher():
        assert waiting.wait(10)
        pubsub.broadcast(channel, "t", "from a thread")

    thread = threading.Thread(target=publisher)
    thread.start()

    async def main():
        task = await blocked(mb.arecv())
        waiting.set()
        return await task

    try:
        assert run(main()).payload == "from a thread"
    finally:
        waiting.set()
        thread.join(10)


def test_arecv_wakes_on_a_direct_send(mailbox):
    mb = mailbox()

    async def main():
        task = await blocked(mb.arecv())
        assert pubsub.send(mb.pid, "direct", 1)
        return await task

    assert run(main()) == (None, None, "direct", 1)


def test_arecv_raises_timeout_when_nothing_arrives(mailbox):
    mb = mailbox()

    async def main():
        start = time.monotonic()
        with pytest.raises(pubsub.Timeout):
            await mb.arecv(timeout=0.2)
        return time.monotonic() - start

    elapsed = run(main())
    assert 0.19 <= elapsed < 5


def test_arecv_timeout_is_a_timeout_error(mailbox):
    async def main():
        await mailbox().arecv(timeout=0)

    with pytest.raises(TimeoutError):
        run(main())


def test_arecv_with_a_timeout_returns_a_message_that_arrives_in_time(
        channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)

    async def main():
        task = await blocked(mb.arecv(timeout=10))
        pubsub.broadcast(channel, "t", "in time")
        return await task

    assert run(main()).payload == "in time"


def test_cancelled_arecv_consumes_nothing(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)

    async def main():
        task = await blocked(mb.arecv())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert mb._reader.waiters == []     # the loop's reader kept none
        pubsub.broadcast(channel, "t", "after cancel")
        return await mb.arecv()

    assert run(main()).payload == "after cancel"


def test_arecv_cancelled_after_a_message_arrived_leaves_it_queued(
        channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)

    async def main():
        task = await blocked(mb.arecv())
        # The message is queued and the descriptor readable, but the task
        # has not run again when it is cancelled.
        pubsub.broadcast(channel, "t", "kept")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(mb) == 1
        return await mb.arecv()

    assert run(main()).payload == "kept"


def test_wait_for_timeout_around_arecv_consumes_nothing(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mb.arecv(), 0.05)
        pubsub.broadcast(channel, "t", "next")
        return await mb.arecv()

    assert run(main()).payload == "next"


def test_arecv_on_a_closed_mailbox_raises_mailbox_closed(mailbox):
    mb = mailbox()
    mb.close()

    async def main():
        await mb.arecv()

    with pytest.raises(pubsub.MailboxClosed):
        run(main())


def test_close_wakes_a_waiting_arecv(mailbox):
    mb = mailbox()

    async def main():
        task = await blocked(mb.arecv())
        mb.close()
        with pytest.raises(pubsub.MailboxClosed):
            await task

    run(main())


def test_close_from_another_thread_wakes_a_waiting_arecv(mailbox):
    mb = mailbox()
    waiting = threading.Event()

    def closer():
        assert waiting.wait(10)
        mb.close()

    thread = threading.Thread(target=closer)
    thread.start()

    async def main():
        task = await blocked(mb.arecv())
        waiting.set()
        with pytest.raises(pubsub.MailboxClosed):
            await task

    try:
        run(main())
    finally:
        waiting.set()
        thread.join(10)


def test_async_for_ends_when_the_mailbox_is_closed(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)

    async def consume():
        return [msg.payload async for msg in mb]

    async def main():
        task = await blocked(consume())
        mb.close()
        return await task

    assert run(main()) == []


def test_async_for_delivers_everything_queued_before_a_stop(
        channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    for i in range(5):
        pubsub.broadcast(channel, "t", i)

    async def main():
        got = []
        async for msg in mb:
            got.append(msg.payload)
            if len(got) == 5:
                mb.close()
        return got

    assert run(main()) == [0, 1, 2, 3, 4]


def test_slow_consumer_propagates_out_of_async_for(channel, mailbox):
    mb = mailbox(2, "close")
    pubsub.join(channel, mb)

    async def consume():
        async for msg in mb:
            pass

    async def main():
        task = await blocked(consume())
        for i in range(3):
            pubsub.broadcast(channel, "t", i)
        with pytest.raises(pubsub.SlowConsumer):
            await task

    run(main())


def test_many_mailboxes_are_awaited_concurrently(new_channel, mailbox):
    boxes = [(new_channel(), mailbox()) for _ in range(200)]
    for name, mb in boxes:
        pubsub.join(name, mb)
    threads_before = threading.active_count()

    async def main():
        tasks = [asyncio.ensure_future(mb.arecv()) for _, mb in boxes]
        await asyncio.sleep(0)
        assert not any(task.done() for task in tasks)
        # Waiting costs no thread per mailbox.
        assert threading.active_count() == threads_before
        for i, (name, _) in enumerate(boxes):
            pubsub.broadcast(name, "t", i)
        return await asyncio.gather(*tasks)

    got = run(main())
    assert [msg.payload for msg in got] == list(range(200))
    assert [msg.channel for msg in got] == [name for name, _ in boxes]
    assert threading.active_count() == threads_before


def test_many_tasks_waiting_on_one_channel_each_get_the_message(
        channel, mailbox):
    boxes = [mailbox() for _ in range(200)]
    for mb in boxes:
        pubsub.join(channel, mb)

    async def main():
        tasks = [asyncio.ensure_future(mb.arecv()) for mb in boxes]
        await asyncio.sleep(0)
        pubsub.broadcast(channel, "t", "all")
        return await asyncio.gather(*tasks)

    assert [msg.payload for msg in run(main())] == ["all"] * 200


async def woken(mb, channel, payload):
    """Wait in arecv until a broadcast of payload wakes it; the payload."""
    task = await blocked(mb.arecv())
    pubsub.broadcast(channel, "t", payload)
    return (await task).payload


def test_arecv_works_on_successive_event_loops(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    assert run(woken(mb, channel, "first")) == "first"
    assert run(woken(mb, channel, "second")) == "second"


# ---- the event-loop reader: registered once, removed with the mailbox ----

def registered(loop, fd):
    """Whether fd has a reader in loop's selector."""
    key = loop._selector.get_map().get(fd)
    return key is not None and key.data[0] is not None


def count_add_reader(loop):
    """Make loop count its add_reader calls; returns the count list."""
    calls = []
    add_reader = loop.add_reader

    def counting(fd, callback, *args):
        calls.append(fd)
        return add_reader(fd, callback, *args)

    loop.add_reader = counting
    return calls


def test_many_waits_register_the_reader_once(channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)

    async def main():
        loop = asyncio.get_running_loop()
        calls = count_add_reader(loop)
        for i in range(50):
            assert await woken(mb, channel, i) == i
            if i % 10 == 0:             # a wait that times out, too
                with pytest.raises(pubsub.Timeout):
                    await mb.arecv(timeout=0.001)
        assert registered(loop, mb.fileno())
        return calls

    assert run(main()) == [mb.fileno()]


@pytest.mark.parametrize("closer", ["loop", "with", "thread"])
def test_closing_removes_the_reader(closer):
    """Closed on the loop (or by leaving a with block) the reader goes at
    once; closed from another thread it goes when the loop sees it."""
    async def main():
        loop = asyncio.get_running_loop()
        mb = pubsub.Mailbox()
        task = await blocked(mb.arecv())
        fd = mb.fileno()
        assert registered(loop, fd)
        if closer == "loop":
            mb.close()
        elif closer == "with":
            with mb:
                pass
        else:
            thread = threading.Thread(target=mb.close)
            thread.start()
            thread.join(10)
        if closer != "thread":
            assert not registered(loop, fd)
        with pytest.raises(pubsub.MailboxClosed):
            await task
        assert not registered(loop, fd)
        assert mb._reader is None

    run(main())


def test_slow_consumer_close_removes_the_reader(channel, mailbox):
    mb = mailbox(capacity=1, overflow="close")
    pubsub.join(channel, mb)

    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(pubsub.Timeout):
            await mb.arecv(timeout=0.001)
        fd = mb.fileno()
        assert registered(loop, fd)
        pubsub.broadcast(channel, "t", 1)
        pubsub.broadcast(channel, "t", 2)       # overflows: closes it
        assert mb.closed
        for _ in range(10):
            await asyncio.sleep(0)
        assert not registered(loop, fd)

    run(main())


def test_a_collected_mailbox_takes_its_reader_off_the_loop(channel):
    async def main():
        loop = asyncio.get_running_loop()
        mb = pubsub.Mailbox()
        pubsub.join(channel, mb)
        assert await woken(mb, channel, 1) == 1
        fd = mb.fileno()
        assert registered(loop, fd)
        del mb
        gc.collect()
        assert not registered(loop, fd)
        # The descriptor number may now serve another file; the loop
        # takes a reader for it without tripping on a stale entry.
        r, w = os.pipe()
        try:
            loop.add_reader(r, lambda: None)
            loop.remove_reader(r)
        finally:
            os.close(r)
            os.close(w)

    run(main())


def test_moving_to_another_loop_takes_the_reader_off_the_first(
        channel, mailbox):
    mb = mailbox()
    pubsub.join(channel, mb)
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(woken(mb, channel, 1)) == 1
        assert registered(first, mb.fileno())
        assert second.run_until_complete(woken(mb, channel, 2)) == 2
        assert not registered(first, mb.fileno())
        assert registered(second, mb.fileno())
    finally:
        first.close()
        second.close()
    mb.close()                  # its loop is closed: nothing to remove


def test_a_mailbox_outliving_its_closed_loop_is_still_collected(channel):
    mb = pubsub.Mailbox()
    pubsub.join(channel, mb)
    assert run(woken(mb, channel, 1)) == 1
    ref = weakref.ref(mb)
    del mb
    gc.collect()
    assert ref() is None
    assert pubsub.get_local_members(channel) == []
