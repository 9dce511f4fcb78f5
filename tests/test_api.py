"""The package's public surface."""
import importlib.metadata
import types

import pubsub


def _public_names():
    return {name for name, value in vars(pubsub).items()
            if not name.startswith("_")
            and not isinstance(value, types.ModuleType)}


def test_all_is_sorted():
    assert pubsub.__all__ == sorted(pubsub.__all__)


def test_all_has_no_duplicates():
    assert len(set(pubsub.__all__)) == len(pubsub.__all__)


def test_every_name_in_all_exists():
    missing = [name for name in pubsub.__all__ if not hasattr(pubsub, name)]
    assert missing == []


def test_every_public_name_is_in_all():
    assert _public_names() - set(pubsub.__all__) == set()


def test_star_import_gives_exactly_all():
    namespace = {}
    exec("from pubsub import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(pubsub.__all__)


def test_module_functions_are_the_default_scope_methods():
    for name in ("join", "leave", "broadcast", "local_broadcast",
                 "get_members", "get_local_members", "which_channels",
                 "monitor", "demonitor"):
        function = getattr(pubsub, name)
        assert function.__self__ is pubsub.default_scope, name


def test_exceptions_form_one_tree():
    root = pubsub.PubSubError
    assert issubclass(root, Exception)
    for name in ("Empty", "MailboxClosed", "SlowConsumer", "Timeout",
                 "CodecError", "ProtocolError", "PeerLost"):
        assert issubclass(getattr(pubsub, name), root), name
    assert issubclass(pubsub.MailboxClosed, ValueError)
    assert issubclass(pubsub.SlowConsumer, pubsub.MailboxClosed)
    assert issubclass(pubsub.Timeout, TimeoutError)
    assert issubclass(pubsub.PeerLost, ConnectionError)
    assert not issubclass(pubsub.Empty, pubsub.MailboxClosed)


def test_public_classes_say_they_come_from_pubsub():
    for name in ("Message", "Pid", "Scope", "PubSubError", "Empty",
                 "MailboxClosed", "SlowConsumer", "Timeout"):
        assert getattr(pubsub, name).__module__ == "pubsub", name


def test_mailbox_is_the_package_subclass():
    assert issubclass(pubsub.Mailbox, pubsub._core.Mailbox)


def test_max_channel_is_exported():
    assert pubsub.MAX_CHANNEL == pubsub._core.MAX_CHANNEL
    assert pubsub.MAX_JOINS == 1024
    assert pubsub.__version__ == importlib.metadata.version("cpubsub")
