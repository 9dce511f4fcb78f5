"""The WebSocket fan-out server: Starlette on uvicorn, two ways to fan out.

``python -m bench.ws_server VARIANT PORT`` with VARIANT ``pubsub``,
``queue``, ``helper`` or ``relay``.  Both serve the same routes on the same stack (Starlette,
uvicorn, uvicorn's ``websockets`` protocol):

- ``/feed`` (WebSocket): a live feed client.
- ``POST /post``: publish the request body to every feed client.
- ``GET /ready``: how many feed clients are subscribed, as text.

``pubsub``: each /feed handler owns a Mailbox joined to "feed" and sends
what it receives; /post calls ``pubsub.broadcast``.  This is how the
blog's feed works.  ``queue``: the same shape without the library, an
``asyncio.Queue`` per handler that /post fills in a loop.  ``helper``: /feed handlers register their connection
in a set and idle; /post calls the websockets library's own broadcast
helper on that set, which frames the message once and writes it to every
connection: the fastest fan-out that stack offers, with no pub/sub.
"""
from __future__ import annotations

import asyncio
import sys
import warnings

warnings.simplefilter("ignore")   # uvicorn and websockets deprecations

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa

PROTOCOL_KEY = "bench.protocol"


class ExposeProtocol:
    """Outermost ASGI layer: put uvicorn's connection object in the scope.

    uvicorn's websockets-based protocol hands the app its own bound
    ``asgi_send``; its ``__self__`` is the websockets connection that the
    library's broadcast helper writes to.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            scope[PROTOCOL_KEY] = getattr(send, "__self__", None)
        await self.app(scope, receive, send)


def make_app(variant: str):
    clients: set = set()
    count = {"n": 0}

    if variant == "pubsub":
        import pubsub

        async def watch(ws: WebSocket, mb) -> None:
            """Close the mailbox when the client goes: that ends the feed."""
            try:
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
            finally:
                mb.close()

        async def feed(ws: WebSocket) -> None:
            await ws.accept()
            with pubsub.Mailbox() as mb:
                mb.join("feed")
                count["n"] += 1
                watcher = asyncio.ensure_future(watch(ws, mb))
                try:
                    async for msg in mb:
                        await ws.send_text(msg.payload)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    pass
                finally:
                    count["n"] -= 1
                    watcher.cancel()

        async def post(request: Request) -> PlainTextResponse:
            pubsub.broadcast("feed", "post", (await request.body()).decode())
            return PlainTextResponse("ok")
    elif variant == "queue":
        queues: set = set()

        async def feed(ws: WebSocket) -> None:
            await ws.accept()
            queue: asyncio.Queue = asyncio.Queue()
            queues.add(queue)
            count["n"] += 1

            async def watch() -> None:
                try:
                    while (await ws.receive())["type"] != \
                            "websocket.disconnect":
                        pass
                finally:
                    queue.put_nowait(None)

            watcher = asyncio.ensure_future(watch())
            try:
                while (text := await queue.get()) is not None:
                    await ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass
            finally:
                queues.discard(queue)
                count["n"] -= 1
                watcher.cancel()

        async def post(request: Request) -> PlainTextResponse:
            text = (await request.body()).decode()
            for queue in queues:
                queue.put_nowait(text)
            return PlainTextResponse("ok")
    else:
        from websockets.legacy.protocol import broadcast

    if variant == "relay":
        import pubsub

        async def relay() -> None:
            """One mailbox per server process feeds the helper."""
            with pubsub.Mailbox() as mb:
                mb.join("feed")
                async for msg in mb:
                    broadcast(clients, msg.payload)

        relay_task: list = []

        async def post(request: Request) -> PlainTextResponse:
            pubsub.broadcast("feed", "post", (await request.body()).decode())
            return PlainTextResponse("ok")

    if variant in ("helper", "relay"):
        async def feed(ws: WebSocket) -> None:
            if variant == "relay" and not relay_task:
                relay_task.append(asyncio.ensure_future(relay()))
            await ws.accept()
            conn = ws.scope[PROTOCOL_KEY]
            clients.add(conn)
            count["n"] += 1
            try:
                while True:
                    if (await ws.receive())["type"] == "websocket.disconnect":
                        break
            finally:
                clients.discard(conn)
                count["n"] -= 1

    if variant == "helper":
        async def post(request: Request) -> PlainTextResponse:
            broadcast(clients, (await request.body()).decode())
            return PlainTextResponse("ok")

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(count["n"]))

    app = Starlette(routes=[
        WebSocketRoute("/feed", feed),
        Route("/post", post, methods=["POST"]),
        Route("/ready", ready),
    ])
    return ExposeProtocol(app)


def main() -> None:
    variant, port = sys.argv[1], int(sys.argv[2])
    config = uvicorn.Config(make_app(variant), host="127.0.0.1", port=port,
                            ws="websockets", lifespan="off",
                            log_level="warning", access_log=False,
                            backlog=4096, ws_max_queue=1024)
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
