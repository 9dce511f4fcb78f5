"""The search indexer: a pubsub worker keeping the FTS5 table current.

It is the Python twin of the chapter's ``blog_search_indexer`` gen_server.
It joins ``posts`` when started and, for every ``post_created``,
``post_updated`` or ``post_deleted`` message, rewrites that post's entry in
``posts_fts`` through a SQLite connection that only its own thread uses.

An event is taken as "post N changed": the entry is rebuilt from the
``posts`` table rather than from the payload.  Two blog nodes sharing one
database both index every change, and their events may arrive in any
order; reading the row makes every replay land on the same, current state.
"""
import logging

import pubsub

from . import events, store

log = logging.getLogger(__name__)


class SearchIndexer(pubsub.Worker):
    """Keeps ``posts_fts`` in step with ``posts`` in the database at a path."""

    channels = (events.POSTS,)

    def __init__(self, db_path):
        super().__init__()
        # Double-underscore names cannot collide with pubsub.Worker's own.
        self.__db_path = str(db_path)
        self.__db = None

    def init(self):
        self.__db = store.connect(self.__db_path)
        self.__rebuild()

    def handle_message(self, msg):
        match msg:
            case pubsub.Message(
                topic=events.POST_CREATED | events.POST_UPDATED,
                payload={"id": int(post_id)},
            ):
                self.__apply(self.__reindex, post_id)
            case pubsub.Message(
                topic=events.POST_DELETED, payload={"id": int(post_id)}
            ):
                self.__apply(self.__remove, post_id)
            case _:
                log.debug("ignoring %r on %r", msg.topic, msg.channel)

    def terminate(self):
        if self.__db is not None:
            self.__db.close()
            self.__db = None
        log.info("search indexer stopped")

    def __apply(self, action, post_id):
        # One bad event (a locked database, a corrupt payload) must not
        # stop the indexer: log it and carry on with the next message.
        try:
            with self.__db:
                action(post_id)
        except Exception:
            log.exception("could not index post %s", post_id)

    def __rebuild(self):
        # Posts may have changed while no indexer was running; start from
        # the table.  Messages that arrive meanwhile wait in the mailbox
        # and replay harmlessly afterwards.
        with self.__db:
            self.__db.execute("DELETE FROM posts_fts")
            self.__db.execute(
                "INSERT INTO posts_fts (rowid, title, body)"
                " SELECT id, title, body FROM posts"
            )
        count = self.__db.execute("SELECT count(*) FROM posts_fts").fetchone()
        log.info("search index rebuilt with %d posts", count[0])

    def __reindex(self, post_id):
        self.__remove(post_id)
        self.__db.execute(
            "INSERT INTO posts_fts (rowid, title, body)"
            " SELECT id, title, body FROM posts WHERE id = ?",
            (post_id,),
        )
        log.debug("indexed post %d", post_id)

    def __remove(self, post_id):
        self.__db.execute("DELETE FROM posts_fts WHERE rowid = ?", (post_id,))
