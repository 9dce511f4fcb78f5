"""The WebSocket fan-out server: Starlette on uvicorn, several ways to fan out.

``python -m bench.ws_server VARIANT PORT [PROTOCOL]``: VARIANT is ``blog``,
``helper``, ``mailbox`` or ``queue``; PROTOCOL is uvicorn's WebSocket
implementation (default ``websockets``, the legacy one, which the helper
needs).  Every variant serves the same routes on the same stack:

- ``/feed`` (WebSocket): a live feed client.
- ``POST /post``: publish the request body to every feed client.
- ``GET /ready``: how many feed clients are subscribed, as text.

``blog``: the blog's own ``/feed`` endpoint and feed hubs
(examples/blog/feed.py): /post broadcasts the body, decoded from JSON,
on the blog's ``posts`` channel, and the process's one feed hub renders
it once and writes it to every connection.  ``helper``: /feed handlers
register their connection in a set and idle; /post calls the websockets
library's own broadcast helper on that set, which frames the message
once per connection and writes it straight to each: the fastest fan-out
this stack offers, with no pub/sub.  ``mailbox``: what the blog did
before its hubs, a Mailbox per /feed handler whose task awaits
``send_text`` for each message.  ``queue``: the same per-handler shape
with an ``asyncio.Queue`` instead of a mailbox.
"""
from __future__ import annotations

import asyncio
import json
import sys
import warnings

warnings.simplefilter("ignore")   # uvicorn and websockets deprecations

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa

import pubsub  # noqa: E402
from examples.blog import events, feed as blog_feed  # noqa: E402
from examples.blog.app import FEED_CAPACITY, SEND_TIMEOUT  # noqa: E402


def blog_routes(state) -> dict:
    state.feeds = blog_feed.Feeds(FEED_CAPACITY, SEND_TIMEOUT)

    async def post(request: Request) -> PlainTextResponse:
        pubsub.broadcast(events.POSTS, events.POST_CREATED,
                         json.loads(await request.body()))
        return PlainTextResponse("ok")

    def count() -> int:
        return state.feeds.counts().get("feed", {}).get("sockets", 0)

    return {"feed": blog_feed.feed, "post": post, "count": count}


def helper_routes(state) -> dict:
    from websockets.legacy.protocol import broadcast

    clients: set = set()

    async def feed(ws: WebSocket) -> None:
        await ws.accept()
        conn = ws.scope[blog_feed.CONNECTION_KEY]
        clients.add(conn)
        try:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            clients.discard(conn)

    async def post(request: Request) -> PlainTextResponse:
        broadcast(clients, (await request.body()).decode())
        return PlainTextResponse("ok")

    return {"feed": feed, "post": post, "count": lambda: len(clients)}


def per_handler_routes(make_inbox, publish):
    """A /feed handler per connection awaiting its own inbox: ``make_inbox()``
    returns ``(inbox, get, stop)``; ``publish(text)`` fills every inbox."""
    inboxes: set = set()

    async def feed(ws: WebSocket) -> None:
        await ws.accept()
        inbox, get, stop = make_inbox()
        inboxes.add(inbox)

        async def watch() -> None:
            try:
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
            finally:
                stop()

        watcher = asyncio.ensure_future(watch())
        try:
            while (text := await get()) is not None:
                await ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            inboxes.discard(inbox)
            watcher.cancel()

    async def post(request: Request) -> PlainTextResponse:
        publish(inboxes, (await request.body()).decode())
        return PlainTextResponse("ok")

    return {"feed": feed, "post": post, "count": lambda: len(inboxes)}


def mailbox_routes(state) -> dict:
    def make_inbox():
        mb = pubsub.Mailbox()
        mb.join("feed")

        async def get():
            try:
                return (await mb.arecv()).payload
            except pubsub.MailboxClosed:
                return None
        return mb, get, mb.close

    def publish(inboxes, text):
        pubsub.broadcast("feed", "post", text)

    return per_handler_routes(make_inbox, publish)


def queue_routes(state) -> dict:
    def make_inbox():
        queue: asyncio.Queue = asyncio.Queue()
        return queue, queue.get, lambda: queue.put_nowait(None)

    def publish(inboxes, text):
        for queue in inboxes:
            queue.put_nowait(text)

    return per_handler_routes(make_inbox, publish)


VARIANTS = {"blog": blog_routes, "helper": helper_routes,
            "mailbox": mailbox_routes, "queue": queue_routes}


def make_app(variant: str):
    app = Starlette(middleware=[Middleware(blog_feed.ExposeConnection)])
    routes = VARIANTS[variant](app.state)

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(routes["count"]()))

    app.router.routes.extend([
        WebSocketRoute("/feed", routes["feed"]),
        Route("/post", routes["post"], methods=["POST"]),
        Route("/ready", ready),
    ])
    return app


def main() -> None:
    variant, port = sys.argv[1], int(sys.argv[2])
    protocol = sys.argv[3] if len(sys.argv) > 3 else "websockets"
    config = uvicorn.Config(make_app(variant), host="127.0.0.1", port=port,
                            ws=protocol, lifespan="off",
                            log_level="warning", access_log=False,
                            backlog=4096, ws_max_queue=1024)
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
