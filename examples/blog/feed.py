"""The live WebSocket endpoints: ``/feed`` and ``/posts/{id}/comments/ws``.

One hub per channel set and server process
------------------------------------------
Connections do not own mailboxes.  Each server process keeps one *hub*
per live channel set: one for ``/feed`` (joined to ``posts`` and
``comments``) and one per post whose comments someone watches (joined to
``post_comments_{id}``).  A hub is made by its first connection and
closed when its last connection goes, so a dynamic channel leaves
nothing behind.  Its one task drains its mailbox in batches, renders
each message to JSON *once*, and hands the same frame to every
connection registered with it.

The hub and its connections are registered before the handshake is
accepted, so once a client's connect returns, every later broadcast on
this node reaches it.

How a frame reaches a connection
--------------------------------
Where uvicorn's WebSocket protocol object can be reached (the ASGI
``send`` callable is its bound method, captured by
:class:`ExposeConnection`), the hub writes the frame straight to the
connection without a task or an ``await`` per client:

- uvicorn's ``websockets-sansio`` protocol: the websockets library's
  sans-I/O connection frames it (per-message deflate included) and the
  bytes go to the transport in one write;
- uvicorn's legacy ``websockets`` protocol: the library's public
  ``broadcast`` helper writes it.

Each write is a whole frame and everything runs on the loop thread, so
frames never interleave.  A connection that is not open any more is
skipped (its reader sees the disconnect).  On any other server (wsproto,
say) each connection gets an outbox and a sender task that awaits
Starlette's ``send_text``: the per-connection shape, fed frames rendered
once by the hub.

Slow consumers
--------------
``feed_capacity`` bounds the frames waiting on the server for one
client: frames not yet handed to the kernel (still in the transport's
write buffer) on the direct path, frames in the outbox on the ASGI path.
A frame that finds that many waiting, or a frame that waits longer than
``send_timeout``, and the connection is closed with code 1013 (try again
later); on the direct paths the frames already written for it go out
first, so it sees a gap-free prefix (on the ASGI path its outbox is
discarded: fewer frames, still no gap).  If they and the close have not
left within ``send_timeout`` more, the client reads nothing: its
transport is aborted.  Other clients are never held up by it.

A hub that falls behind
-----------------------
Writes never wait, so a hub falls behind only when the process cannot
render and write as fast as events arrive, or when a burst larger than
its mailbox arrives before its task runs.  Its mailbox is bounded
(``hub_capacity`` messages, ``overflow="close"``); when it overflows the
hub's clients have missed events, so all of them are closed with 1013 and
the hub is dropped.  Clients reconnect and reload (the page does) and the
next connection makes a fresh hub: loss is never silent.
"""
import asyncio
import collections
import json
import logging
import sys
from dataclasses import dataclass

import pubsub
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect
from websockets.protocol import Protocol as SansIOConnection
from websockets.protocol import State

from . import events

log = logging.getLogger(__name__)

# RFC 6455 close codes.
NORMAL = 1000
POLICY_VIOLATION = 1008
INTERNAL_ERROR_CODE = 1011
TRY_AGAIN_LATER = 1013

# Messages a hub takes from its mailbox at once.  Every message of a batch
# is written to every socket without yielding the loop, so a long backlog
# is taken in slices, with the loop's other work between them.
BATCH = 32
# Messages a hub's mailbox may hold before the hub gives its clients up.
HUB_CAPACITY = 10_000

# Where ExposeConnection puts the server's protocol object in the scope.
CONNECTION_KEY = "blog.ws_connection"

# Modules of the uvicorn protocols whose connections take direct writes.
# Looked up in sys.modules, never imported: a server that uses one has
# loaded it, and importing the legacy one would only raise a deprecation.
_SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"
_LEGACY_MODULE = "websockets.legacy.protocol"
# What a direct client calls on the transport (asyncio's, uvloop's, TLS).
_TRANSPORT_API = ("write", "is_closing", "get_write_buffer_size")


@dataclass(frozen=True)
class Close:
    """How a connection ends: the close frame to send."""

    code: int
    reason: str


SLOW_CONSUMER = Close(TRY_AGAIN_LATER, "slow consumer: too many unread messages")
HUB_BEHIND = Close(TRY_AGAIN_LATER, "server fell behind: reconnect")
POST_GONE = Close(NORMAL, "post deleted")
INTERNAL_ERROR = Close(INTERNAL_ERROR_CODE, "internal error")


# -- the endpoints ------------------------------------------------------------


async def feed(websocket):
    """``GET /feed``: every change to posts and comments, as JSON text.

    Each frame is ``{"channel": ..., "event": topic, "data": payload}``.
    The text frame ``ping`` is answered with ``pong``.
    """
    feeds = websocket.app.state.feeds
    client = feeds.client(websocket)
    hub = feeds.subscribe("feed", (events.POSTS, events.COMMENTS),
                          _feed_frame, client)
    try:
        await websocket.accept()
        await _serve(websocket, client)
    finally:
        hub.remove(client)


async def post_comments(websocket):
    """``GET /posts/{post_id}/comments/ws``: new comments of one post.

    Each frame is the comment as JSON; the text frame ``ping`` is answered
    with ``pong``.  An unknown or malformed post id is refused at the
    handshake (HTTP 404, or close code 1008 on a server without the
    denial-response extension).  When the post is deleted the socket is
    closed with code 1000.
    """
    store = websocket.app.state.store
    post_id = events.parse_id(websocket.path_params["post_id"])
    if post_id is None or await run_in_threadpool(store.get_post, post_id) is None:
        await _refuse(websocket)
        return
    feeds = websocket.app.state.feeds
    client = feeds.client(websocket)
    channel = events.post_comments_channel(post_id)
    hub = feeds.subscribe(channel, (channel,), _comment_frame, client)
    try:
        # The post may have been deleted between the lookup and the join,
        # in which case its post_deleted went out before we listened.
        if await run_in_threadpool(store.get_post, post_id) is None:
            await _refuse(websocket)
            return
        await websocket.accept()
        await _serve(websocket, client)
    finally:
        hub.remove(client)


async def _refuse(websocket):
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = JSONResponse({"error": "post not found"}, status_code=404)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(POLICY_VIOLATION, "post not found")


async def _serve(websocket, client):
    """Serve an accepted connection until it ends; close as it says."""
    close = await client.serve()
    if close is None:
        return
    if close.code == TRY_AGAIN_LATER:
        log.warning("closing %s: %s", websocket.url.path, close.reason)
    client.drop_unless_flushed()
    try:
        await websocket.close(close.code, close.reason)
    except Exception:  # the client may be gone already
        log.debug("close after the feed ended failed", exc_info=True)


class ExposeConnection:
    """ASGI middleware: put the server's WebSocket protocol object in the scope.

    uvicorn hands the application its protocol's bound ``send``; its
    ``__self__`` is the object the hub writes frames to directly.  Install
    it outside anything that wraps ``send`` (Starlette's user middleware
    sees the server's own callable).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            scope[CONNECTION_KEY] = getattr(send, "__self__", None)
        await self.app(scope, receive, send)


# -- hubs ---------------------------------------------------------------------


class Feeds:
    """The hubs of one application, by key; made once per app.

    ``capacity`` and ``send_timeout`` are the per-connection limits (see
    the module docstring), ``hub_capacity`` the bound of each hub's
    mailbox, and ``direct`` whether frames may be written straight to
    connections whose protocol allows it (False: always through ASGI).
    """

    def __init__(self, capacity, send_timeout, *, hub_capacity=HUB_CAPACITY,
                 direct=True):
        self.capacity = capacity
        self.send_timeout = send_timeout
        self.hub_capacity = hub_capacity
        self.direct = direct
        self.hubs = {}

    def client(self, websocket):
        """A client for ``websocket``, of the kind its server allows."""
        proto = websocket.scope.get(CONNECTION_KEY) if self.direct else None
        return _client_class(proto)(websocket, proto, self)

    def subscribe(self, key, channels, render, client):
        """Register ``client`` with the hub ``key``, made if need be.

        The hub's mailbox is joined to ``channels`` when this returns.
        """
        hub = self.hubs.get(key)
        if hub is None:
            hub = self.hubs[key] = Hub(self, key, channels, render)
        hub.add(client)
        return hub

    def counts(self):
        """Per live hub, by key: its sockets, and how many of them take
        direct writes (the rest go through ASGI).  For /stats."""
        return {
            key: {
                "sockets": len(hub.clients),
                "direct": sum(isinstance(c, _DirectClient) for c in hub.clients),
            }
            for key, hub in sorted(self.hubs.items())
        }

    def _forget(self, hub):
        if self.hubs.get(hub.key) is hub:
            del self.hubs[hub.key]


class Hub:
    """One mailbox, one task, the connections it writes to.

    ``render(msg)`` returns the text frame for a message, None to skip it,
    or a Close that ends every connection of the hub (and the hub).
    """

    def __init__(self, feeds, key, channels, render):
        self.feeds = feeds
        self.key = key
        self.render = render
        self.clients = {}          # insertion-ordered set
        self.mailbox = pubsub.Mailbox(capacity=feeds.hub_capacity,
                                      overflow="close")
        for channel in channels:
            self.mailbox.join(channel)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def add(self, client):
        self.clients[client] = None

    def remove(self, client):
        """Unregister ``client``; the last one out closes the hub."""
        self.clients.pop(client, None)
        if not self.clients:
            self.close()

    def close(self):
        """Leave the channels and stop the task; idempotent."""
        self.mailbox.close()
        self.task.cancel()
        self.feeds._forget(self)

    def _end_all(self, close):
        self.feeds._forget(self)
        self.mailbox.close()
        for client in list(self.clients):
            client.end(close)

    async def _run(self):
        mailbox = self.mailbox
        try:
            while True:
                batch = [await mailbox.arecv()]
                batch += mailbox.recv_many(BATCH - 1)
                for msg in batch:
                    if self._fan_out(msg):
                        return
                if len(batch) == BATCH:
                    await asyncio.sleep(0)
        except pubsub.SlowConsumer:
            log.warning(
                "feed hub %s fell behind (%d messages dropped): closing its"
                " %d sockets", self.key, mailbox.dropped, len(self.clients))
            self._end_all(HUB_BEHIND)
        except pubsub.MailboxClosed:
            pass                    # the last client left
        except Exception:
            log.exception("feed hub %s failed", self.key)
            self._end_all(INTERNAL_ERROR)

    def _fan_out(self, msg):
        """Render ``msg`` once, give it to every client; True ends the hub."""
        out = self.render(msg)
        if out is None:
            return False
        if isinstance(out, Close):
            self._end_all(out)
            return True
        try:
            data = out.encode()
        except UnicodeEncodeError:  # a lone surrogate from another node
            log.warning("dropping a message that is not valid Unicode")
            return False
        for client in list(self.clients):
            try:
                client.deliver(out, data)
            except Exception:
                log.exception("feed write to %s failed", client.path)
                client.end(INTERNAL_ERROR)
        return False


# -- clients: where one connection's frames go --------------------------------


def _client_class(proto):
    """The client kind that can write to ``proto`` (None: unknown server)."""
    transport = getattr(proto, "transport", None)
    if not all(hasattr(transport, name) for name in _TRANSPORT_API):
        return _AsgiClient
    sansio = sys.modules.get(_SANSIO_MODULE)
    if (sansio is not None
            and isinstance(proto, sansio.WebSocketsSansIOProtocol)
            and isinstance(getattr(proto, "conn", None), SansIOConnection)
            and hasattr(proto, "close_sent") and hasattr(proto, "disconnected")):
        return _SansIOClient
    legacy = sys.modules.get(_LEGACY_MODULE)
    if legacy is not None and isinstance(proto, legacy.WebSocketCommonProtocol):
        return _LegacyClient
    return _AsgiClient


class _Client:
    """One connection registered with a hub.

    Frames delivered before :meth:`serve` starts (between the join and the
    accepted handshake) wait in ``outbox``.  :attr:`ended` resolves to the
    Close to send, or None when the client went away.
    """

    def __init__(self, websocket, proto, feeds):
        self.websocket = websocket
        self.path = websocket.url.path
        self.proto = proto
        self.capacity = feeds.capacity
        self.send_timeout = feeds.send_timeout
        self.loop = asyncio.get_running_loop()
        self.outbox = collections.deque()
        self.started = False
        self.ended = self.loop.create_future()

    def end(self, close):
        """End the connection with ``close`` (None: just stop); idempotent."""
        if not self.ended.done():
            self.ended.set_result(close)

    def drop_unless_flushed(self):
        """Drop the connection unless what waits for the client, the close
        frame being sent included, has left within ``send_timeout``.

        A client that reads nothing takes no close frame either, and
        uvicorn's ``websockets-sansio`` and ``wsproto`` protocols wait for
        it to make room forever: the socket and its backlog would stay.
        """
        transport = getattr(self.proto, "transport", None)
        if hasattr(transport, "abort") and hasattr(
                transport, "get_write_buffer_size"):
            self.loop.call_later(self.send_timeout, _abort_if_stuck,
                                 transport, self.path)

    def deliver(self, text, data):
        """Queue or write one frame (``data`` is ``text`` in UTF-8)."""
        if self.ended.done():
            return
        if self.started:
            self._write(text, data)
        elif len(self.outbox) < self.capacity:
            self.outbox.append((text, data))
        else:
            self.end(SLOW_CONSUMER)

    async def serve(self):
        """Send what waited for the handshake, then serve the connection
        (reading the client's frames) until it ends; return how to close
        it."""
        self.started = True
        tasks = [*self._start(), asyncio.create_task(self._read())]
        try:
            return await self.ended
        finally:
            self.end(None)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self):
        """Send the outbox's frames; return the tasks this kind needs."""
        raise NotImplementedError

    def _write(self, text, data):
        raise NotImplementedError

    async def _read(self):
        """Answer ``ping`` with ``pong``; ignore other frames."""
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") == "ping":
                    self.deliver("pong", b"pong")
        except Exception as exc:
            self.end(_ending(exc))
        else:
            self.end(None)


def _abort_if_stuck(transport, path):
    if transport.get_write_buffer_size():
        log.warning("dropping %s: its close has not left in time", path)
        transport.abort()


def _ending(exc):
    """How an exception from a receive or a send ends the connection."""
    if isinstance(exc, asyncio.TimeoutError):
        return SLOW_CONSUMER
    if isinstance(exc, (WebSocketDisconnect, OSError)):
        log.debug("client gone: %r", exc)
        return None
    log.error("WebSocket task failed", exc_info=exc)
    return INTERNAL_ERROR


class _AsgiClient(_Client):
    """The fallback: an outbox and a sender task awaiting ``send_text``."""

    def _start(self):
        self.wake = asyncio.Event()
        return [asyncio.create_task(self._send_all())]

    def _write(self, text, data):
        if len(self.outbox) >= self.capacity:
            self.end(SLOW_CONSUMER)
            return
        self.outbox.append((text, data))
        self.wake.set()

    async def _send_all(self):
        # The loop ends on ``ended`` as well as on cancellation: before
        # Python 3.12, wait_for swallows a cancellation that arrives as the
        # send completes, and the task would then wait for ``wake`` forever.
        outbox = self.outbox
        try:
            while not self.ended.done():
                if not outbox:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                # The frame being sent still counts against capacity.
                await asyncio.wait_for(
                    self.websocket.send_text(outbox[0][0]), self.send_timeout)
                outbox.popleft()
        except Exception as exc:
            self.end(_ending(exc))


class _DirectClient(_Client):
    """A connection the hub writes frames to without awaiting anything.

    What the transport has not handed to the kernel yet is the client's
    backlog.  ``marks`` holds, for each frame still (partly) in the
    transport's buffer, where the frame ends in the stream of bytes
    buffered since the buffer was last empty (``buffered``), and when it
    was written.  Bytes the server writes itself (its keepalive pings)
    are not counted, which only makes a frame look pending a little
    longer; the count restarts whenever the buffer empties.
    """

    def __init__(self, websocket, proto, feeds):
        super().__init__(websocket, proto, feeds)
        self.transport = proto.transport
        self.buffered = 0
        self.marks = collections.deque()
        self.timer = None

    def _start(self):
        outbox = self.outbox
        while outbox and not self.ended.done():
            self._write(*outbox.popleft())
        outbox.clear()
        return []

    def _write(self, text, data):
        transport = self.transport
        if transport.is_closing() or not self._open():
            return                  # going away: its reader will see it
        before = transport.get_write_buffer_size()
        if not before:
            self._restart()
        elif self._pending(before) >= self.capacity:
            self.end(SLOW_CONSUMER)
            return
        self._write_frame(text, data)
        after = transport.get_write_buffer_size()
        if after:
            self.buffered += after - before
            self.marks.append((self.buffered, self.loop.time()))
            if self.timer is None:
                self._watch()

    def _restart(self):
        """The buffer is empty: every frame written so far has left."""
        if self.marks:
            self.marks.clear()
        self.buffered = 0

    def _pending(self, size):
        """Drop the marks of frames flushed; the number still pending."""
        marks = self.marks
        flushed = self.buffered - size
        while marks and marks[0][0] <= flushed:
            marks.popleft()
        return len(marks)

    def _watch(self):
        """Check again when the oldest pending frame's time is up."""
        self.timer = self.loop.call_at(self.marks[0][1] + self.send_timeout,
                                       self._check_stuck)

    def _check_stuck(self):
        """A pending frame's send timeout is up: has it left by now?"""
        self.timer = None
        if self.ended.done():
            return
        size = self.transport.get_write_buffer_size()
        if not size:
            self._restart()
        elif self._pending(size):
            if self.loop.time() - self.marks[0][1] >= self.send_timeout:
                self.end(SLOW_CONSUMER)
            else:
                self._watch()

    def end(self, close):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        super().end(close)

    def _open(self):
        raise NotImplementedError

    def _write_frame(self, text, data):
        raise NotImplementedError


class _SansIOClient(_DirectClient):
    """uvicorn's ``websockets-sansio`` protocol: frame with its connection."""

    def _open(self):
        proto = self.proto
        return (proto.conn.state is State.OPEN and not proto.close_sent
                and not proto.disconnected)

    def _write_frame(self, text, data):
        conn = self.proto.conn
        conn.send_text(data)
        self.transport.write(b"".join(conn.data_to_send()))


class _LegacyClient(_DirectClient):
    """uvicorn's legacy ``websockets`` protocol: the library's broadcast."""

    def __init__(self, websocket, proto, feeds):
        super().__init__(websocket, proto, feeds)
        self.target = (proto,)
        self.broadcast = sys.modules[_LEGACY_MODULE].broadcast

    def _open(self):
        return self.proto.state is State.OPEN

    def _write_frame(self, text, data):
        self.broadcast(self.target, text)


# -- rendering ----------------------------------------------------------------


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
        # allow_nan=False: NaN and infinities are not JSON (a browser's
        # JSON.parse rejects the whole frame), so they are skipped too.
        return json.dumps(obj, ensure_ascii=False, allow_nan=False,
                          default=_plain)
    except (TypeError, ValueError):
        # Another node may publish on our channels; one payload JSON cannot
        # carry must not cut the connections.
        log.warning("dropping a message JSON cannot encode", exc_info=True)
        return None


def _plain(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
