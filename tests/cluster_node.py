"""A cluster node in its own process, driven by a test over stdin/stdout.

Run as a script, it reads one JSON command per line and answers each with
one JSON line: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
Payloads cross the pipe as Python literals (``repr``/``ast.literal_eval``)
so bytes, sets and big ints survive.  Every wait is bounded by the
command's ``timeout`` and driven by mailbox events, never by sleeping.

Imported, it offers :class:`Node`, the test's side of that pipe.
"""
from __future__ import annotations

import ast
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---------------------------------------------------------------- the node


def _literal(text: str):
    """A payload from its repr: literal_eval plus frozenset(...)."""
    if text.startswith("frozenset(") and text.endswith(")"):
        return frozenset(ast.literal_eval(text[len("frozenset("):-1]))
    return ast.literal_eval(text)


def _pattern(i: int, size: int) -> bytes:
    """size bytes that change along their length and with i."""
    row = bytes(range(251))
    row = row[i % 251:] + row[:i % 251]
    return (row * (size // 251 + 1))[:size]


class _Capture(logging.Handler):
    """Keeps the pubsub.cluster records so the test can wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str, str]] = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.records.append((record.levelno,
                                 getattr(record, "pubsub_id", "?"),
                                 record.getMessage()))
            self.cond.notify_all()


class _Server:
    def __init__(self) -> None:
        import pubsub
        import pubsub.cluster

        self.pubsub = pubsub
        self.cluster = pubsub.cluster
        self.boxes: dict[str, pubsub.Mailbox] = {}
        self.log = _Capture()
        logger = logging.getLogger("pubsub.cluster")
        logger.addHandler(self.log)
        logger.setLevel(logging.DEBUG)
        self.node_watch = self._mailbox()

    def _mailbox(self, *args):
        """A new mailbox with its wake-up descriptor made at once (it is
        otherwise made by the first receive that waits), so that the
        node's descriptor count does not move when that comes."""
        mb = self.pubsub.Mailbox(*args)
        mb.fileno()
        return mb

    def scope(self, a: dict):
        name = a.get("scope")
        return self.pubsub.Scope(name) if name else self.pubsub.default_scope

    # -- commands: each takes the decoded command, returns a dict --

    def do_start(self, a: dict) -> dict:
        self.cluster.monitor_nodes(self.node_watch)
        host, port = self.cluster.start_node(
            a["name"], a.get("listen", "127.0.0.1:0"), a["cookie"],
            a.get("seeds", []), heartbeat=a.get("heartbeat", 0.1),
            timeout=a.get("timeout", 1.0),
            max_frame=a.get("max_frame", 16 << 20),
            max_queue=a.get("max_queue", 64 << 20))
        return {"host": host, "port": port}

    def do_start_env(self, a: dict) -> dict:
        """start_node_from_env() with the given environment."""
        self.cluster.monitor_nodes(self.node_watch)
        os.environ.update(a["env"])
        bound = self.cluster.start_node_from_env()
        return {"port": bound[1] if bound else None}

    def do_connect(self, a: dict) -> dict:
        self.cluster.connect(a["address"])
        return {}

    def do_remember(self, a: dict) -> dict:
        """Keep the channel's present members' Pid objects."""
        self.remembered = list(self.scope(a).get_members(a["channel"]))
        return {"pids": [repr(p) for p in self.remembered]}

    def do_send_remembered(self, a: dict) -> dict:
        sent = [self.pubsub.send(p, "old", None) for p in self.remembered]
        return {"sent": sent}

    def do_stop(self, a: dict) -> dict:
        self.cluster.stop_node()
        return {}

    def do_mailbox(self, a: dict) -> dict:
        """A mailbox named a["mb"]; bounded when capacity is given."""
        bound = ((a["capacity"], a.get("overflow", "drop_oldest"))
                 if "capacity" in a else ())
        mb = self._mailbox(*bound)
        self.boxes[a["mb"]] = mb
        return {"pid": repr(mb.pid)}

    def do_join(self, a: dict) -> dict:
        self.scope(a).join(a["channel"], self.boxes[a["mb"]])
        return {}

    def do_leave(self, a: dict) -> dict:
        return {"left": self.scope(a).leave(a["channel"],
                                            self.boxes[a["mb"]])}

    def do_close(self, a: dict) -> dict:
        self.boxes.pop(a["mb"]).close()
        return {}

    def do_broadcast(self, a: dict) -> dict:
        sc = self.scope(a)
        fn = sc.local_broadcast if a.get("local") else sc.broadcast
        sender = self.boxes[a["sender"]].pid if a.get("sender") else None
        if "count" in a:
            for i in range(a["count"]):
                fn(a["channel"], a.get("topic", "seq"), i, sender=sender)
        else:
            payload = _literal(a.get("payload", "None"))
            fn(a["channel"], a.get("topic", "t"), payload, sender=sender)
        return {}

    def do_fork_broadcast(self, a: dict) -> dict:
        """Fork; the child broadcasts count messages ("child", i), each
        on a link left idle for a moment, and exits.  The child has no
        I/O thread: the links' sockets are the parent's."""
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                sc = self.scope(a)
                for i in range(a["count"]):
                    time.sleep(a.get("pause", 0.002))
                    sc.broadcast(a["channel"], "t", ("child", i))
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        return {"status": os.waitstatus_to_exitcode(status)}

    def do_broadcast_threads(self, a: dict) -> dict:
        """Several threads broadcast count messages each, each thread as
        its own sender; payload (thread, i).  With pause_every, each
        thread sleeps pause seconds after that many messages, so the link
        goes idle now and then and bursts start on an idle link."""
        senders = [self.pubsub.Mailbox() for _ in range(a["threads"])]
        every, pause = a.get("pause_every", 0), a.get("pause", 0.001)

        def run(k: int) -> None:
            for i in range(a["count"]):
                self.pubsub.broadcast(a["channel"], "t", (k, i),
                                      sender=senders[k].pid)
                if every and i % every == every - 1:
                    time.sleep(pause)

        threads = [threading.Thread(target=run, args=(k,))
                   for k in range(a["threads"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"senders": [repr(m.pid) for m in senders]}

    def do_broadcast_big(self, a: dict) -> dict:
        """Broadcast count payloads (i, _pattern(i, size)), gap seconds
        apart."""
        for i in range(a["count"]):
            self.pubsub.broadcast(a["channel"], "big",
                                  (i, _pattern(i, a["size"])))
            time.sleep(a.get("gap", 0))
        return {}

    def do_recv_big(self, a: dict) -> dict:
        """Receive n payloads of do_broadcast_big; the first index that is
        out of order or whose bytes differ from the pattern."""
        got, bad = 0, None
        for m in self._recv_each(a, 30.0):
            if m.payload != (got, _pattern(got, a["size"])) and bad is None:
                bad = got
            got += 1
        return {"received": got, "first_bad": bad}

    def do_recv_per_sender(self, a: dict) -> dict:
        """Receive n (thread, i) payloads; check each sender's order."""
        nxt: dict[str, int] = {}
        got, bad = 0, None
        for m in self._recv_batched(a, 30.0):
            k, i = m.payload
            key = repr(m.sender)
            if i != nxt.get(key, 0) and bad is None:
                bad = [key, nxt.get(key, 0), i]
            nxt[key] = i + 1
            got += 1
        return {"received": got, "first_disorder": bad,
                "senders": len(nxt)}

    def do_churn(self, a: dict) -> dict:
        """Join and leave at random across channels, from threads; return
        the local view of every channel afterwards."""
        import random
        boxes = [self.pubsub.Mailbox() for _ in range(a["boxes"])]
        self.churned = boxes
        chans = [f"churn{i}" for i in range(a["channels"])]

        def run(seed: int) -> None:
            rnd = random.Random(seed)
            for _ in range(a["steps"]):
                mb, ch = rnd.choice(boxes), rnd.choice(chans)
                if rnd.random() < 0.55:
                    mb.join(ch)
                else:
                    mb.leave(ch)

        threads = [threading.Thread(target=run, args=(k,))
                   for k in range(a.get("threads", 4))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if a.get("close_some"):
            for mb in boxes[::3]:
                mb.close()
        return {"view": {ch: sorted(repr(p) for p in
                                    self.pubsub.get_local_members(ch))
                         for ch in chans}}

    def do_send_members(self, a: dict) -> dict:
        """Send to every remote member of a channel; count the Trues."""
        me = self.cluster.node_name()
        sent = 0
        for pid in self.scope(a).get_members(a["channel"]):
            if pid.node != me:
                sender = (self.boxes[a["sender"]].pid if a.get("sender")
                          else None)
                for i in range(a.get("count", 1)):
                    sent += self.pubsub.send(pid, a.get("topic", "direct"),
                                             i, sender=sender)
        return {"sent": sent}

    def _recv_each(self, a: dict, timeout: float):
        """Yield the messages of mailbox a["mb"] one by one, until a["n"]
        (default 1) came or a["timeout"] (default timeout) passed."""
        mb = self.boxes[a["mb"]]
        deadline = time.monotonic() + a.get("timeout", timeout)
        for _ in range(a.get("n", 1)):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                yield mb.recv(timeout=left)
            except self.pubsub.Timeout:
                return

    def _recv_batched(self, a: dict, timeout: float):
        """Yield the messages of mailbox a["mb"], a waiting batch at a
        time, until a["n"] came or a["timeout"] (default timeout) passed."""
        mb = self.boxes[a["mb"]]
        deadline = time.monotonic() + a.get("timeout", timeout)
        got = 0
        while got < a["n"]:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                batch = [mb.recv(timeout=left)] + mb.recv_many()
            except self.pubsub.Timeout:
                return
            got += len(batch)
            yield from batch

    def do_recv(self, a: dict) -> dict:
        """Receive n messages, or fewer when timeout passes first."""
        return {"messages": [[m.channel, repr(m.sender), repr(m.topic),
                              repr(m.payload)]
                             for m in self._recv_each(a, 5.0)]}

    def do_recv_seq(self, a: dict) -> dict:
        """Receive n messages whose payloads should be 0..n-1 in order."""
        expect, bad = 0, None
        for m in self._recv_batched(a, 30.0):
            if m.payload != expect and bad is None:
                bad = (expect, m.payload)
            expect += 1
        return {"received": expect, "first_disorder": bad}

    def do_monitor(self, a: dict) -> dict:
        self.scope(a).monitor(self.boxes[a["mb"]], a.get("channel"))
        return {}

    def do_drain_topics(self, a: dict) -> dict:
        """Every waiting message's topic, oldest first."""
        return {"topics": [m.topic for m in
                           self.boxes[a["mb"]].recv_many()]}

    def do_broadcast_encoded(self, a: dict) -> dict:
        """Broadcast the value whose pubsub.encode() is hex a["data"]."""
        value = self.pubsub.decode(bytes.fromhex(a["data"]))
        self.scope(a).broadcast(a["channel"], "t", value)
        return {}

    def do_recv_encoded(self, a: dict) -> dict:
        """Receive one message; its payload as hex of pubsub.encode()."""
        m = self.boxes[a["mb"]].recv(timeout=a.get("timeout", 5.0))
        return {"data": self.pubsub.encode(m.payload).hex()}

    def do_worker(self, a: dict) -> dict:
        """Start a thread Worker on a["channel"] recording payloads."""
        handled = self.handled = []

        class Recorder(self.pubsub.Worker):
            channels = (a["channel"],)

            def handle_message(self, msg):
                handled.append(repr(msg.payload))

        self.worker = Recorder().start()
        pid = self.worker.pid
        return {"id": pid.id, "incarnation": pid.incarnation}

    def do_worker_state(self, a: dict) -> dict:
        w = self.worker
        return {"handled": list(self.handled),
                "alive": w._thread.is_alive(), "closed": w.mailbox.closed}

    def do_pending(self, a: dict) -> dict:
        return {"len": len(self.boxes[a["mb"]])}

    def do_mailbox_state(self, a: dict) -> dict:
        mb = self.boxes[a["mb"]]
        return {"len": len(mb), "dropped": mb.dropped, "closed": mb.closed}

    def do_drain_payloads(self, a: dict) -> dict:
        """Every waiting message's payload (repr), oldest first; the
        exception's name if receiving raises."""
        try:
            return {"payloads": [repr(m.payload) for m in
                                 self.boxes[a["mb"]].recv_many()]}
        except self.pubsub.PubSubError as e:
            return {"error": type(e).__name__}

    def do_members(self, a: dict) -> dict:
        sc = self.scope(a)
        fn = sc.get_local_members if a.get("local") else sc.get_members
        return {"members": sorted(repr(p) for p in fn(a["channel"]))}

    def do_wait_members(self, a: dict) -> dict:
        """Wait until the channel has exactly n members (and, given
        expect, exactly those), woken by the channel's join/leave
        events."""
        sc = self.scope(a)
        with self.pubsub.Mailbox() as watch:
            sc.monitor(watch, a["channel"])
            deadline = time.monotonic() + a.get("timeout", 5.0)
            while True:
                members = sc.get_members(a["channel"])
                listed = sorted(repr(p) for p in members)
                if len(members) == a["n"] and (
                        "expect" not in a or listed == a["expect"]):
                    return {"members": listed}
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(members)} members, not "
                                       f"{a['n']}: {members!r}")
                try:
                    watch.recv(timeout=left)
                except self.pubsub.Timeout:
                    pass

    def do_wait_nodes(self, a: dict) -> dict:
        """Wait until nodes() is exactly the given set, woken by node
        events."""
        want = set(a["nodes"])
        deadline = time.monotonic() + a.get("timeout", 5.0)
        while True:
            have = set(self.cluster.nodes())
            if have == want:
                return {"nodes": sorted(have)}
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nodes {sorted(have)}, not "
                                   f"{sorted(want)}")
            try:
                self.node_watch.recv(timeout=left)
            except self.pubsub.Timeout:
                pass

    def do_nodes(self, a: dict) -> dict:
        return {"nodes": sorted(self.cluster.nodes())}

    def do_load_start(self, a: dict) -> dict:
        """Background load on a channel: one thread broadcasts sequence
        numbers (a burst, then a short pause, so the node is busy but
        not saturated), another receives as a member and checks each
        sender's stream.  load_stop ends both and reports."""
        self.load = {"sent": 0, "received": 0, "gaps": 0, "disorder": 0,
                     "last": {}, "count": {}}
        self.load_cv = threading.Condition()
        self.load_stop = threading.Event()
        sender = self.pubsub.Mailbox()
        rx = self.pubsub.Mailbox()
        rx.join(a["channel"])
        burst, pause = a.get("burst", 20), a.get("pause", 0.01)

        def send() -> None:
            while not self.load_stop.wait(pause):
                for _ in range(burst):
                    self.pubsub.broadcast(a["channel"], "load",
                                          self.load["sent"],
                                          sender=sender.pid)
                    self.load["sent"] += 1

        def receive() -> None:
            while not self.load_stop.is_set():
                try:
                    batch = [rx.recv(timeout=0.1)] + rx.recv_many()
                except self.pubsub.Timeout:
                    continue
                with self.load_cv:
                    self._load_check(batch)
                    self.load_cv.notify_all()
            rx.close()
            sender.close()

        self.load_threads = [threading.Thread(target=f, daemon=True)
                             for f in (send, receive)]
        for t in self.load_threads:
            t.start()
        return {"pid": repr(rx.pid), "sender": repr(sender.pid)}

    def _load_check(self, batch: list) -> None:
        """Count a batch of load messages, per sender: a number that is
        not above the last is disorder; one that skips is a gap (except
        the first seen from a sender, which joined mid-stream)."""
        st = self.load
        for m in batch:
            key = repr(m.sender)
            if key in st["last"]:
                prev = st["last"][key]
                if m.payload <= prev:
                    st["disorder"] += 1
                elif m.payload != prev + 1:
                    st["gaps"] += 1
            st["last"][key] = m.payload
            st["received"] += 1
            st["count"][key] = st["count"].get(key, 0) + 1

    def do_load_wait(self, a: dict) -> dict:
        """Wait until each given sender's stream has brought at least one
        more message than when the call started."""
        deadline = time.monotonic() + a.get("timeout", 5.0)
        with self.load_cv:
            count = self.load["count"]
            base = {k: count.get(k, 0) for k in a["senders"]}
            while any(count.get(k, 0) == n for k, n in base.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no news from {base!r}: {count!r}")
                self.load_cv.wait(left)
        return {}

    def do_load_stop(self, a: dict) -> dict:
        """Stop the load; counts of what was sent and received, gaps
        (messages missed in a stream, allowed across a lost link) and
        disorder (a repeated or earlier number: never allowed)."""
        if not a.get("peek"):
            self.load_stop.set()
            for t in self.load_threads:
                t.join(10)
        st = self.load
        return {"sent": st["sent"], "received": st["received"],
                "gaps": st["gaps"], "disorder": st["disorder"],
                "senders": sorted(st["last"])}

    def do_stats(self, a: dict) -> dict:
        return {"stats": self.cluster.cluster_stats()}

    def do_registry_stats(self, a: dict) -> dict:
        return {"stats": self.pubsub._core._registry_stats()}

    def do_wait_log(self, a: dict) -> dict:
        """Wait for a log record with the given id."""
        deadline = time.monotonic() + a.get("timeout", 5.0)
        with self.log.cond:
            while True:
                hits = [r for r in self.log.records if r[1] == a["id"]]
                if hits:
                    return {"records": hits}
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {a['id']} record; have "
                                       f"{self.log.records!r}")
                self.log.cond.wait(left)

    def do_logs(self, a: dict) -> dict:
        with self.log.cond:
            return {"records": list(self.log.records)}

    def _lines(self):
        """Lines from stdin as they come (no read-ahead that waits for
        more input than one command)."""
        buf = b""
        while True:
            while b"\n" not in buf:
                chunk = os.read(0, 65536)
                if not chunk:
                    return
                buf += chunk
            line, _, buf = buf.partition(b"\n")
            yield line

    def serve(self) -> None:
        for line in self._lines():
            a = json.loads(line)
            try:
                reply = getattr(self, "do_" + a["cmd"])(a)
                reply["ok"] = True
            except Exception as e:  # reported to the test, not fatal
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


# ---------------------------------------------------------- the test side


class NodeError(AssertionError):
    pass


class Node:
    """A node process.  ``Node("a", cookie="k", seeds=[...])`` starts it
    and waits until it listens; ``node.call("join", ...)`` runs a
    command and returns its reply (raising NodeError on failure)."""

    def __init__(self, name: str, cookie: str = "test-cookie",
                 seeds: list[str] = (), start: bool = True,
                 prefix: list[str] = (), **settings):
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        for k in ("PUBSUB_NODE", "PUBSUB_COOKIE", "PUBSUB_SEEDS",
                  "PUBSUB_LISTEN"):
            env.pop(k, None)
        self.name = name
        # prefix runs the node under another command that execs it (so
        # proc.pid stays the node's): ["ip", "netns", "exec", ns], or
        # ["prlimit", "--nofile=256"].
        self.host = "127.0.0.1"
        # PUBSUB_TEST_STDERR=path collects the nodes' stderr (sanitizer
        # reports, tracebacks at exit) for debugging.
        errpath = os.environ.get("PUBSUB_TEST_STDERR")
        err = open(errpath, "ab") if errpath else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, os.path.join(HERE, "cluster_node.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=err, env=env, cwd=ROOT)
        if errpath:
            err.close()
        self._buf = b""
        self.port = None
        if start:
            reply = self.call("start", name=name, cookie=cookie,
                              seeds=list(seeds), **settings)
            self.host, self.port = reply["host"], reply["port"]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def fd_count(self) -> int:
        """How many descriptors the node process has open."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def _readline(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise NodeError(f"node {self.name}: no reply within "
                                    f"{timeout}s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise NodeError(f"node {self.name} exited "
                                    f"({self.proc.poll()})")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def call(self, cmd: str, **args) -> dict:
        """Run a command; the reply is awaited for the command's own
        timeout (if any) plus 10 seconds."""
        timeout = float(args.get("timeout", 5.0)) + 10.0
        args["cmd"] = cmd
        self.proc.stdin.write((json.dumps(args) + "\n").encode())
        self.proc.stdin.flush()
        reply = json.loads(self._readline(timeout))
        if not reply.pop("ok"):
            raise NodeError(f"node {self.name}: {cmd}: {reply['error']}")
        return reply

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        """End the process: EOF on stdin, then kill if it lingers."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _Server().serve()
