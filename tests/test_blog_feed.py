"""The blog's relay loop against a real mailbox: how each ending maps to
the WebSocket close the client sees."""
import asyncio

import pubsub
from examples.blog import feed


def _relay_outcome(mailbox):
    sent = []

    async def send(text):
        sent.append(text)

    async def main():
        task = asyncio.create_task(
            feed._relay(mailbox, send, feed._feed_frame))
        await asyncio.wait({task})
        return feed._outcome(task)

    return asyncio.run(asyncio.wait_for(main(), 10)), sent


def test_a_mailbox_that_overflowed_closes_the_socket_as_slow_consumer(
        channel):
    mb = pubsub.Mailbox(capacity=2, overflow="close")
    mb.join(channel)
    for i in range(3):          # the third overflows: closed, all dropped
        pubsub.broadcast(channel, "post_created", {"id": i})
    close, sent = _relay_outcome(mb)
    assert close is feed.SLOW_CONSUMER
    assert close.code == 1013
    assert sent == []


def test_a_mailbox_closed_by_its_owner_ends_with_a_normal_close(channel):
    mb = pubsub.Mailbox(capacity=2, overflow="close")
    mb.join(channel)
    pubsub.broadcast(channel, "post_created", {"id": 1})
    mb.close()
    close, sent = _relay_outcome(mb)
    assert close is feed.NORMAL_END
    assert close.code == 1000
