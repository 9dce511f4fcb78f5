"""Worker: a mailbox with its own thread or asyncio task."""
import asyncio
import logging
import queue
import threading

import pytest

import pubsub
import pubsub.worker


def run(coro, timeout=10):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def make_worker(names):
    """A worker class on channels names that records what happens to it."""

    class Recorder(pubsub.Worker):
        channels = tuple(names)

        def __init__(self):
            super().__init__()
            self.handled = queue.Queue()
            self.threads = {}

        def init(self):
            self.threads["init"] = threading.get_ident()

        def handle_message(self, msg):
            self.threads.setdefault("handle", threading.get_ident())
            self.handled.put(msg)

        def terminate(self):
            self.threads["terminate"] = threading.get_ident()

    return Recorder


def next_payload(worker):
    return worker.handled.get(timeout=10).payload


def test_channels_are_joined_before_start_returns(new_channel):
    names = [new_channel(), new_channel()]
    worker = make_worker(names)().start()
    try:
        for name in names:
            assert pubsub.get_members(name) == [worker.pid]
        pubsub.broadcast(names[0], "t", "right after start")
        assert next_payload(worker) == "right after start"
    finally:
        worker.stop()


def test_handle_message_gets_each_message_in_order(channel):
    worker = make_worker([channel])().start()
    try:
        sender = pubsub.Mailbox()
        for i in range(100):
            pubsub.broadcast(channel, "t", i, sender=sender)
        got = [worker.handled.get(timeout=10) for _ in range(100)]
        assert [m.payload for m in got] == list(range(100))
        assert all(m.channel == channel and m.sender == sender.pid
                   for m in got)
        sender.close()
    finally:
        worker.stop()


def test_worker_receives_direct_sends_to_its_pid(channel):
    worker = make_worker([channel])().start()
    try:
        assert pubsub.send(worker.pid, "direct", "hi")
        msg = worker.handled.get(timeout=10)
        assert msg == (None, None, "direct", "hi")
    finally:
        worker.stop()


def test_init_handle_and_terminate_run_on_the_worker_thread(channel):
    worker = make_worker([channel])().start()
    pubsub.broadcast(channel, "t", 1)
    next_payload(worker)
    worker.stop()
    ids = worker.threads
    assert set(ids) == {"init", "handle", "terminate"}
    assert len(set(ids.values())) == 1
    assert ids["init"] != threading.get_ident()


def test_stop_handles_queued_messages_first(channel, monkeypatch):
    gate, stop_queued = threading.Event(), threading.Event()
    handled = []

    class Slow(pubsub.Worker):
        channels = (channel,)

        def handle_message(self, msg):
            if msg.payload == 0:
                assert gate.wait(10)
            handled.append(msg.payload)

        def terminate(self):
            handled.append("terminated")

    real_send = pubsub.worker.send

    def send_then_signal(*args, **kwargs):
        result = real_send(*args, **kwargs)
        stop_queued.set()
        return result

    monkeypatch.setattr(pubsub.worker, "send", send_then_signal)
    worker = Slow().start()
    for i in range(10):
        pubsub.broadcast(channel, "t", i)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    assert stop_queued.wait(10)
    gate.set()
    stopper.join(10)
    assert handled == list(range(10)) + ["terminated"]
    assert worker.mailbox.closed
    assert pubsub.get_members(channel) == []


def test_stop_leaves_the_channels(channel):
    worker = make_worker([channel])().start()
    worker.stop()
    assert pubsub.get_members(channel) == []
    assert not worker._thread.is_alive()


def test_exception_in_handle_message_is_logged_and_worker_goes_on(
        channel, caplog):
    class Fragile(pubsub.Worker):
        channels = (channel,)

        def __init__(self):
            super().__init__()
            self.handled = queue.Queue()

        def handle_message(self, msg):
            if msg.payload == "boom":
                raise RuntimeError("handler broke")
            self.handled.put(msg)

    caplog.set_level(logging.ERROR, logger="pubsub")
    worker = Fragile().start()
    try:
        pubsub.broadcast(channel, "t", "boom")
        pubsub.broadcast(channel, "t", "fine")
        assert worker.handled.get(timeout=10).payload == "fine"
    finally:
        worker.stop()
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.name.startswith("pubsub")
    assert record.levelno == logging.ERROR
    assert isinstance(record.exc_info[1], RuntimeError)


def test_worker_without_handle_message_logs_not_implemented(
        channel, caplog):
    class Bare(pubsub.Worker):
        channels = (channel,)

    caplog.set_level(logging.ERROR, logger="pubsub")
    worker = Bare().start()
    pubsub.broadcast(channel, "t", 1)
    worker.stop()
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert len(errors) == 1
    assert isinstance(errors[0], NotImplementedError)


def test_worker_is_a_context_manager(channel):
    with make_worker([channel])() as worker:
        assert worker._thread.is_alive()
        pubsub.broadcast(channel, "t", "inside")
        assert next_payload(worker) == "inside"
    assert worker.mailbox.closed
    assert not worker._thread.is_alive()
    assert "terminate" in worker.threads


def test_worker_cannot_be_started_twice(channel):
    worker = make_worker([channel])().start()
    try:
        with pytest.raises(RuntimeError):
            worker.start()
    finally:
        worker.stop()


def test_worker_stop_is_idempotent(channel):
    worker = make_worker([channel])().start()
    worker.stop()
    worker.stop()
    assert worker.mailbox.closed


def test_worker_joins_channels_in_its_scope(channel):
    scope = pubsub.Scope("worker-test-scope")

    class Scoped(make_worker([channel])):
        pass

    Scoped.scope = scope
    worker = Scoped().start()
    try:
        assert scope.get_members(channel) == [worker.pid]
        assert pubsub.get_members(channel) == []
        scope.broadcast(channel, "t", "scoped")
        assert next_payload(worker) == "scoped"
    finally:
        worker.stop()


def test_worker_mailbox_uses_its_capacity_and_overflow(channel):
    class Bounded(make_worker([channel])):
        capacity = 5
        overflow = "drop_newest"

    worker = Bounded()
    assert worker.mailbox.capacity == 5
    assert worker.mailbox.overflow == "drop_newest"
    worker.stop()


def test_worker_repr_names_the_class_and_pid(channel):
    worker = make_worker([channel])()
    assert type(worker).__name__ in repr(worker)
    assert repr(worker.pid) in repr(worker)
    worker.stop()


# ---- asyncio ----


def make_async_worker(names, coroutine_handler=True):
    """An asyncio worker class recording its task and messages."""

    class AsyncRecorder(pubsub.Worker):
        channels = tuple(names)

        def __init__(self):
            super().__init__()
            self.handled = []
            self.tasks = {}
            self.arrived = None

        def init(self):
            self.tasks["init"] = asyncio.current_task()
            self.arrived = asyncio.Event()

        if coroutine_handler:
            async def handle_message(self, msg):
                self.tasks.setdefault("handle", asyncio.current_task())
                await asyncio.sleep(0)
                self.handled.append(msg.payload)
                self.arrived.set()
        else:
            def handle_message(self, msg):
                self.tasks.setdefault("handle", asyncio.current_task())
                self.handled.append(msg.payload)
                self.arrived.set()

        def terminate(self):
            self.tasks["terminate"] = asyncio.current_task()

    return AsyncRecorder


async def until_handled(worker, count):
    while len(worker.handled) < count:
        worker.arrived.clear()
        await worker.arrived.wait()


@pytest.mark.parametrize("coroutine_handler", [True, False])
def test_async_worker_handles_a_broadcast_made_right_after_start(
        coroutine_handler, channel):
    worker = make_async_worker([channel], coroutine_handler)()

    async def main():
        task = worker.start_task()
        assert pubsub.get_members(channel) == [worker.pid]
        pubsub.broadcast(channel, "t", "early")
        await asyncio.sleep(0)
        await until_handled(worker, 1)
        await worker.astop()
        return task

    task = run(main())
    assert worker.handled == ["early"]
    assert task.done()


def test_async_handle_message_coroutine_is_awaited(channel):
    worker = make_async_worker([channel])()

    async def main():
        worker.start_task()
        for i in range(20):
            pubsub.broadcast(channel, "t", i)
        await asyncio.sleep(0)
        await until_handled(worker, 20)
        await worker.astop()

    run(main())
    assert worker.handled == list(range(20))


def test_async_init_handle_terminate_run_in_the_worker_task(channel):
    worker = make_async_worker([channel])()

    async def main():
        task = worker.start_task()
        pubsub.broadcast(channel, "t", 1)
        await asyncio.sleep(0)
        await until_handled(worker, 1)
        await worker.astop()
        return task

    task = run(main())
    assert worker.tasks == {"init": task, "handle": task,
                            "terminate": task}


def test_async_astop_handles_queued_messages_first(channel):
    worker = make_async_worker([channel])()

    async def main():
        worker.start_task()
        for i in range(50):
            pubsub.broadcast(channel, "t", i)
        await worker.astop()

    run(main())
    assert worker.handled == list(range(50))
    assert "terminate" in worker.tasks
    assert worker.mailbox.closed
    assert pubsub.get_members(channel) == []


def test_async_handler_exception_is_logged_and_worker_goes_on(
        channel, caplog):
    class Fragile(pubsub.Worker):
        channels = (channel,)

        def __init__(self):
            super().__init__()
            self.handled = []

        async def handle_message(self, msg):
            await asyncio.sleep(0)
            if msg.payload == "boom":
                raise ValueError("async handler broke")
            self.handled.append(msg.payload)

    caplog.set_level(logging.ERROR, logger="pubsub")
    worker = Fragile()

    async def main():
        worker.start_task()
        for payload in ("before", "boom", "after"):
            pubsub.broadcast(channel, "t", payload)
        await worker.astop()

    run(main())
    assert worker.handled == ["before", "after"]
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_async_run_serves_in_the_calling_task_until_closed(channel):
    worker = make_async_worker([channel])()

    async def main():
        serving = asyncio.ensure_future(worker.run())
        await asyncio.sleep(0)
        assert pubsub.get_members(channel) == [worker.pid]
        pubsub.broadcast(channel, "t", "served")
        await until_handled(worker, 1)
        worker.mailbox.close()
        await serving
        return serving

    serving = run(main())
    assert worker.handled == ["served"]
    assert worker.tasks["terminate"] is serving


def test_async_worker_cannot_be_started_twice(channel):
    worker = make_async_worker([channel])()

    async def main():
        worker.start_task()
        with pytest.raises(RuntimeError):
            worker.start_task()
        with pytest.raises(RuntimeError):
            worker.start()
        await worker.astop()

    run(main())


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "close"])
def test_stop_returns_when_the_mailbox_is_full(
        overflow, channel, call_in_thread, caplog):
    handling, gate = threading.Event(), threading.Event()

    class Full(pubsub.Worker):
        channels = (channel,)
        capacity = 2

        def handle_message(self, msg):
            handling.set()
            assert gate.wait(10)

    Full.overflow = overflow
    worker = Full().start()
    pubsub.broadcast(channel, "t", "being handled")
    assert handling.wait(10)
    pubsub.broadcast(channel, "t", 1)
    pubsub.broadcast(channel, "t", 2)
    assert len(worker.mailbox) == 2
    dropped = worker.mailbox.dropped
    stopper = call_in_thread(lambda: worker.stop())
    gate.set()
    result, error = stopper.outcome(timeout=10)
    assert error is None
    assert worker.mailbox.closed
    assert not worker._thread.is_alive()
    # Stopping closed it; nothing was pushed into the full mailbox, so
    # nothing more was dropped and it was not taken for a slow consumer.
    assert worker.mailbox.dropped == dropped
    assert "slow consumer" not in caplog.text


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_astop_returns_when_the_mailbox_is_full(overflow, channel):
    class Full(pubsub.Worker):
        channels = (channel,)
        capacity = 2

        def init(self):
            self.handling, self.gate = asyncio.Event(), asyncio.Event()

        async def handle_message(self, msg):
            self.handling.set()
            await self.gate.wait()

    Full.overflow = overflow
    worker = Full()

    async def main():
        task = worker.start_task()
        pubsub.broadcast(channel, "t", "being handled")
        await asyncio.sleep(0)
        await worker.handling.wait()
        pubsub.broadcast(channel, "t", 1)
        pubsub.broadcast(channel, "t", 2)
        assert len(worker.mailbox) == 2
        stopping = asyncio.ensure_future(worker.astop())
        await asyncio.sleep(0)
        worker.gate.set()
        await stopping
        return task

    task = run(main())
    assert task.done()
    assert worker.mailbox.closed


def _slow_close_worker(channel, gate):
    class Behind(pubsub.Worker):
        channels = (channel,)
        capacity = 2
        overflow = "close"

        def __init__(self):
            super().__init__()
            self.handled = []
            self.terminated = threading.Event()

        def handle_message(self, msg):
            self.handled.append(msg.payload)
            gate.wait(10)

        def terminate(self):
            self.terminated.set()

    return Behind()


def test_worker_closed_as_slow_consumer_logs_and_ends_cleanly(
        channel, caplog):
    gate = threading.Event()
    worker = _slow_close_worker(channel, gate)
    caught = []
    old_hook = threading.excepthook
    threading.excepthook = caught.append
    try:
        worker.start()
        pubsub.broadcast(channel, "t", 0)
        while not worker.handled:           # 0 is being handled
            worker.terminated.wait(0.01)
        for i in range(1, 4):               # 1, 2 fill it; 3 overflows
            pubsub.broadcast(channel, "t", i)
        assert worker.mailbox.closed
        with caplog.at_level(logging.ERROR, logger="pubsub.worker"):
            gate.set()
            assert worker.terminated.wait(10)
            worker._thread.join(10)
        assert not worker._thread.is_alive()
    finally:
        threading.excepthook = old_hook
        gate.set()
        worker.stop()
    assert caught == []
    assert worker.handled == [0]
    assert pubsub.get_members(channel) == []
    assert "slow consumer" in caplog.text


def test_async_worker_closed_as_slow_consumer_ends_cleanly(channel, caplog):
    gate = threading.Event()
    gate.set()
    worker = _slow_close_worker(channel, gate)

    async def main():
        task = worker.start_task()
        for i in range(3):                  # before the task runs: 3 > 2
            pubsub.broadcast(channel, "t", i)
        with caplog.at_level(logging.ERROR, logger="pubsub.worker"):
            await task                      # ends, raises nothing
        assert worker.terminated.is_set()

    run(main())
    assert worker.handled == []
    assert "slow consumer" in caplog.text


def test_init_that_raises_ends_the_worker_and_closes_its_mailbox(channel):
    terminated = threading.Event()
    caught = []

    class Broken(pubsub.Worker):
        channels = (channel,)

        def init(self):
            raise RuntimeError("no database")

        def handle_message(self, msg):
            raise AssertionError("never reached")

        def terminate(self):
            terminated.set()

    old_hook = threading.excepthook
    threading.excepthook = caught.append
    try:
        worker = Broken().start()
        assert terminated.wait(10)
        worker._thread.join(10)
    finally:
        threading.excepthook = old_hook
    assert [type(c.exc_value) for c in caught] == [RuntimeError]
    assert worker.mailbox.closed
    assert pubsub.get_members(channel) == []


def test_async_init_that_raises_ends_the_task_and_closes_the_mailbox(
        channel):
    class Broken(pubsub.Worker):
        channels = (channel,)

        def init(self):
            raise RuntimeError("no database")

    async def main():
        worker = Broken()
        with pytest.raises(RuntimeError, match="no database"):
            await worker.start_task()
        return worker

    worker = run(main())
    assert worker.mailbox.closed
    assert pubsub.get_members(channel) == []


def test_sync_stop_of_an_async_worker_handles_what_is_queued(channel):
    handled = []

    class Collector(pubsub.Worker):
        channels = (channel,)

        def handle_message(self, msg):
            handled.append(msg.payload)

    async def main():
        worker = Collector()
        task = worker.start_task()
        for i in range(3):
            pubsub.broadcast(channel, "t", i)
        worker.stop()                   # from the loop, outside the task
        await task
        return worker

    worker = run(main())
    assert handled == [0, 1, 2]
    assert worker.mailbox.closed
