"""Channel names: any str, compared exactly, bounded in UTF-8 bytes."""
import unicodedata

import pytest

import pubsub


def _roundtrip(name, mailbox):
    """Join name, broadcast on it, return what the member received."""
    mb = mailbox()
    pubsub.join(name, mb)
    try:
        pubsub.broadcast(name, "t", "x")
        assert pubsub.get_members(name) == [mb.pid]
        return mb.recv_nowait()
    finally:
        pubsub.leave(name, mb)


def test_max_channel_is_an_int():
    assert isinstance(pubsub.MAX_CHANNEL, int)
    assert pubsub.MAX_CHANNEL >= 255


def test_nfc_and_nfd_forms_are_two_channels(channel, mailbox):
    nfc = unicodedata.normalize("NFC", channel + "café")
    nfd = unicodedata.normalize("NFD", channel + "café")
    assert nfc != nfd
    composed, decomposed = mailbox(), mailbox()
    pubsub.join(nfc, composed)
    pubsub.join(nfd, decomposed)
    pubsub.broadcast(nfc, "t", "nfc")
    assert composed.recv_nowait().payload == "nfc"
    assert len(decomposed) == 0
    assert pubsub.get_members(nfd) == [decomposed.pid]
    listed = pubsub.which_channels()
    assert nfc in listed and nfd in listed


def test_case_is_significant(channel, mailbox):
    lower, upper = mailbox(), mailbox()
    pubsub.join(channel.lower(), lower)
    pubsub.join(channel.upper(), upper)
    pubsub.broadcast(channel.upper(), "t", 1)
    assert len(lower) == 0 and len(upper) == 1


@pytest.mark.parametrize("suffix", [
    "",
    " ",
    "with space",
    "\x00nul",
    "emoji-\U0001F600",
    "lone-\ud800-surrogate",
    "\udfff",
    "tab\tnewline\n",
    "ünïcödé-日本語",
])
def test_any_str_is_a_channel_name(suffix, channel, mailbox):
    name = channel + suffix
    msg = _roundtrip(name, mailbox)
    assert msg.channel == name


def test_empty_string_is_a_channel_name(mailbox):
    msg = _roundtrip("", mailbox)
    assert msg.channel == ""
    assert "" not in pubsub.which_channels()


def test_lone_surrogate_channel_is_listed_as_itself(channel, mailbox):
    name = channel + "\udc80"
    mb = mailbox()
    pubsub.join(name, mb)
    assert name in pubsub.which_channels()
    assert (channel + "\udc81") not in pubsub.which_channels()
    pubsub.leave(name, mb)
    assert name not in pubsub.which_channels()


def test_surrogate_pair_differs_from_the_character_it_spells(
        channel, mailbox):
    pair, char = mailbox(), mailbox()
    pubsub.join(channel + "\ud83d\ude00", pair)
    pubsub.join(channel + "\U0001F600", char)
    pubsub.broadcast(channel + "\ud83d\ude00", "t", 1)
    assert len(pair) == 1 and len(char) == 0


def _name_of_bytes(prefix, nbytes, char="a"):
    """A name that is nbytes long in UTF-8, padding prefix with char."""
    width = len(char.encode("utf-8", "surrogatepass"))
    room = nbytes - len(prefix.encode())
    assert room % width == 0
    return prefix + char * (room // width)


def test_name_of_exactly_the_limit_is_accepted(channel, mailbox):
    name = _name_of_bytes(channel, pubsub.MAX_CHANNEL)
    assert _roundtrip(name, mailbox).channel == name


def test_name_one_byte_over_the_limit_is_refused(channel, mailbox):
    name = _name_of_bytes(channel, pubsub.MAX_CHANNEL + 1)
    mb = mailbox()
    with pytest.raises(ValueError, match=str(pubsub.MAX_CHANNEL)) as info:
        pubsub.join(name, mb)
    assert "channel" in str(info.value)
    assert pubsub.get_members(name[:-1]) == []


@pytest.mark.parametrize("op", [
    "join", "leave", "broadcast", "local_broadcast", "get_members",
    "get_local_members", "mailbox.join", "mailbox.leave", "monitor",
])
def test_every_operation_refuses_a_name_over_the_limit(op, channel,
                                                       mailbox):
    name = _name_of_bytes(channel, pubsub.MAX_CHANNEL + 1)
    mb = mailbox()
    calls = {
        "join": lambda: pubsub.join(name, mb),
        "leave": lambda: pubsub.leave(name, mb),
        "broadcast": lambda: pubsub.broadcast(name, "t", 1),
        "local_broadcast": lambda: pubsub.local_broadcast(name, "t", 1),
        "get_members": lambda: pubsub.get_members(name),
        "get_local_members": lambda: pubsub.get_local_members(name),
        "mailbox.join": lambda: mb.join(name),
        "mailbox.leave": lambda: mb.leave(name),
        "monitor": lambda: pubsub.monitor(mb, name),
    }
    with pytest.raises(ValueError, match=f"{pubsub.MAX_CHANNEL} bytes"):
        calls[op]()


@pytest.mark.parametrize("char", ["é", "€", "\U0001F600", "\ud800"])
def test_multibyte_characters_count_by_their_utf8_bytes(char, mailbox):
    width = len(char.encode("utf-8", "surrogatepass"))
    fits = pubsub.MAX_CHANNEL // width
    at_limit = _name_of_bytes("", fits * width, char)
    assert len(at_limit) == fits
    assert _roundtrip(at_limit, mailbox).channel == at_limit
    over = at_limit + char
    # Fewer characters than the limit, more bytes.
    assert len(over) < pubsub.MAX_CHANNEL
    with pytest.raises(ValueError, match=str(pubsub.MAX_CHANNEL)):
        pubsub.join(over, mailbox())


def test_refused_name_reports_its_length(channel, mailbox):
    name = _name_of_bytes(channel, pubsub.MAX_CHANNEL + 10)
    with pytest.raises(ValueError, match=str(pubsub.MAX_CHANNEL + 10)):
        pubsub.join(name, mailbox())
