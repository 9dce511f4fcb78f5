"""Run by s_memory in a fresh interpreter: memory of idle mailboxes.

``python -m bench.memory_child SYSTEM MAILBOXES CHANNELS_EACH POOL``
creates MAILBOXES idle mailboxes, measures, joins each to CHANNELS_EACH
channels drawn from a pool of POOL names, measures again, and prints one
JSON line with the deltas.  Two gauges: the resident set size from
/proc/self/statm (sees everything, in pages) and glibc's mallinfo2 (sees
malloc only: CPython's small-object arenas are mmap'd beside it).
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]


try:
    _libc = ctypes.CDLL(None)
    _libc.mallinfo2.restype = _MallInfo2
except (OSError, AttributeError):
    _libc = None


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def malloc_in_use() -> int:
    if _libc is None:
        return -1
    info = _libc.mallinfo2()
    return info.uordblks + info.hblkhd


def snapshot() -> tuple[int, int]:
    gc.collect()
    return rss(), malloc_in_use()


def channel_of(i: int, j: int, pool: int) -> int:
    """Mailbox i's j-th channel: distinct for j < 10, evenly spread."""
    return (i * 7 + j * 1009) % pool


def main() -> None:
    system, count, each, pool = sys.argv[1], *map(int, sys.argv[2:5])
    names = [f"room:{k}" for k in range(pool)]
    if system == "cpubsub":
        import pubsub

        make = pubsub.Mailbox

        def join(box, name):
            box.join(name)
    else:
        from .peers import NaiveBox, NaivePubSub

        ps = NaivePubSub()
        make = NaiveBox
        reverse = system == "naive+reverse"
        index: dict = {}

        def join(box, name):
            ps.join(name, box)
            if reverse:
                index.setdefault(box, set()).add(name)

    r0, m0 = snapshot()
    boxes = [make() for _ in range(count)]
    r1, m1 = snapshot()
    for i, box in enumerate(boxes):
        for j in range(each):
            join(box, names[channel_of(i, j, pool)])
    r2, m2 = snapshot()
    print(json.dumps({
        "rss_mailbox": (r1 - r0) / count,
        "rss_membership": (r2 - r1) / (count * each),
        "malloc_mailbox": (m1 - m0) / count,
        "malloc_membership": (m2 - m1) / (count * each),
    }))


if __name__ == "__main__":
    main()
