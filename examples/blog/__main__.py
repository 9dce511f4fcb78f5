"""Command line entry point: ``python -m examples.blog [options]``.

The server binds its listening socket itself, so ``--port 0`` picks a free
port; the bound address is printed on stdout as one line,
``blog listening on http://HOST:PORT``, before the server starts.
"""
import argparse
import logging
import os
import socket
import sys

import uvicorn
import uvicorn.config

from .app import DEFAULT_DB, FEED_CAPACITY, SEND_TIMEOUT, create_app
from .feed import HUB_CAPACITY

log = logging.getLogger(__name__)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m examples.blog",
        description="The cpubsub blog: JSON API, live feed and search.",
    )
    parser.add_argument(
        "--db",
        default=os.environ.get("BLOG_DB") or DEFAULT_DB,
        help="SQLite file, created if missing (default: $BLOG_DB or blog.db)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=8000, help="default: 8000; 0 picks a free one"
    )
    parser.add_argument(
        "--feed-capacity",
        type=int,
        default=FEED_CAPACITY,
        help="messages the server may hold for a WebSocket client that does"
        f" not read before disconnecting it (default: {FEED_CAPACITY})",
    )
    parser.add_argument(
        "--send-timeout",
        type=float,
        default=SEND_TIMEOUT,
        help="seconds a message may wait to be sent to a WebSocket client"
        f" before it is disconnected as too slow (default: {SEND_TIMEOUT:g})",
    )
    parser.add_argument(
        "--hub-capacity",
        type=int,
        default=HUB_CAPACITY,
        help="messages a feed hub may fall behind by before it disconnects"
        f" its clients (default: {HUB_CAPACITY})",
    )
    parser.add_argument(
        "--ws",
        choices=sorted(set(uvicorn.config.WS_PROTOCOLS) - {"auto", "none"}),
        default=websocket_protocol(),
        help="uvicorn's WebSocket implementation (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
    )
    args = parser.parse_args(argv)
    if args.feed_capacity < 1:
        parser.error("--feed-capacity must be at least 1")
    if args.hub_capacity < 1:
        parser.error("--hub-capacity must be at least 1")
    if args.send_timeout <= 0:
        parser.error("--send-timeout must be positive")
    return args


def bind(host, port):
    """Return a listening TCP socket on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def websocket_protocol():
    """Pick uvicorn's WebSocket implementation built on ``websockets``.

    uvicorn 0.35 and later deprecate the legacy ``websockets`` protocol in
    favour of ``websockets-sansio`` (the same library, its new core); older
    releases only have the former.
    """
    if "websockets-sansio" in uvicorn.config.WS_PROTOCOLS:
        return "websockets-sansio"
    return "websockets"


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(
        args.db,
        feed_capacity=args.feed_capacity,
        send_timeout=args.send_timeout,
        hub_capacity=args.hub_capacity,
    )
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"blog listening on http://{shown}:{port}", flush=True)
    config = uvicorn.Config(
        app,
        ws=args.ws,
        log_config=None,
        log_level=args.log_level,
        lifespan="on",
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on SIGINT, then raises the signal
        # again for the default behaviour: here, a traceback.
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
