"""Run the blog example as a subprocess and talk to it over HTTP and WebSocket.

``running_blog()`` starts ``python -m examples.blog --port 0`` on loopback
with a database in a temporary directory, reads the bound address from the
line the server prints, waits (bounded) until it answers HTTP, and always
terminates it.  Clients use only the standard library and ``websockets``.
"""
import contextlib
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
RECV_TIMEOUT = 10.0
_LISTENING = re.compile(r"blog listening on (http://\S+)")


class BlogServer:
    """A running blog process: its base URL, database and log file."""

    def __init__(self, proc, url, db_path, log_path):
        self.proc = proc
        self.url = url
        self.db_path = db_path
        self.log_path = log_path

    def request(self, method, path, body=None, *, raw=None):
        """Send a request; return ``(status, decoded JSON or None)``.

        ``body`` is encoded as JSON; ``raw`` (bytes) is sent as it is.
        """
        data = raw if raw is not None else (
            None if body is None else json.dumps(body).encode()
        )
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=RECV_TIMEOUT) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        return status, (json.loads(payload) if payload else None)

    def ok(self, method, path, body=None, *, expect=200):
        """Send a request that must succeed with ``expect``; return its JSON."""
        status, answer = self.request(method, path, body)
        assert status == expect, (method, path, status, answer)
        return answer

    def address(self):
        """The server's ``(host, port)``."""
        host, _, port = self.url[len("http://"):].rpartition(":")
        return host.strip("[]"), int(port)

    def websocket(self, path, **kwargs):
        """Open a WebSocket to ``path`` (a context manager)."""
        ws_url = "ws" + self.url[len("http"):] + path
        return connect(ws_url, open_timeout=RECV_TIMEOUT, **kwargs)

    def log(self):
        return self.log_path.read_text(errors="replace")


def recv_json(ws, timeout=RECV_TIMEOUT):
    """Receive one text frame from ``ws`` and decode it as JSON."""
    return json.loads(ws.recv(timeout=timeout))


def read_until_closed(ws):
    """Receive JSON frames until the server closes ``ws``.

    Returns the ``data`` field of each frame received and the close frame
    the server sent (None if it sent none).
    """
    received = []
    try:
        while True:
            received.append(recv_json(ws)["data"])
    except ConnectionClosed as closed:
        return received, closed.rcvd


def idle_feed(server):
    """A ``/feed`` client that will not read: tiny receive buffer, one
    message queued at most, no compression (a context manager)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.address())
    return server.websocket("/feed", sock=sock, max_queue=1, compression=None)


def wait_until(probe, timeout=RECV_TIMEOUT, interval=0.02):
    """Poll ``probe()`` until it returns a true value; return that value.

    For state that only becomes visible asynchronously and has no event to
    wait on (the search index).  Fails after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {probe}")
        time.sleep(interval)


def _pump_stdout(stream, lines):
    # Drain stdout for the life of the process so it can never block on a
    # full pipe; the first lines carry the bound address.
    for line in stream:
        lines.put(line)
    lines.put(None)


def _read_url(proc, lines, deadline):
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the blog did not print its address") from None
        if line is None:
            raise AssertionError(f"the blog exited with {proc.wait()}")
        found = _LISTENING.search(line)
        if found:
            return found.group(1)


def _wait_http(server, deadline):
    while True:
        try:
            status, _ = server.request("GET", "/posts")
            if status == 200:
                return
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("the blog did not answer HTTP in time")
        time.sleep(0.05)


def _env(extra):
    # The subprocess must import both `examples` and whichever `pubsub` this
    # interpreter sees (built in place, installed, or put on PYTHONPATH).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBSUB_")}
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(REPO)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def free_port():
    """A loopback TCP port that was free a moment ago (for cluster listeners)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_blog(tmp_dir, *args, db_path=None, env=None):
    """Run the blog with ``args`` added to its command line; yield a BlogServer.

    The database defaults to ``tmp_dir/blog.db``; ``env`` adds environment
    variables (the caller's PUBSUB_* variables are never inherited, so a
    server is a single node unless ``env`` says otherwise).
    """
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    db_path = Path(db_path) if db_path is not None else tmp_dir / "blog.db"
    log_path = tmp_dir / "blog.log"
    command = [
        sys.executable, "-m", "examples.blog",
        "--host", "127.0.0.1", "--port", "0", "--db", str(db_path), *args,
    ]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=_env(env), stdout=subprocess.PIPE,
            stderr=log_file, text=True,
        )
    lines = queue.Queue()
    pump = threading.Thread(target=_pump_stdout, args=(proc.stdout, lines))
    pump.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            url = _read_url(proc, lines, deadline)
            server = BlogServer(proc, url, db_path, log_path)
            _wait_http(server, deadline)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- blog log ---\n{_tail(log_path)}")
        yield server
    finally:
        _stop(proc)
        pump.join(timeout=10)


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.stdout.close()


def _tail(path, size=4000):
    return path.read_text(errors="replace")[-size:]
