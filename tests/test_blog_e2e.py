"""End to end: the blog example as a real server, real HTTP and WebSockets.

The server runs as a subprocess (see blog_helpers.py).  A WebSocket client is
subscribed as soon as its connect returns (the server joins its channels
before accepting), so every test drives the API right after connecting and
never waits for a subscription.
"""
import re
import secrets
import sqlite3

import pytest

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from blog_helpers import (  # noqa: E402
    free_port,
    idle_feed,
    read_until_closed,
    recv_json,
    running_blog,
    wait_until,
)

NOT_FOUND = {"error": "post not found"}


@pytest.fixture(scope="module")
def blog(tmp_path_factory):
    with running_blog(tmp_path_factory.mktemp("blog")) as server:
        yield server


def new_post(blog, title="A title", body="A body"):
    return blog.ok("POST", "/posts", {"title": title, "body": body}, expect=201)


def feed_event(channel, event, data):
    return {"channel": channel, "event": event, "data": data}


# -- the live feed and the per-post comment sockets --------------------------


def test_each_socket_receives_exactly_its_events_in_order(blog):
    with blog.websocket("/feed") as feed:
        post_a = new_post(blog, "Post A", "about A")
        post_b = new_post(blog, "Post B", "about B")
        assert recv_json(feed) == feed_event("posts", "post_created", post_a)
        assert recv_json(feed) == feed_event("posts", "post_created", post_b)

        a_id, b_id = post_a["id"], post_b["id"]
        with blog.websocket(f"/posts/{a_id}/comments/ws") as on_a, \
                blog.websocket(f"/posts/{b_id}/comments/ws") as on_b:
            edited = blog.ok("PUT", f"/posts/{a_id}", {"title": "Post A, edited"})
            assert edited["title"] == "Post A, edited"
            assert edited["body"] == "about A"
            comment = blog.ok(
                "POST", f"/posts/{a_id}/comments",
                {"body": "first!", "author": "ann"}, expect=201,
            )
            assert comment["post_id"] == a_id
            assert comment["author"] == "ann"

            assert recv_json(feed) == feed_event("posts", "post_updated", edited)
            assert recv_json(feed) == feed_event(
                "comments", "comment_created", comment
            )
            assert recv_json(on_a) == comment

            # Anything A's comment had sent to B would arrive before this.
            sentinel = blog.ok(
                "POST", f"/posts/{b_id}/comments", {"body": "sentinel"}, expect=201
            )
            assert sentinel["author"] is None
            assert recv_json(on_b) == sentinel
            assert recv_json(feed) == feed_event(
                "comments", "comment_created", sentinel
            )

            # Deleting A ends A's comment socket and tells the feed; B's stays.
            status, answer = blog.request("DELETE", f"/posts/{a_id}")
            assert (status, answer) == (204, None)
            assert recv_json(feed) == feed_event(
                "posts", "post_deleted", {"id": a_id}
            )
            with pytest.raises(ConnectionClosed) as closed:
                on_a.recv(timeout=10)
            assert closed.value.rcvd.code == 1000

            later = blog.ok(
                "POST", f"/posts/{b_id}/comments", {"body": "still here"},
                expect=201,
            )
            assert recv_json(on_b) == later
            assert recv_json(feed)["data"] == later


def test_feed_answers_ping_with_pong(blog):
    with blog.websocket("/feed") as feed:
        feed.send("ping")
        assert feed.recv(timeout=10) == "pong"
        feed.send("something else")  # ignored
        feed.send("ping")
        assert feed.recv(timeout=10) == "pong"


def test_feed_client_reading_late_still_gets_everything_in_order(blog):
    with blog.websocket("/feed", max_queue=1) as idle, \
            blog.websocket("/feed") as active:
        posts = [new_post(blog, f"burst {n}", "x" * 2000) for n in range(50)]
        for post in posts:
            assert recv_json(active) == feed_event("posts", "post_created", post)
        for post in posts:
            assert recv_json(idle) == feed_event("posts", "post_created", post)


def test_client_that_never_reads_is_cut_off_without_stalling_others(tmp_path):
    # A small capacity and send timeout make the server give up quickly; a
    # tiny receive buffer makes the idle client's TCP window shut early.
    with running_blog(tmp_path, "--feed-capacity", "4", "--send-timeout", "0.5") \
            as blog, blog.websocket("/feed") as active:
        # Without compression (which would shrink these repetitive bodies to
        # nothing), each event is 80 kB of UTF-8: the socket buffers fill
        # within a few posts.  The server logs when it gives up on the idle
        # client; that is the signal to stop posting.
        with idle_feed(blog) as idle:
            big = "\N{MUSICAL SYMBOL G CLEF}" * 20_000
            posts = []
            while "slow consumer" not in blog.log():
                assert len(posts) < 400, "the idle client was never cut off"
                posts.append(new_post(blog, f"big {len(posts)}", big))
                assert recv_json(active)["data"] == posts[-1]

            received, close = read_until_closed(idle)
            assert close.code == 1013
            assert received == posts[: len(received)]
            assert len(received) < len(posts)

        # The server is still serving the well-behaved client.
        post = new_post(blog, "after", "the idle client left")
        assert recv_json(active)["data"] == post


def local_members(blog):
    channels = blog.ok("GET", "/stats")["channels"]
    return {name: counts["local"] for name, counts in channels.items()}


def test_sockets_leave_their_channels_when_the_client_goes(blog):
    # Earlier tests' sockets may still be leaving server-side, so the shared
    # channels' counts are only bounded; the per-post channel is ours alone.
    post = new_post(blog)
    channel = f"post_comments_{post['id']}"
    assert channel not in local_members(blog)
    with blog.websocket("/feed"), \
            blog.websocket(f"/posts/{post['id']}/comments/ws"):
        during = local_members(blog)
        assert during[channel] == 1
        assert during["posts"] >= 2  # the indexer and this feed
        assert during["comments"] >= 1
    # The server notices the close asynchronously.
    wait_until(lambda: channel not in local_members(blog))
    wait_until(lambda: local_members(blog)["posts"] < during["posts"])


@pytest.mark.parametrize("path", ["abc", "1.5", "01", "-1", "999999999"])
def test_comment_socket_refuses_unknown_or_malformed_post(blog, path):
    with pytest.raises(InvalidStatus) as refused:
        with blog.websocket(f"/posts/{path}/comments/ws"):
            pass
    assert refused.value.response.status_code == 404


# -- the JSON API: errors -----------------------------------------------------

LONG_TITLE = "t" * 201

INVALID = [
    ("POST", "/posts", {}, {"title": "is required", "body": "is required"}),
    ("POST", "/posts", {"title": 5, "body": ["b"]},
     {"title": "must be a string", "body": "must be a string"}),
    ("POST", "/posts", {"title": "   ", "body": "b"}, {"title": "can't be blank"}),
    ("POST", "/posts", {"title": LONG_TITLE, "body": "b"},
     {"title": "must be at most 200 characters"}),
    ("POST", "/posts", {"title": None, "body": "b"}, {"title": "is required"}),
    ("PUT", "/posts/{id}", {"title": True}, {"title": "must be a string"}),
    ("PUT", "/posts/{id}", {"body": None}, {"body": "is required"}),
    ("PUT", "/posts/{id}", {"tags": ["x"]},
     {"post": "nothing to update: give title and/or body"}),
    ("POST", "/posts/{id}/comments", {"author": "ann"}, {"body": "is required"}),
    ("POST", "/posts", {"title": "\ud800", "body": "b"},
     {"title": "must be valid Unicode text (no lone surrogates)"}),
    ("POST", "/posts/{id}/comments", {"body": "x\udfff"},
     {"body": "must be valid Unicode text (no lone surrogates)"}),
    ("POST", "/posts/{id}/comments", {"body": "hi", "author": 7},
     {"author": "must be a string"}),
]


@pytest.mark.parametrize("method, path, body, errors", INVALID)
def test_invalid_input_names_each_field_at_fault(blog, method, path, body, errors):
    post = new_post(blog)
    status, answer = blog.request(method, path.format(id=post["id"]), body)
    assert (status, answer) == (422, {"errors": errors})
    assert blog.ok("GET", f"/posts/{post['id']}") == post


@pytest.mark.parametrize("raw", [
    b"{not json", b"", b"\xff\xfe", b"[1, 2]", b"3",
    b"[" * 100_000 + b"]" * 100_000,
])
def test_malformed_or_non_object_body_is_a_400(blog, raw):
    status, answer = blog.request("POST", "/posts", raw=raw)
    assert status == 400
    assert set(answer) == {"error"}


@pytest.mark.parametrize("method, path", [
    ("GET", "/posts/999999"),
    ("PUT", "/posts/999999"),
    ("DELETE", "/posts/999999"),
    ("GET", "/posts/abc"),
    ("DELETE", "/posts/1e3"),
    ("GET", "/posts/00001"),
    ("GET", "/posts/99999999999999999999999"),
    ("GET", "/posts/999999/comments"),
    ("POST", "/posts/999999/comments"),
    ("POST", "/posts/abc/comments"),
])
def test_unknown_or_malformed_post_id_is_a_404(blog, method, path):
    body = {"title": "t", "body": "b"} if method in ("PUT", "POST") else None
    assert blog.request(method, path, body) == (404, NOT_FOUND)


# -- the JSON API: success ----------------------------------------------------


def test_posts_and_comments_round_trip(blog):
    post = new_post(blog, "Round trip", "body text")
    assert set(post) == {"id", "title", "body", "created_at", "updated_at"}
    assert blog.ok("GET", f"/posts/{post['id']}") == post
    assert post in blog.ok("GET", "/posts")

    full = blog.ok("PUT", f"/posts/{post['id']}", {"title": "T2", "body": "B2"})
    assert (full["title"], full["body"]) == ("T2", "B2")

    comments = [
        blog.ok("POST", f"/posts/{post['id']}/comments", {"body": f"c{n}"},
                expect=201)
        for n in range(3)
    ]
    assert blog.ok("GET", f"/posts/{post['id']}/comments") == comments

    blog.ok("DELETE", f"/posts/{post['id']}", expect=204)
    assert blog.request("GET", f"/posts/{post['id']}") == (404, NOT_FOUND)
    assert full not in blog.ok("GET", "/posts")


def test_home_page_is_self_contained_html(blog):
    import urllib.request

    with urllib.request.urlopen(blog.url + "/", timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/html")
        html = resp.read().decode()
    assert "/feed" in html and "ping" in html
    # Nothing to fetch but the page itself: every src and href is inline.
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html)
    assert links and all(link.startswith("data:") for link in links)
    assert "url(" not in html and "@import" not in html


# -- search --------------------------------------------------------------------


def search_ids(blog, query):
    return [post["id"] for post in blog.ok("GET", f"/search?q={query}")]


def indexed(blog, post_id):
    # The /search answer joins the posts table, so a deleted post vanishes
    # from it at once; look at the FTS table itself to see the indexer work.
    with sqlite3.connect(blog.db_path) as conn:
        row = conn.execute(
            "SELECT title FROM posts_fts WHERE rowid = ?", (post_id,)
        ).fetchone()
    return None if row is None else row[0]


def test_search_follows_created_updated_and_deleted_posts(blog):
    with blog.websocket("/feed") as feed:
        post = new_post(blog, "Zebracorn sighting", "striped and horned")
        assert recv_json(feed)["event"] == "post_created"
        pid = post["id"]
        assert wait_until(lambda: search_ids(blog, "zebracorn")) == [pid]
        assert search_ids(blog, "horned") == [pid]

        blog.ok("PUT", f"/posts/{pid}", {"title": "Okapi sighting"})
        assert recv_json(feed)["event"] == "post_updated"
        assert wait_until(lambda: search_ids(blog, "okapi")) == [pid]
        assert search_ids(blog, "zebracorn") == []

        blog.ok("DELETE", f"/posts/{pid}", expect=204)
        assert recv_json(feed)["event"] == "post_deleted"
        wait_until(lambda: indexed(blog, pid) is None)
        assert search_ids(blog, "okapi") == []


@pytest.mark.parametrize("query", ["a.b", "%22open", "AND", "nosuchcolumn:x", ""])
def test_invalid_search_query_is_a_400(blog, query):
    status, answer = blog.request("GET", f"/search?q={query}")
    assert status == 400
    assert set(answer) == {"error"}


# -- two instances as one cluster ------------------------------------------------


def remote_members(blog, channel):
    counts = blog.ok("GET", "/stats")["channels"].get(channel)
    return 0 if counts is None else counts["members"] - counts["local"]


def test_two_clustered_instances_share_one_feed(tmp_path):
    cookie = secrets.token_hex(16)
    listen_a = f"127.0.0.1:{free_port()}"
    env_a = {
        "PUBSUB_NODE": "blog_a",
        "PUBSUB_LISTEN": listen_a,
        "PUBSUB_COOKIE": cookie,
    }
    env_b = {
        "PUBSUB_NODE": "blog_b",
        "PUBSUB_LISTEN": f"127.0.0.1:{free_port()}",
        "PUBSUB_COOKIE": cookie,
        "PUBSUB_SEEDS": listen_a,
    }
    shared_db = tmp_path / "shared.db"
    with running_blog(tmp_path / "a", db_path=shared_db, env=env_a) as a, \
            running_blog(tmp_path / "b", db_path=shared_db, env=env_b) as b, \
            b.websocket("/feed") as feed_on_b:
        # Remote joins reach A one link round trip later: B's indexer and
        # B's feed socket must both be members of "posts" as A sees it.
        wait_until(lambda: remote_members(a, "posts") == 2)
        assert a.ok("GET", "/stats")["node"] == "blog_a"
        assert b.ok("GET", "/stats")["node"] == "blog_b"

        post = new_post(a, "Made on A", "seen on B")
        assert recv_json(feed_on_b) == feed_event("posts", "post_created", post)
        comment = a.ok(
            "POST", f"/posts/{post['id']}/comments", {"body": "hi"}, expect=201
        )
        assert recv_json(feed_on_b) == feed_event(
            "comments", "comment_created", comment
        )
        assert b.ok("GET", f"/posts/{post['id']}") == post

        # The other way: a comment made on B reaches A's per-post socket,
        # and a socket on A for another post hears nothing of it.
        other = new_post(b, "Made on B", "second post")
        assert recv_json(feed_on_b) == feed_event(
            "posts", "post_created", other)
        with a.websocket(f"/posts/{post['id']}/comments/ws") as on_a, \
                a.websocket(f"/posts/{other['id']}/comments/ws") as other_a:
            # Each socket's join crosses to B one round trip later.
            wait_until(lambda: remote_members(
                b, f"post_comments_{post['id']}") == 1)
            wait_until(lambda: remote_members(
                b, f"post_comments_{other['id']}") == 1)
            reply = b.ok("POST", f"/posts/{post['id']}/comments",
                         {"body": "from B"}, expect=201)
            assert recv_json(on_a) == reply
            sentinel = b.ok("POST", f"/posts/{other['id']}/comments",
                            {"body": "sentinel"}, expect=201)
            assert recv_json(other_a) == sentinel
