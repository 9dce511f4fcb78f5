"""The payload codec: pubsub.encode / pubsub.decode / pubsub.set_codec_hooks.

Round trips are property tests over every supported type; malformed input
must raise CodecError (never another exception, never a crash), and
whatever the C validator accepts the decoder accepts too.
"""
import collections
import enum
import math
import pathlib
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pubsub
from pubsub import CodecError, decode, encode, set_codec_hooks
from pubsub._core import _codec_validate

from ctools import build, c_env

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_DEPTH = 64
PS_ETRUNC = -11
PS_EBADDATA = -10
PS_EDEPTH = -9

# The autouse fixture only resets module state, so sharing it between the
# examples of one test is harmless.
QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=QUIET)


@pytest.fixture(autouse=True)
def _no_hooks():
    """Every test starts and ends without codec hooks."""
    set_codec_hooks()
    yield
    set_codec_hooks()


# ---- strategies ----------------------------------------------------------

def power_of_two_neighbour(args):
    """sign * 2**exp + delta: the edges where an int changes width."""
    sign, exp, delta = args
    return sign * 2**exp + delta


ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.tuples(st.sampled_from([1, -1]),
              st.sampled_from([0, 7, 8, 63, 64, 65, 128, 1000, 4000]),
              st.integers(-1, 1)).map(power_of_two_neighbour),
)
floats = st.floats(allow_nan=False) | st.sampled_from(
    [0.0, -0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308])
texts = st.text() | st.sampled_from(["", "é", "€uro", "\U0001d11e", "\0"])
hashable_scalars = (st.none() | st.booleans() | ints | floats | texts
                    | st.binary())
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4)
    | st.lists(inner, max_size=4).map(tuple),
    max_leaves=8,
)
values = st.recursive(
    hashable_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
    ),
    max_leaves=30,
)


def same(a, b):
    """Equal and of exactly the same types all the way down (-0.0 too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return (list(a) == list(b)
                and all(same(k, kb) for k, kb in zip(a, b))
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (set, frozenset)):
        # A NaN hashes by identity, so a decoded one is no member of the
        # original set (and the two sets may iterate in different orders):
        # pair the elements off with same() instead.
        rest = list(b)
        for x in a:
            i = next((i for i, y in enumerate(rest) if same(x, y)), None)
            if i is None:
                return False
            del rest[i]
        return not rest
    return a == b


def roundtrip(v):
    data = encode(v)
    assert isinstance(data, bytes)
    assert _codec_validate(data) == 0
    return decode(data)


# ---- round trips ---------------------------------------------------------

@FAST
@given(values)
def test_roundtrip_is_exact(v):
    assert same(roundtrip(v), v)


@FAST
@given(ints)
def test_ints_roundtrip(n):
    out = roundtrip(n)
    assert type(out) is int and out == n


@pytest.mark.parametrize("n", [2**4000, -(2**4000), 2**63, -(2**63) - 1])
def test_huge_ints_roundtrip(n):
    assert roundtrip(n) == n


@pytest.mark.parametrize("v", [True, False, None])
def test_singletons_keep_identity(v):
    assert roundtrip(v) is v


def test_bool_is_not_int():
    assert [type(x) for x in roundtrip([True, 1, False, 0])] == [
        bool, int, bool, int]


@pytest.mark.parametrize("x", [math.inf, -math.inf, 0.0, -0.0, 1e-310])
def test_special_floats_roundtrip(x):
    out = roundtrip(x)
    assert out == x and math.copysign(1, out) == math.copysign(1, x)


def test_nan_roundtrips_with_its_bits():
    nan = struct.unpack("<d", struct.pack("<Q", 0x7ff8_0000_dead_beef))[0]
    out = roundtrip(nan)
    assert math.isnan(out)
    assert struct.pack("<d", out) == struct.pack("<d", nan)


@pytest.mark.parametrize("v", ["", b"", [], (), {}, set(), frozenset(),
                              "naïve café ☕ \U0001f600", b"\x00\xff"])
def test_empty_and_non_ascii_roundtrip(v):
    assert same(roundtrip(v), v)


def test_dict_key_order_is_kept():
    d = {"z": 1, "a": 2, 3: 3, (1, 2): 4}
    assert list(roundtrip(d)) == ["z", "a", 3, (1, 2)]


def test_repeated_and_colliding_dict_keys_decode_exactly():
    """Short ASCII keys come from a small table of recent keys: thousands
    of distinct keys (so slots are reused and collide) and keys that must
    bypass it (long, non-ASCII, empty) still decode to themselves."""
    keys = [f"k{i}" for i in range(3000)] + ["x" * 32, "x" * 33, "é", ""]
    payload = {k: i for i, k in enumerate(keys)}
    for _ in range(3):
        assert decode(encode(payload)) == payload
    for k in keys:
        (got,) = decode(encode({k: None}))
        assert got == k and type(got) is str
    assert decode(encode({frozenset({"ab", "cd"}): 1})) == {
        frozenset({"ab", "cd"}): 1}


def test_known_encoding():
    assert encode({"id": 1, "title": "hello"}) == bytes.fromhex(
        "0b02" "07026964" "0302" "07057469746c65" "070568656c6c6f")
    assert encode(-1) == b"\x03\x01"
    assert encode(2**64) == b"\x04\x09" + b"\x00" * 8 + b"\x01"


def test_decode_accepts_bytes_like():
    data = encode([1, "x"])
    assert decode(bytearray(data)) == [1, "x"]
    assert decode(memoryview(data)) == [1, "x"]


def test_decode_refuses_non_buffer():
    with pytest.raises(TypeError):
        decode("not bytes")


# ---- subclasses ----------------------------------------------------------

class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    def __str__(self):
        return "overridden"


class MyDict(dict):
    def items(self):
        raise AssertionError("the codec must not call items()")


def test_subclasses_encode_as_their_base_type():
    point = collections.namedtuple("point", "x y")
    cases = [
        (Color.RED, 1, int),
        (MyStr("abc"), "abc", str),
        (MyDict(a=1), {"a": 1}, dict),
        (collections.OrderedDict(b=2), {"b": 2}, dict),
        (point(1, 2), (1, 2), tuple),
    ]
    for value, expected, base in cases:
        out = roundtrip(value)
        assert out == expected and type(out) is base


def test_hashable_list_subclass_key_is_refused():
    class HashableList(list):
        def __hash__(self):
            return 0

    with pytest.raises(TypeError, match="unhashable list"):
        encode({HashableList([1]): 1})


# ---- encode errors -------------------------------------------------------

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (
            other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))


@pytest.mark.parametrize("v", [Point(1, 2), bytearray(b"x"), 1j,
                               [1, object()]])
def test_unsupported_type_raises_typeerror_naming_it(v):
    name = type(v[1] if isinstance(v, list) else v).__name__
    with pytest.raises(TypeError, match=name) as info:
        encode(v)
    assert "set_codec_hooks" in str(info.value)


def test_lone_surrogate_raises_valueerror():
    with pytest.raises(ValueError, match="surrogate at index 2"):
        encode("ab\ud800cd")


def nested_lists(depth):
    v = None
    for _ in range(depth):
        v = [v]
    return v


def test_depth_limit_on_encode():
    assert roundtrip(nested_lists(MAX_DEPTH)) == nested_lists(MAX_DEPTH)
    with pytest.raises(ValueError, match="64"):
        encode(nested_lists(MAX_DEPTH + 1))


def test_self_referential_list_hits_the_depth_limit():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="depth"):
        encode(loop)


# ---- hooks ---------------------------------------------------------------

def point_encoder(obj):
    if isinstance(obj, Point):
        return encode((obj.x, obj.y))
    raise TypeError(f"unexpected {type(obj).__name__}")


def point_decoder(data):
    return Point(*decode(data))


def test_hooks_roundtrip_a_custom_class():
    set_codec_hooks(encode=point_encoder, decode=point_decoder)
    value = {"where": Point(1, 2), "keys": {Point(3, 4): [Point(5, 6)]}}
    assert roundtrip(value) == value


def test_ext_without_decoder_hook_is_a_codecerror():
    set_codec_hooks(encode=point_encoder)
    data = encode(Point(1, 2))
    set_codec_hooks()
    with pytest.raises(CodecError, match="decoder hook"):
        decode(data)


@pytest.mark.parametrize("kwargs", [{"encode": 1}, {"decode": "x"},
                                    {"encode": print, "decode": 3}])
def test_non_callable_hooks_are_refused(kwargs):
    set_codec_hooks(encode=point_encoder, decode=point_decoder)
    with pytest.raises(TypeError, match="callable"):
        set_codec_hooks(**kwargs)
    # Nothing changed.
    assert roundtrip(Point(1, 1)) == Point(1, 1)


def test_hook_must_return_bytes():
    set_codec_hooks(encode=lambda obj: "not bytes")
    with pytest.raises(TypeError, match="must return bytes"):
        encode(Point(0, 0))


def test_hook_exceptions_propagate():
    def broken(obj):
        raise KeyError("boom")

    set_codec_hooks(encode=broken, decode=broken)
    with pytest.raises(KeyError):
        encode(Point(0, 0))
    with pytest.raises(KeyError):
        decode(b"\x0e\x00")


def test_hook_mutating_the_list_is_caught():
    victim = [Point(0, 0), 1, 2]

    def shrink(obj):
        victim.clear()
        return b""

    set_codec_hooks(encode=shrink)
    with pytest.raises(RuntimeError, match="changed size"):
        encode(victim)


def test_hook_mutating_the_dict_is_caught():
    victim = {"a": Point(0, 0), "b": 1}

    def grow(obj):
        victim["c"] = 3
        return b""

    set_codec_hooks(encode=grow)
    with pytest.raises(RuntimeError, match="changed size"):
        encode(victim)


# ---- malformed input -----------------------------------------------------

def expect_codec_error(data, match=None, valid_bytes=False):
    """decode(data) raises CodecError; the validator refuses data too,
    unless only the decoder hook's result can make it fail."""
    with pytest.raises(CodecError, match=match) as info:
        decode(data)
    assert "byte offset" in str(info.value)
    assert (_codec_validate(data) == 0) == valid_bytes
    return info.value


@FAST
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_codecerror(data):
    # With a decoder hook that yields something hashable, the decoder
    # accepts exactly what the C validator accepts.
    set_codec_hooks(decode=lambda raw: ("ext", raw))
    try:
        decode(data)
    except CodecError:
        ok = False
    else:
        ok = True
    assert ok == (_codec_validate(data) == 0)


@FAST
@given(st.binary(max_size=64))
def test_arbitrary_bytes_without_hooks(data):
    try:
        decode(data)
    except CodecError:
        pass


@FAST
@given(values, st.binary(min_size=1, max_size=8), st.data())
def test_mutated_encodings_never_crash(v, noise, data):
    good = encode(v)
    at = data.draw(st.integers(0, len(good)))
    bad = good[:at] + noise + good[at + len(noise):]
    try:
        decode(bad)
    except CodecError:
        pass


def decode_agrees_with_validator(data):
    """decode(data) returns a value exactly when the C validator accepts
    data (with a decoder hook that makes every EXT a hashable value), and
    a value it returns survives another round trip unchanged."""
    set_codec_hooks(decode=lambda raw: ("ext", raw))
    try:
        v = decode(data)
    except CodecError as exc:
        assert "byte offset" in str(exc)
        assert _codec_validate(data) != 0
        return
    assert _codec_validate(data) == 0
    set_codec_hooks()
    if not contains_ext(v):
        again = decode(encode(v))
        # repr: a NaN inside a set or a dict key equals no other NaN
        assert same(again, v) or repr(again) == repr(v)


def test_a_nan_inside_a_set_survives_the_validator_round_trip():
    # Found by hypothesis: {(nan, None), None}, whose decoded copy holds
    # a NaN of another identity and so iterates in another order.
    decode_agrees_with_validator(
        b"\x0c\x02\n\x02\x06\x01\x00\x00\x00\x00\x00\xf0\x7f\x00\x00")


def contains_ext(v):
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "ext":
        return True
    if isinstance(v, dict):
        return any(map(contains_ext, v)) or any(map(contains_ext,
                                                    v.values()))
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(map(contains_ext, v))
    return False


@FAST
@given(values, st.data())
def test_mutated_encodings_decode_iff_valid(v, data):
    # One to four edits of a valid encoding: a byte replaced, inserted or
    # deleted.  Each result decodes to a value or raises CodecError, as
    # the validator predicts.
    buf = bytearray(encode(v))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(buf)))
        edit = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if edit == "insert" or at == len(buf):
            buf.insert(at, byte)
        elif edit == "replace":
            buf[at] = byte
        else:
            del buf[at]
    decode_agrees_with_validator(bytes(buf))


@FAST
@given(st.binary(max_size=200))
def test_random_bytes_decode_iff_valid(data):
    decode_agrees_with_validator(data)


def test_fuzz_corpus_decodes_iff_valid():
    # The libFuzzer seeds and the inputs kept from past crashes, through
    # the Python decoder that the C harness cannot reach.
    corpus = sorted((ROOT / "fuzz/corpus/codec").iterdir())
    assert corpus
    for path in corpus:
        decode_agrees_with_validator(path.read_bytes())


@settings(max_examples=40, deadline=None, suppress_health_check=QUIET)
@given(values)
def test_every_prefix_is_truncated(v):
    data = encode(v)
    for n in range(len(data)):
        expect_codec_error(data[:n])


def test_truncated_errors_say_truncated():
    data = encode({"key": ["value", 2**100, 1.5]})
    for n in range(len(data)):
        assert "truncated" in str(expect_codec_error(data[:n]))


@pytest.mark.parametrize("data", [
    b"\x09\xff\xff\xff\xff\x0f" + b"\x00" * 4,     # list of 2**32 items
    b"\x0b\xff\xff\xff\xff\xff\xff\xff\xff\x7f",   # dict of 2**63 items
    b"\x07\xff\xff\xff\xff\x0f",                   # 4 GiB str
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\x01",   # 2**64-1 bytes
    b"\x04\x80\x80\x80\x80\x10",                   # 4 GiB int
])
def test_huge_claimed_lengths_fail_fast(data):
    expect_codec_error(data, "truncated")


def test_deep_nesting_beyond_the_limit():
    ok = b"\x09\x01" * MAX_DEPTH + b"\x00"
    assert decode(ok) == nested_lists(MAX_DEPTH)
    too_deep = b"\x09\x01" * (MAX_DEPTH + 1) + b"\x00"
    err = expect_codec_error(too_deep, "nested")
    assert f"offset {2 * MAX_DEPTH}" in str(err)
    assert _codec_validate(too_deep) == PS_EDEPTH


def test_very_deep_input_does_not_exhaust_the_stack():
    expect_codec_error(b"\x0a\x01" * 100_000, "nested")


@pytest.mark.parametrize("trailer", [b"\x00", b"garbage", encode([1])])
def test_trailing_bytes_are_an_error(trailer):
    data = encode({"a": 1})
    err = expect_codec_error(data + trailer, "trailing")
    assert f"offset {len(data)}" in str(err)


@pytest.mark.parametrize("body", [
    b"\xc3\x28",            # bad continuation
    b"\xc0\xaf",            # overlong '/'
    b"\xed\xa0\x80",        # encoded surrogate U+D800
    b"\xf4\x90\x80\x80",    # above U+10FFFF
    b"ab\xff",              # never valid
    b"\xe2\x82",            # cut short
])
def test_invalid_utf8_is_a_codecerror(body):
    data = b"\x07" + bytes([len(body)]) + body
    expect_codec_error(data, "UTF-8")


@pytest.mark.parametrize("data", [
    b"\x0b\x01\x09\x00\x00",            # {[]: None}
    b"\x0b\x01\x0b\x00\x00",            # {{}: None}
    b"\x0c\x01\x0c\x00",                # {set()}
    b"\x0d\x01\x0a\x01\x09\x00",        # frozenset({([],)})
    b"\x0b\x01\x0a\x02\x00\x0c\x00\x00",  # {(None, set()): None}
])
def test_unhashable_keys_are_a_codecerror(data):
    expect_codec_error(data, "dict key or set member")


def test_unhashable_ext_key_is_a_codecerror():
    set_codec_hooks(decode=lambda data: [])
    expect_codec_error(b"\x0c\x01\x0e\x00", "unhashable", valid_bytes=True)


@pytest.mark.parametrize("data", [
    b"\x0f", b"\x7f", b"\xff",                      # unknown tags
    b"\x03\x80\x00",                                # redundant varint group
    b"\x03" + b"\xff" * 10 + b"\x01",               # varint too long
    b"\x03" + b"\xff" * 9 + b"\x02",                # above 2**64-1
    b"\x04\x00",                                    # empty magnitude
    b"\x05\x02\x01\x00",                            # zero top byte
    b"\x06\x00\x00",                                # short float
])
def test_malformed_scalars_are_a_codecerror(data):
    expect_codec_error(data)


def str_of(body):
    """A STR value holding body, whatever it is (lengths below 128)."""
    return b"\x07" + bytes([len(body)]) + body


@FAST
@given(st.binary(max_size=40) | st.text(max_size=20).map(
    lambda s: s.encode("utf-8", "surrogatepass")))
def test_utf8_check_agrees_with_python(body):
    try:
        expected = body.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    assert (_codec_validate(str_of(body)) == 0) == (expected is not None)
    if expected is None:
        expect_codec_error(str_of(body), "UTF-8")
    else:
        assert decode(str_of(body)) == expected


def test_errors_are_valueerror_and_pubsuberror():
    assert issubclass(CodecError, ValueError)
    assert issubclass(CodecError, pubsub.PubSubError)


# ---- the core's own C tests ---------------------------------------------


def test_core_c_unit_tests(tmp_path):
    exe = tmp_path / "test_codec_core"
    build(["tests/c/test_codec_core.c", "csrc/core/ps_codec.c",
           "csrc/core/ps_common.c"], exe, "-Werror")
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=60, env=c_env())
    assert run.returncode == 0, run.stdout
