"""Write the seed corpora of wire_fuzz and handshake_fuzz.

Run from the repository root: python3 fuzz/make_wire_corpus.py.  Each
seed is a stream of well-formed frames (see csrc/core/ps_wire.h);
handshake seeds start with the byte that picks the connection's state.
"""
import os
import struct

HELLO, CHALLENGE, RESPONSE, REFUSE, PEERS, SYNC, DELTA = 1, 2, 3, 4, 5, 6, 7
BCAST, SEND, HEARTBEAT = 8, 9, 10


def frame(ftype, body, version=1):
    return b"pS" + bytes([version, ftype]) + struct.pack(">I", len(body)) \
        + body


def s8(b):
    return bytes([len(b)]) + b


def s16(b):
    return struct.pack(">H", len(b)) + b


def s32(b):
    return struct.pack(">I", len(b)) + b


def hello(ftype=HELLO, max_frame=1 << 16):
    return frame(ftype, struct.pack(">IQ", max_frame, 7) + s8(b"peer")
                 + s8(b"127.0.0.1") + struct.pack(">H", 4000)
                 + bytes(range(32)))


def entry(ch, pid, count, scope=b"default"):
    return s16(scope) + s16(ch) + struct.pack(">Qi", pid, count)


def bcast(ch, topic, payload, flags=0):
    return frame(BCAST, s16(b"default") + s16(ch)
                 + struct.pack(">QB", 3, flags) + s32(topic) + payload)


ESTABLISHED = [
    frame(SYNC, struct.pack(">I", 2) + entry(b"room", 1, 2)
          + entry(b"other", 2, 1)),
    frame(DELTA, struct.pack(">I", 1) + entry(b"room", 1, -1)),
    bcast(b"room", b"t", b"\x07\x02hi"),
    bcast(b"room", b"\x00\xff", b"\x00", flags=1),
    frame(SEND, struct.pack(">QQQB", 1, 99, 3, 0) + s32(b"t") + b"\x00"),
    frame(PEERS, struct.pack(">H", 1) + s8(b"c") + struct.pack(">Q", 5)
          + s8(b"127.0.0.1") + struct.pack(">H", 1)),
    frame(HEARTBEAT, b""),
]
SEEDS = {
    "hello": hello(),
    "hello-then-response": hello() + frame(RESPONSE, bytes(32)),
    "refuse": frame(REFUSE, struct.pack(">H", 2) + s16(b"max_frame")),
    "future-version": frame(HELLO, hello()[8:], version=9),
    "established": b"".join(ESTABLISHED),
}


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    for name, data in SEEDS.items():
        write("fuzz/corpus/wire", name, data)
    write("fuzz/corpus/wire", "challenge", hello(CHALLENGE))
    for mode, name in ((0, "hello"), (0, "hello-then-response"),
                       (1, "refuse"), (0, "future-version")):
        write("fuzz/corpus/handshake", f"{mode}-{name}",
              bytes([mode]) + SEEDS[name])
    write("fuzz/corpus/handshake", "1-challenge", b"\x01" + hello(CHALLENGE))
    for i, f in enumerate(ESTABLISHED):
        write("fuzz/corpus/handshake", f"2-frame{i}", b"\x02" + f)
    write("fuzz/corpus/handshake", "2-all", b"\x02" + SEEDS["established"])


if __name__ == "__main__":
    main()
