"""Peer clients and servers: installed on demand, started and stopped here.

The suite installs what it compares against (pyzmq, redis-py, blinker,
websockets, starlette, uvicorn through pip; Debian's redis-server through
apt-get when running as root) the first time a scenario needs it.  When an
install is impossible the scenario prints the reason in its table instead
of a number.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import time
from types import ModuleType

PIP_NAMES = {
    "zmq": "pyzmq",
    "redis": "redis",
    "blinker": "blinker",
    "websockets": "websockets",
    "starlette": "starlette",
    "uvicorn": "uvicorn",
}

_failed: dict[str, str] = {}


def need(module: str) -> ModuleType | str:
    """Import module, pip-installing its package first if it is missing.

    Returns the module, or a one-line reason why it cannot be had.
    """
    if module in _failed:
        return _failed[module]
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    package = PIP_NAMES.get(module, module)
    print(f"[bench] installing {package} with pip", file=sys.stderr)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q",
         "--disable-pip-version-check", package],
        capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        _failed[module] = f"pip install {package} failed: {tail}"
        return _failed[module]
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        _failed[module] = f"{package} installed but not importable: {exc}"
        return _failed[module]


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str | None:
    """The path of redis-server, installing Debian's package if we may."""
    path = shutil.which("redis-server")
    if path or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    print("[bench] installing redis-server with apt-get", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "redis-server"]):
        if subprocess.run(cmd, env=env, capture_output=True,
                          timeout=600).returncode != 0:
            return None
    return shutil.which("redis-server")


class RedisServer:
    """A private redis-server on a free 127.0.0.1 port, no persistence.

    ``start()`` returns self or a reason string; ``stop()`` is idempotent.
    Pub/sub output buffers are unlimited so that a subscriber that falls
    behind during a throughput run is not disconnected mid-measurement.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.version = "not installed"

    def start(self) -> "RedisServer | str":
        if self.proc is not None:
            return self
        binary = redis_server_binary()
        if binary is None:
            return "redis-server is missing and cannot be installed here"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no",
             "--client-output-buffer-limit", "pubsub 0 0 0",
             "--maxclients", "2000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = subprocess.run([binary, "--version"], capture_output=True,
                             text=True).stdout
        self.version = out.split("v=")[1].split()[0] if "v=" in out else "?"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        return "redis-server did not start listening within 10 s"

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


redis_server = RedisServer()
