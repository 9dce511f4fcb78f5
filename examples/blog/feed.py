"""The live WebSocket endpoints: ``/feed`` and ``/posts/{id}/comments/ws``.

Each connection owns one mailbox, bounded with ``overflow="close"``: a
client that stops reading lets at most ``capacity`` messages pile up, after
which the mailbox closes itself, leaves its channels, and the socket is
closed with code 1013 (try again later).  A send that stays blocked longer
than the send timeout (the client's TCP window is shut) ends the same way.

The mailbox joins its channels *before* the handshake is accepted, so once
a client's connect returns, every later broadcast on this node reaches it:
clients and tests can rely on that instead of waiting.

Two tasks serve a connection: one reads the client's frames (answering
``ping``), one relays the mailbox with ``async for``.  Whichever ends first
(disconnect, closed mailbox, deleted post) ends the other.
"""
import asyncio
import json
import logging
from dataclasses import dataclass

import pubsub
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from . import events

log = logging.getLogger(__name__)

# RFC 6455 close codes.
NORMAL = 1000
POLICY_VIOLATION = 1008
INTERNAL_ERROR_CODE = 1011
TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class Close:
    """What a relay ends with: the close frame to send, if any."""

    code: int
    reason: str


SLOW_CONSUMER = Close(TRY_AGAIN_LATER, "slow consumer: too many unread messages")
POST_GONE = Close(NORMAL, "post deleted")
NORMAL_END = Close(NORMAL, "feed closed")
INTERNAL_ERROR = Close(INTERNAL_ERROR_CODE, "internal error")


async def feed(websocket):
    """``GET /feed``: every change to posts and comments, as JSON text.

    Each frame is ``{"channel": ..., "event": topic, "data": payload}``.
    The text frame ``ping`` is answered with ``pong``.
    """
    mailbox = _mailbox(websocket)
    try:
        mailbox.join(events.POSTS)
        mailbox.join(events.COMMENTS)
        await websocket.accept()
        await _serve(websocket, mailbox, _feed_frame)
    finally:
        mailbox.close()


async def post_comments(websocket):
    """``GET /posts/{post_id}/comments/ws``: new comments of one post.

    Each frame is the comment as JSON.  An unknown or malformed post id is
    refused at the handshake (HTTP 404, or close code 1008 on a server
    without the denial-response extension).  When the post is deleted the
    socket is closed with code 1000.
    """
    store = websocket.app.state.store
    post_id = events.parse_id(websocket.path_params["post_id"])
    if post_id is None or await run_in_threadpool(store.get_post, post_id) is None:
        await _refuse(websocket)
        return
    mailbox = _mailbox(websocket)
    try:
        mailbox.join(events.post_comments_channel(post_id))
        # The post may have been deleted between the lookup and the join,
        # in which case its post_deleted went out before we listened.
        if await run_in_threadpool(store.get_post, post_id) is None:
            await _refuse(websocket)
            return
        await websocket.accept()
        await _serve(websocket, mailbox, _comment_frame)
    finally:
        mailbox.close()


def _mailbox(websocket):
    capacity = websocket.app.state.feed_capacity
    return pubsub.Mailbox(capacity=capacity, overflow="close")


async def _refuse(websocket):
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = JSONResponse({"error": "post not found"}, status_code=404)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(POLICY_VIOLATION, "post not found")


async def _serve(websocket, mailbox, render):
    """Run the reader and the relay until one ends; close as it says."""
    send_lock = asyncio.Lock()
    send_timeout = websocket.app.state.send_timeout

    async def send(text):
        # Frames from the two tasks must not interleave on the socket.  A
        # send that cannot finish in time means the client's TCP window is
        # shut: the mailbox would only find out once it overflowed, after
        # the send unblocked, so the timeout ends the relay sooner.
        async with send_lock:
            await asyncio.wait_for(websocket.send_text(text), send_timeout)

    reader = asyncio.create_task(_read(websocket, send))
    relay = asyncio.create_task(_relay(mailbox, send, render))
    try:
        done, _ = await asyncio.wait(
            {reader, relay}, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (reader, relay):
            task.cancel()
        await asyncio.gather(reader, relay, return_exceptions=True)

    close = _outcome(relay if relay in done else reader)
    if close is None:
        return
    # The close frame may wait behind a full socket too; leave the channels
    # first so nothing more is queued for this client meanwhile.
    mailbox.close()
    if close is SLOW_CONSUMER:
        log.warning(
            "closing %s: slow consumer (%d messages dropped)",
            websocket.url.path,
            mailbox.dropped,
        )
    try:
        await websocket.close(close.code, close.reason)
    except Exception:  # the client may be gone already
        log.debug("close after the relay ended failed", exc_info=True)


def _outcome(task):
    """How a finished task wants the connection closed, or None for no close."""
    if task.cancelled():
        return None
    exc = task.exception()
    if exc is None:
        return task.result()
    # A send blocked past the send timeout, or the mailbox overflowed
    # (async for raises SlowConsumer): either way the client fell behind.
    if isinstance(exc, (asyncio.TimeoutError, pubsub.SlowConsumer)):
        return SLOW_CONSUMER
    if isinstance(exc, (WebSocketDisconnect, OSError)):
        log.debug("client gone: %r", exc)
        return None
    log.error("WebSocket task failed", exc_info=exc)
    return INTERNAL_ERROR


async def _read(websocket, send):
    """Answer ``ping`` with ``pong``; ignore other frames; end on disconnect."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "ping":
            await send("pong")


async def _relay(mailbox, send, render):
    """Send each message as ``render`` formats it; return how to close.

    ``render`` returns the text to send, None to skip the message, or a
    Close to end the connection.  A mailbox that overflowed raises
    SlowConsumer out of the loop; no one else closes it while we relay.
    """
    async for msg in mailbox:
        out = render(msg)
        if isinstance(out, Close):
            return out
        if out is not None:
            await send(out)
    return NORMAL_END


def _feed_frame(msg):
    channel, _sender, topic, payload = msg
    return _dump({"channel": channel, "event": _text(topic), "data": payload})


def _comment_frame(msg):
    match msg:
        case pubsub.Message(topic=events.NEW_COMMENT, payload=comment):
            return _dump(comment)
        case pubsub.Message(topic=events.POST_DELETED):
            return POST_GONE
    return None


def _text(topic):
    return topic.decode("utf-8", "replace") if isinstance(topic, bytes) else topic


def _dump(obj):
    try:
        return json.dumps(obj, ensure_ascii=False, default=_plain)
    except (TypeError, ValueError):
        # Another node may publish on our channels; one payload JSON cannot
        # carry must not cut the connection.
        log.warning("dropping a message JSON cannot encode", exc_info=True)
        return None


def _plain(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
