"""Starting this process as a node of a cluster.

``start_node()`` takes its settings from its arguments or, for each one
left as ``None``, from the environment, so that a web app can be
clustered by its deployment without a code change:

====================  ==========================================  =========
variable              meaning                                     default
====================  ==========================================  =========
``PUBSUB_NODE``       this node's name, unique in the cluster     (needed)
``PUBSUB_LISTEN``     ``host:port`` to listen on (port 0: any)    127.0.0.1:0
``PUBSUB_COOKIE``     the shared secret every node must know      (needed)
``PUBSUB_SEEDS``      comma-separated ``host:port`` to dial       none
====================  ==========================================  =========

There is no default cookie: a node without one refuses to start.  The
transport logs to the ``pubsub.cluster`` logger (ids such as
``PEER-BAD-COOKIE`` are in each record's ``pubsub_id`` attribute); the
records cross from the I/O thread, which never takes the GIL, through a
pipe read by a small daemon thread.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterable

from . import _core
from ._core import (
    cluster_stats,
    demonitor_nodes,
    listen_address,
    monitor_nodes,
    node_name,
    nodes,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_QUEUE",
    "cluster_stats",
    "connect",
    "demonitor_nodes",
    "listen_address",
    "monitor_nodes",
    "node_name",
    "nodes",
    "start_node",
    "start_node_from_env",
    "stop_node",
]

logger = logging.getLogger("pubsub.cluster")

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
"""Largest frame body, in bytes; every node of a cluster must agree."""
DEFAULT_MAX_QUEUE = 64 * 1024 * 1024
"""Bytes queued to one peer before its link is dropped as too slow."""


def parse_address(text: str, what: str = "address") -> tuple[str, int]:
    """Split ``"host:port"`` (``"[v6]:port"`` for IPv6) into its parts."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{what} must be 'host:port', not {text!r}")
    if int(port) > 65535:
        raise ValueError(f"{what} port must be 0 to 65535, not {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _seed_list(seeds: str | Iterable[str] | None) -> list[tuple[str, int]]:
    if seeds is None:
        seeds = os.environ.get("PUBSUB_SEEDS", "")
    if isinstance(seeds, str):
        seeds = [s for s in seeds.split(",") if s.strip()]
    return [parse_address(s, "seed") for s in seeds]


def _cookie_bytes(cookie: str | bytes | None) -> bytes:
    if cookie is None:
        cookie = os.environ.get("PUBSUB_COOKIE")
    if cookie is None or len(cookie) == 0:
        raise ValueError("a cookie is required: pass cookie= or set "
                         "PUBSUB_COOKIE (there is no default cookie)")
    if isinstance(cookie, str):
        cookie = cookie.encode()
    if not isinstance(cookie, bytes):
        raise TypeError("cookie must be str or bytes")
    if len(cookie) > 256:
        raise ValueError("cookie is longer than 256 bytes")
    return cookie


def start_node(name: str | None = None, listen: str | None = None,
               cookie: str | bytes | None = None,
               seeds: str | Iterable[str] | None = None,
               heartbeat: float = 1.0, timeout: float = 5.0,
               max_frame: int = DEFAULT_MAX_FRAME,
               max_queue: int = DEFAULT_MAX_QUEUE) -> tuple[str, int]:
    """Start this process as a node and return the ``(host, port)`` bound.

    Each of ``name``, ``listen``, ``cookie`` and ``seeds`` left as
    ``None`` is read from the environment: ``PUBSUB_NODE`` and
    ``PUBSUB_COOKIE`` (a name and a cookie are required, from one or the
    other), ``PUBSUB_LISTEN`` (``host:port``, default ``127.0.0.1:0``:
    any free port) and ``PUBSUB_SEEDS`` (comma-separated ``host:port``,
    default none).

    ``heartbeat`` is the idle time (seconds) after which a link sends a
    heartbeat; a peer silent for ``timeout`` seconds, or one that has read
    nothing of what waits for it for that long, is dropped, and a
    connection must authenticate within it.  ``max_frame`` and
    ``max_queue``: see ``DEFAULT_MAX_FRAME`` and ``DEFAULT_MAX_QUEUE``.
    Raises ``ValueError`` for a bad or missing setting, ``OSError`` when
    the address cannot be bound, :class:`PubSubError` when already running.
    """
    if name is None:
        name = os.environ.get("PUBSUB_NODE")
    if not name:
        raise ValueError("a node name is required: pass name= or set "
                         "PUBSUB_NODE")
    if (not isinstance(name, str) or len(name) > 255
            or not all("!" <= ch <= "~" for ch in name)):
        raise ValueError("node name must be 1 to 255 printable ASCII "
                         f"characters without spaces, not {name!r}")
    if listen is None:
        listen = os.environ.get("PUBSUB_LISTEN") or "127.0.0.1:0"
    host, port = parse_address(listen, "listen")
    _start_log_pump()
    _core._start_node(name, host, port, _cookie_bytes(cookie),
                      _seed_list(seeds), float(heartbeat), float(timeout),
                      int(max_frame), int(max_queue))
    _pump_once()
    return _core.listen_address()


def start_node_from_env() -> tuple[str, int] | None:
    """Start a node from the environment alone; ``None`` without
    ``PUBSUB_NODE`` (the process then stays a single node)."""
    if not os.environ.get("PUBSUB_NODE"):
        return None
    return start_node()


def stop_node() -> None:
    """Stop the node: close every link, forget every remote member.

    Mailboxes monitoring nodes get a NODEDOWN per link.  A no-op when no
    node runs; ``start_node()`` may be called again afterwards.
    """
    _core.stop_node()
    _pump_once()


def connect(address: str) -> None:
    """Dial the node at ``"host:port"`` and keep redialling it (with
    backoff) whenever the link is down, like a seed."""
    _core._connect(*parse_address(address))


# ---- logging: records from the I/O thread to the logger ----

_pump_lock = threading.Lock()
_pump_thread: threading.Thread | None = None


def _pump_once() -> None:
    """Log every record waiting in the core's ring."""
    with _pump_lock:
        records = _core._cluster_log_drain()
    for level, event_id, message in records:
        logger.log(level, "%s: %s", event_id, message,
                   extra={"pubsub_id": event_id})


def _pump_forever(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 512):
                return
        except OSError:
            return
        try:
            _pump_once()
        except Exception:  # a handler's failure must not stop the pump
            logger.exception("cannot forward a cluster log record")


def _start_log_pump() -> None:
    global _pump_thread
    if _pump_thread is None:
        _pump_thread = threading.Thread(
            target=_pump_forever, args=(_core._cluster_log_fd(),),
            name="pubsub-cluster-log", daemon=True)
        _pump_thread.start()


atexit.register(_core.stop_node)
