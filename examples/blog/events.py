"""Channel names and topics the blog publishes on, in one place.

Channels built from user input go through :func:`post_comments_channel`,
which accepts only an ``int`` post id, so a request can never make the
server join or publish to a channel of its choosing.
"""
import re

import pubsub

POSTS = "posts"
COMMENTS = "comments"

POST_CREATED = "post_created"
POST_UPDATED = "post_updated"
POST_DELETED = "post_deleted"
COMMENT_CREATED = "comment_created"
NEW_COMMENT = "new_comment"

# Ids are SQLite rowids: positive, at most 2**63 - 1 (19 digits).  Accepting
# only canonical decimal digits keeps "1_0", " 1" and "01" (all of which
# int() would take) from naming an existing post under another spelling.
_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_ID = 2**63 - 1


def parse_id(text):
    """Return the post id spelled by ``text``, or None if it is not one."""
    if not _ID.fullmatch(text):
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def post_comments_channel(post_id):
    """Return the channel carrying new comments of post ``post_id``."""
    if type(post_id) is not int or post_id <= 0:
        raise TypeError(f"post id must be a positive int, not {post_id!r}")
    return f"post_comments_{post_id}"


def post_changed(topic, post):
    """Announce a created or updated post on the ``posts`` channel."""
    pubsub.broadcast(POSTS, topic, post)


def post_deleted(post_id):
    """Announce a deleted post to the feed and to its comment watchers."""
    payload = {"id": post_id}
    pubsub.broadcast(POSTS, POST_DELETED, payload)
    pubsub.broadcast(post_comments_channel(post_id), POST_DELETED, payload)


def comment_created(comment):
    """Announce a new comment on ``comments`` and on its post's channel."""
    pubsub.broadcast(COMMENTS, COMMENT_CREATED, comment)
    channel = post_comments_channel(comment["post_id"])
    pubsub.broadcast(channel, NEW_COMMENT, comment)
