"""The blog's Starlette application: JSON API, search, page and lifespan.

Every successful change is committed to SQLite first and broadcast second,
so whoever reacts to an event (a feed client, the indexer) finds the change
already in the database.  Handlers run SQLite calls in Starlette's thread
pool and publish from the event loop.
"""
import contextlib
import json
import logging
import os

import pubsub
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from . import events, feed, page, validation
from .indexer import SearchIndexer
from .store import InvalidQuery, Store

log = logging.getLogger(__name__)

DEFAULT_DB = "blog.db"
# Frames the server may hold for a WebSocket client before dropping it.
FEED_CAPACITY = 1000
# Seconds a WebSocket send may wait for a client that reads nothing.
SEND_TIMEOUT = 10.0
MAX_REQUEST_BYTES = 1 << 20
SEARCH_LIMIT = 50

_node = None


def create_app(
    db_path=None, *, feed_capacity=FEED_CAPACITY, send_timeout=SEND_TIMEOUT,
    hub_capacity=feed.HUB_CAPACITY, direct_writes=True,
):
    """Build the blog application on the SQLite file at ``db_path``.

    ``db_path`` defaults to ``$BLOG_DB``, then ``blog.db``.  Nothing is
    touched before the lifespan starts: the schema, the search indexer and
    (when ``PUBSUB_NODE`` is set) the cluster node start with the server.
    The other arguments set the live feed's limits (see feed.py);
    ``direct_writes=False`` sends every frame through ASGI even where the
    server would take direct writes.
    """
    if db_path is None:
        db_path = os.environ.get("BLOG_DB") or DEFAULT_DB
    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(feed.ExposeConnection)],
        lifespan=_lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.store = Store(db_path)
    app.state.feeds = feed.Feeds(
        feed_capacity, send_timeout, hub_capacity=hub_capacity,
        direct=direct_writes,
    )
    return app


@contextlib.asynccontextmanager
async def _lifespan(app):
    _start_node()
    store = app.state.store
    await run_in_threadpool(store.create_schema)
    indexer = SearchIndexer(store.path)
    indexer.start()
    log.info("search indexer started")
    try:
        yield
    finally:
        await run_in_threadpool(indexer.stop, timeout=10)


def _start_node():
    """Join the cluster described by PUBSUB_* variables, once per process."""
    global _node
    if _node is not None:
        return
    address = pubsub.start_node_from_env()
    if address is not None:
        _node = pubsub.node_name()
        log.info("pubsub node %s listening on %s:%d", _node, *address)


# -- helpers -----------------------------------------------------------------


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request, exc):
    return JSONResponse(
        {"error": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


def _unprocessable(errors):
    return JSONResponse({"errors": errors}, status_code=422)


def _post_id(request):
    """The request's post id; raise 404 unless it is a canonical integer."""
    post_id = events.parse_id(request.path_params["post_id"])
    if post_id is None:
        raise HTTPException(404, "post not found")
    return post_id


async def _json_object(request):
    """Decode the request body as a JSON object, or raise 400 / 413."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise HTTPException(413, f"body larger than {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return data


# -- posts -------------------------------------------------------------------


async def list_posts(request):
    store = request.app.state.store
    return JSONResponse(await run_in_threadpool(store.list_posts))


async def create_post(request):
    fields, errors = validation.check_new_post(await _json_object(request))
    if errors:
        return _unprocessable(errors)
    store = request.app.state.store
    post = await run_in_threadpool(store.create_post, **fields)
    events.post_changed(events.POST_CREATED, post)
    log.info("post %d created", post["id"])
    return JSONResponse(post, status_code=201)


async def show_post(request):
    post_id = _post_id(request)
    post = await run_in_threadpool(request.app.state.store.get_post, post_id)
    if post is None:
        return _error(404, "post not found")
    return JSONResponse(post)


async def update_post(request):
    post_id = _post_id(request)
    fields, errors = validation.check_post_update(await _json_object(request))
    if errors:
        return _unprocessable(errors)
    store = request.app.state.store
    post = await run_in_threadpool(store.update_post, post_id, fields)
    if post is None:
        return _error(404, "post not found")
    events.post_changed(events.POST_UPDATED, post)
    log.info("post %d updated", post_id)
    return JSONResponse(post)


async def delete_post(request):
    post_id = _post_id(request)
    store = request.app.state.store
    if not await run_in_threadpool(store.delete_post, post_id):
        return _error(404, "post not found")
    events.post_deleted(post_id)
    log.info("post %d deleted", post_id)
    return Response(status_code=204)


# -- comments ----------------------------------------------------------------


async def list_comments(request):
    post_id = _post_id(request)
    store = request.app.state.store
    comments = await run_in_threadpool(store.list_comments, post_id)
    if comments is None:
        return _error(404, "post not found")
    return JSONResponse(comments)


async def create_comment(request):
    post_id = _post_id(request)
    fields, errors = validation.check_new_comment(await _json_object(request))
    if errors:
        return _unprocessable(errors)
    store = request.app.state.store
    comment = await run_in_threadpool(store.create_comment, post_id, **fields)
    if comment is None:
        return _error(404, "post not found")
    events.comment_created(comment)
    log.info("comment %d on post %d created", comment["id"], post_id)
    return JSONResponse(comment, status_code=201)


# -- search and page ---------------------------------------------------------


async def search(request):
    query = request.query_params.get("q", "")
    if not query.strip():
        return _error(400, "give a search query as ?q=...")
    store = request.app.state.store
    try:
        posts = await run_in_threadpool(store.search, query, SEARCH_LIMIT)
    except InvalidQuery as exc:
        return _error(400, f"invalid search query: {exc}")
    return JSONResponse(posts)


async def stats(request):
    """Who listens where: members per channel, cluster-wide and local,
    and this process's WebSocket connections per feed hub.

    Lets an operator (or a test) see a new node's subscribers arrive.  A
    feed hub is one local member however many sockets it serves.
    """
    channels = sorted(set(pubsub.which_channels()) | {events.POSTS, events.COMMENTS})
    return JSONResponse({
        "node": _node,
        "channels": {
            channel: {
                "members": len(pubsub.get_members(channel)),
                "local": len(pubsub.get_local_members(channel)),
            }
            for channel in channels
        },
        "feeds": request.app.state.feeds.counts(),
    })


async def home(request):
    return HTMLResponse(page.HTML)


ROUTES = [
    Route("/", home),
    Route("/posts", list_posts, methods=["GET"]),
    Route("/posts", create_post, methods=["POST"]),
    Route("/posts/{post_id}", show_post, methods=["GET"]),
    Route("/posts/{post_id}", update_post, methods=["PUT"]),
    Route("/posts/{post_id}", delete_post, methods=["DELETE"]),
    Route("/posts/{post_id}/comments", list_comments, methods=["GET"]),
    Route("/posts/{post_id}/comments", create_comment, methods=["POST"]),
    Route("/search", search),
    Route("/stats", stats),
    WebSocketRoute("/feed", feed.feed),
    WebSocketRoute("/posts/{post_id}/comments/ws", feed.post_comments),
]
