"""SQLite storage for posts and comments, and the full-text search query.

Every public method opens its own short-lived connection, so the methods are
safe to call from any thread (Starlette runs them in its thread pool).  The
search indexer keeps one long-lived connection of its own (see indexer.py);
WAL mode lets it write while requests read.  Posts and comments are returned
as plain dicts of str and int, ready to be sent as JSON or broadcast to
another node.
"""
import contextlib
import datetime
import logging
import sqlite3

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS comments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    post_id    INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    body       TEXT NOT NULL,
    author     TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_by_post ON comments(post_id, id);
CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5(title, body);
"""

POST_COLUMNS = "id, title, body, created_at, updated_at"
COMMENT_COLUMNS = "id, post_id, body, author, created_at"

# sqlite3 exports result codes only from Python 3.11; the value is fixed.
_SQLITE_ERROR = 1


class InvalidQuery(ValueError):
    """A search string that SQLite's FTS5 query syntax rejects."""


def connect(path):
    """Open a connection to the blog database with the settings it needs.

    The caller owns the connection and must close it.  ``check_same_thread``
    is off because a connection may be opened in one thread of a pool and
    used in another; no connection is ever shared by two threads at once.
    """
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def now():
    """Return the current UTC time as an ISO 8601 string (milliseconds)."""
    moment = datetime.datetime.now(datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


class Store:
    """Posts and comments kept in the SQLite file at ``path``."""

    def __init__(self, path):
        self.path = str(path)

    @contextlib.contextmanager
    def _transaction(self):
        conn = connect(self.path)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def create_schema(self):
        """Create the tables if missing; switch the file to WAL mode."""
        with self._transaction() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
        log.info("database ready at %s", self.path)

    def list_posts(self):
        """Return every post, newest first."""
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {POST_COLUMNS} FROM posts ORDER BY id DESC"
            ).fetchall()
        return [dict(row) for row in rows]

    def get_post(self, post_id):
        """Return the post with id ``post_id``, or None if there is none."""
        with self._transaction() as conn:
            return _fetch_post(conn, post_id)

    def create_post(self, title, body):
        """Insert a post and return it as stored."""
        stamp = now()
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO posts (title, body, created_at, updated_at)"
                " VALUES (?, ?, ?, ?)",
                (title, body, stamp, stamp),
            )
            return _fetch_post(conn, cursor.lastrowid)

    def update_post(self, post_id, changes):
        """Apply ``changes`` (a dict with title and/or body) to a post.

        Returns the post as stored afterwards, or None if there is no such
        post.  ``changes`` must hold only validated columns.
        """
        assignments = ", ".join(f"{column} = ?" for column in changes)
        values = [*changes.values(), now(), post_id]
        with self._transaction() as conn:
            cursor = conn.execute(
                f"UPDATE posts SET {assignments}, updated_at = ? WHERE id = ?",
                values,
            )
            if cursor.rowcount == 0:
                return None
            return _fetch_post(conn, post_id)

    def delete_post(self, post_id):
        """Delete a post and its comments; return False if it did not exist."""
        with self._transaction() as conn:
            cursor = conn.execute("DELETE FROM posts WHERE id = ?", (post_id,))
            return cursor.rowcount > 0

    def create_comment(self, post_id, body, author):
        """Insert a comment on post ``post_id`` and return it as stored.

        Returns None if the post does not exist, including when it is
        deleted concurrently (the foreign key refuses the insert).
        """
        try:
            with self._transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO comments (post_id, body, author, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (post_id, body, author, now()),
                )
                row = conn.execute(
                    f"SELECT {COMMENT_COLUMNS} FROM comments WHERE id = ?",
                    (cursor.lastrowid,),
                ).fetchone()
        except sqlite3.IntegrityError:
            return None
        return dict(row)

    def list_comments(self, post_id):
        """Return the comments of a post, oldest first; None if no post."""
        with self._transaction() as conn:
            if _fetch_post(conn, post_id) is None:
                return None
            rows = conn.execute(
                f"SELECT {COMMENT_COLUMNS} FROM comments"
                " WHERE post_id = ? ORDER BY id",
                (post_id,),
            ).fetchall()
        return [dict(row) for row in rows]

    def search(self, query, limit=50):
        """Return the posts matching an FTS5 ``query``, best match first.

        Raises InvalidQuery when FTS5 cannot parse ``query``.  Posts are
        read from ``posts`` so that an index entry the indexer has not yet
        removed never resurrects a deleted post.
        """
        try:
            with self._transaction() as conn:
                rows = conn.execute(
                    "SELECT p.id, p.title, p.body, p.created_at, p.updated_at"
                    " FROM posts_fts JOIN posts AS p ON p.id = posts_fts.rowid"
                    " WHERE posts_fts MATCH ? ORDER BY posts_fts.rank LIMIT ?",
                    (query, limit),
                ).fetchall()
        except sqlite3.OperationalError as exc:
            if _is_query_error(exc):
                raise InvalidQuery(str(exc)) from None
            raise
        return [dict(row) for row in rows]


def _fetch_post(conn, post_id):
    row = conn.execute(
        f"SELECT {POST_COLUMNS} FROM posts WHERE id = ?", (post_id,)
    ).fetchone()
    return None if row is None else dict(row)


def _is_query_error(exc):
    # FTS5 reports a bad query as a plain SQLITE_ERROR ("fts5: syntax
    # error", "unterminated string", "no such column: x" for "x:word").
    # A busy or locked database has codes of its own and is not the
    # user's fault, so it must not become a 400.
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == _SQLITE_ERROR
    return "locked" not in str(exc) and "busy" not in str(exc)
