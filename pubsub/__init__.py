"""cpubsub: process-group publish/subscribe with its core in C."""
from ._core import CodecError, PubSubError, decode, encode, set_codec_hooks

__all__ = ["CodecError", "PubSubError", "decode", "encode", "set_codec_hooks"]
