"""The blog's feed rendering against real messages: what each event turns
into on the socket, and what is skipped or ends the socket."""
import pubsub
from examples.blog import events, feed


def message(channel, topic, payload):
    return pubsub.Message(channel, None, topic, payload)


def test_a_feed_frame_names_channel_event_and_data():
    msg = message("posts", b"post_created", {"tags": {"b", "a"}, "raw": b"x"})
    assert feed._feed_frame(msg) == (
        '{"channel": "posts", "event": "post_created",'
        ' "data": {"tags": ["a", "b"], "raw": "x"}}')


def test_a_payload_json_cannot_carry_is_skipped(caplog):
    msg = message("posts", "post_created", {(1, 2): "tuple key"})
    assert feed._feed_frame(msg) is None
    assert "JSON cannot encode" in caplog.text


def test_nan_and_infinities_are_not_json_and_are_skipped(caplog):
    for number in (float("nan"), float("inf"), float("-inf")):
        assert feed._feed_frame(message("posts", "t", {"x": number})) is None
    assert "JSON cannot encode" in caplog.text


def test_a_comment_socket_sends_new_comments_and_ends_on_delete():
    comment = {"id": 1, "post_id": 2, "body": "hi"}
    channel = events.post_comments_channel(2)
    assert feed._comment_frame(message(channel, events.NEW_COMMENT, comment)) \
        == '{"id": 1, "post_id": 2, "body": "hi"}'
    gone = feed._comment_frame(message(channel, events.POST_DELETED, {"id": 2}))
    assert gone is feed.POST_GONE
    assert gone.code == 1000
    assert feed._comment_frame(message(channel, "something_else", 1)) is None
