"""The blog's feed hubs against a real server, on each way of writing.

One hub per channel set and server process renders each event once and
writes it to every socket: straight to the connection on uvicorn's
``websockets-sansio`` and legacy ``websockets`` protocols, through ASGI
(an outbox and a sender task per socket) on ``wsproto``.  /stats says
which path each hub's sockets take, so every test checks it is testing
the path it names.
"""
import contextlib
import secrets
import signal

import pytest
from websockets.exceptions import ConnectionClosed

from blog_helpers import (
    free_port,
    idle_feed,
    read_until_closed,
    recv_json,
    running_blog,
    wait_until,
)
from cluster_node import Node

# uvicorn protocol -> whether its sockets take direct writes.
PROTOCOLS = {"websockets-sansio": True, "websockets": True, "wsproto": False}


@pytest.fixture(scope="module", params=list(PROTOCOLS))
def blog(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"hub-{request.param}")
    with running_blog(tmp, "--ws", request.param) as server:
        server.protocol = request.param
        yield server


def new_post(blog, title="A title", body="A body"):
    return blog.ok("POST", "/posts", {"title": title, "body": body}, expect=201)


def feeds(blog):
    return blog.ok("GET", "/stats")["feeds"]


def local_members(blog):
    channels = blog.ok("GET", "/stats")["channels"]
    return {name: counts["local"] for name, counts in channels.items()}


def assert_path(blog, key, sockets):
    """The hub ``key`` serves ``sockets`` sockets, on the protocol's path."""
    direct = sockets if PROTOCOLS[blog.protocol] else 0
    assert feeds(blog)[key] == {"sockets": sockets, "direct": direct}


def test_many_clients_receive_each_post_exactly_once_in_order(blog):
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(blog.websocket("/feed"))
                   for _ in range(40)]
        assert_path(blog, "feed", len(clients))
        posts = [new_post(blog, f"post {n}") for n in range(15)]
        for ws in clients:
            got = [recv_json(ws) for _ in posts]
            assert got == [{"channel": "posts", "event": "post_created",
                            "data": post} for post in posts]
            # A duplicate would come before the answer to this ping.
            ws.send("ping")
            assert ws.recv(timeout=10) == "pong"
    wait_until(lambda: "feed" not in feeds(blog))


def test_one_hub_per_post_and_its_channel_goes_with_its_last_client(blog):
    post = new_post(blog)
    channel = f"post_comments_{post['id']}"
    path = f"/posts/{post['id']}/comments/ws"
    with blog.websocket(path) as second:
        with blog.websocket(path) as first:
            _one_hub_two_sockets(blog, post, channel, first, second)
        wait_until(lambda: feeds(blog).get(channel, {}).get("sockets") == 1)
        assert local_members(blog)[channel] == 1
        later = blog.ok("POST", f"/posts/{post['id']}/comments",
                        {"body": "to the one left"}, expect=201)
        assert recv_json(second) == later
    wait_until(lambda: channel not in local_members(blog))
    assert channel not in feeds(blog)


def _one_hub_two_sockets(blog, post, channel, first, second):
    assert local_members(blog)[channel] == 1        # one hub, two sockets
    assert_path(blog, channel, 2)

    comment = blog.ok("POST", f"/posts/{post['id']}/comments",
                      {"body": "to both"}, expect=201)
    assert recv_json(first) == comment
    assert recv_json(second) == comment


def test_deleting_a_post_closes_its_comment_sockets_with_1000(blog):
    post = new_post(blog)
    channel = f"post_comments_{post['id']}"
    with blog.websocket(f"/posts/{post['id']}/comments/ws") as one, \
            blog.websocket(f"/posts/{post['id']}/comments/ws") as two, \
            blog.websocket("/feed") as feed:
        status, _ = blog.request("DELETE", f"/posts/{post['id']}")
        assert status == 204
        for ws in (one, two):
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1000
            assert closed.value.rcvd.reason == "post deleted"
        assert recv_json(feed)["data"] == {"id": post["id"]}
    wait_until(lambda: channel not in local_members(blog))


def test_slow_consumer_is_closed_while_the_others_get_everything(
        blog, tmp_path):
    # A server of our own, with a small capacity: the idle client (tiny
    # receive buffer, no reading) is cut off after a few 80 kB frames, and
    # reads what was queued for it well within the send timeout.
    with running_blog(tmp_path, "--ws", blog.protocol, "--feed-capacity", "4",
                      "--send-timeout", "10") as server:
        server.protocol = blog.protocol
        stack = contextlib.ExitStack()
        actives = [stack.enter_context(server.websocket("/feed"))
                   for _ in range(3)]
        idle = stack.enter_context(idle_feed(server))
        with stack:
            posts = _cut_off_the_idle_client(server, actives)
            posts += [new_post(server, f"after {n}") for n in range(5)]
            for ws in actives:
                got = [recv_json(ws)["data"] for _ in posts[-5:]]
                assert got == posts[-5:]

            received, close = read_until_closed(idle)
            assert close.code == 1013
            assert received == posts[:len(received)]
            assert len(received) < len(posts)
            wait_until(lambda: feeds(server)["feed"]["sockets"] == 3)


@contextlib.contextmanager
def blog_with_node(tmp_path, name, *args):
    """A blog that is a cluster node, and another node joined to it."""
    cookie = secrets.token_hex(16)
    listen = f"127.0.0.1:{free_port()}"
    env = {"PUBSUB_NODE": "blog", "PUBSUB_LISTEN": listen,
           "PUBSUB_COOKIE": cookie}
    with running_blog(tmp_path, *args, env=env) as blog:
        node = Node(name, cookie=cookie, seeds=[listen])
        try:
            yield blog, node
        finally:
            node.close()


def _cut_off_the_idle_client(server, actives):
    """Post 80 kB posts until the server cuts off the one client of its
    feed hub that does not read; ``actives`` get each; return the posts."""
    assert_path(server, "feed", len(actives) + 1)
    big = "\N{MUSICAL SYMBOL G CLEF}" * 20_000
    posts = []
    while "slow consumer" not in server.log():
        assert len(posts) < 400, "the idle client was never cut off"
        posts.append(new_post(server, f"big {len(posts)}", big))
        for ws in actives:
            assert recv_json(ws)["data"] == posts[-1]
    return posts


def test_a_slow_consumer_that_never_reads_is_dropped_after_the_send_timeout(
        blog, tmp_path):
    # It takes no close frame either; the server gives up on it rather than
    # keep its socket and backlog for as long as it stays connected.
    with running_blog(tmp_path, "--ws", blog.protocol, "--feed-capacity", "2",
                      "--send-timeout", "0.5") as server:
        server.protocol = blog.protocol
        with server.websocket("/feed") as active, idle_feed(server) as idle:
            posts = _cut_off_the_idle_client(server, [active])
            wait_until(lambda: feeds(server)["feed"]["sockets"] == 1)
            assert "dropping /feed: its close has not left" in server.log()

            received, close = read_until_closed(idle)
            assert close is None
            assert received == posts[:len(received)]
            post = new_post(server, "still served")
            assert recv_json(active)["data"] == post


def test_a_hub_that_falls_behind_closes_its_clients_with_1013(tmp_path):
    # Another node floods "posts" faster than a hub of 2 messages drains.
    with blog_with_node(tmp_path, "flood",
                        "--hub-capacity", "2") as (blog, node):
        with blog.websocket("/feed") as ws:
            # The blog's indexer and its feed hub.
            node.call("wait_members", channel="posts", n=2, timeout=10)
            node.call("broadcast", channel="posts", topic="seq",
                      count=5000)
            received, close = read_until_closed(ws)
            assert close.code == 1013
            assert close.reason == "server fell behind: reconnect"
            assert received == list(range(len(received)))
            assert len(received) < 5000
        assert "fell behind" in blog.log()

        # The next client gets a fresh hub.
        with blog.websocket("/feed") as ws:
            post = new_post(blog)
            assert recv_json(ws)["data"] == post


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_a_hub_that_falls_behind_mid_send_closes_every_client(
        protocol, tmp_path):
    # The flood outruns the hub while frames are on their way to its
    # clients.  On wsproto a sender task could swallow its cancellation
    # there (wait_for before Python 3.12) and its socket then hung open,
    # never closed and never released.
    with blog_with_node(tmp_path, "flood", "--ws", protocol,
                        "--hub-capacity", "5000") as (blog, node):
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(blog.websocket("/feed"))
                       for _ in range(20)]
            node.call("wait_members", channel="posts", n=2, timeout=10)
            node.call("broadcast", channel="posts", topic="seq", count=20_000)
            for ws in clients:
                received, close = read_until_closed(ws)
                assert (close.code, close.reason) == (
                    1013, "server fell behind: reconnect")
                assert received == list(range(len(received)))
        wait_until(lambda: feeds(blog) == {})


def test_an_event_json_cannot_carry_is_skipped_and_the_feed_goes_on(tmp_path):
    with blog_with_node(tmp_path, "odd") as (blog, node):
        with blog.websocket("/feed") as ws:
            node.call("wait_members", channel="posts", n=2, timeout=10)
            node.call("broadcast", channel="posts", topic="odd",
                      payload="{(1, 2): 'a tuple key'}")
            # Infinity and NaN are not JSON: JSON.parse would reject them.
            node.call("broadcast", channel="posts", topic="infinite",
                      payload="{'x': 1e999, 'y': -1e999}")
            node.call("broadcast", channel="posts", topic="fine",
                      payload="{'n': 1}")
            assert recv_json(ws) == {"channel": "posts", "event": "fine",
                                     "data": {"n": 1}}
        assert "JSON cannot encode" in blog.log()


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130),
                                            (signal.SIGTERM, -signal.SIGTERM)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_closes_live_clients_and_stops_without_a_traceback(
        blog, tmp_path, signum, status):
    with running_blog(tmp_path, "--ws", blog.protocol) as server:
        post = new_post(server)
        with server.websocket("/feed") as feed, \
                server.websocket(f"/posts/{post['id']}/comments/ws") as comments:
            server.proc.send_signal(signum)
            for ws in (feed, comments):
                received, close = read_until_closed(ws)
                assert (received, close.code) == ([], 1012)  # going away
        assert server.proc.wait(timeout=10) == status
        assert "Traceback" not in server.log()
