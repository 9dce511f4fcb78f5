"""Memory: idle mailboxes, each a member of 10 channels.

Each measurement is a fresh interpreter (``bench.memory_child``), so what
one system leaves behind never counts against another.  Bytes per mailbox
is the growth from making the mailboxes (including the 8-byte slot of the
list that keeps them); bytes per membership is the growth from the joins,
spread over mailboxes × 10.  The resident set size is the gauge that sees
everything; mallinfo2 is shown beside it because it is exact for what
goes through malloc (our C tables do), though blind to CPython's own
small-object arenas.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

from .harness import OURS, Settings, Table, fmt_num, fmt_spread

NAME = "memory"
TITLE = "memory: idle mailboxes, each in 10 channels"

EACH = 10
POOL = 10_000           # 100 members per channel at 100,000 mailboxes
SYSTEMS = {
    OURS: "cpubsub",
    "naive Python (deque + set entries)": "naive",
    "naive Python + reverse index": "naive+reverse",
}


def child(system: str, count: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory_child", system, str(count),
         str(EACH), str(POOL)],
        capture_output=True, text=True, timeout=300, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(settings: Settings) -> list[Table]:
    count = 20_000 if settings.quick else 100_000
    results: dict[str, list[dict]] = {name: [] for name in SYSTEMS}
    names = list(SYSTEMS)
    for r in range(settings.repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            results[name].append(child(SYSTEMS[name], count))

    table = Table(f"{TITLE}, {count:,} mailboxes × {EACH}",
                  ["system", "B/mailbox (RSS)", "min–max",
                   "B/membership (RSS)", "min–max", "B/mailbox (malloc)",
                   "B/membership (malloc)", "target", "verdict"])
    medians = {}
    for name, runs in results.items():
        col = {key: [run[key] for run in runs] for key in runs[0]}
        med = {key: statistics.median(xs) for key, xs in col.items()}
        medians[name] = med
        table.rows.append([
            name, fmt_num(med["rss_mailbox"]), fmt_spread(col["rss_mailbox"]),
            fmt_num(med["rss_membership"]),
            fmt_spread(col["rss_membership"]),
            fmt_num(med["malloc_mailbox"]),
            fmt_num(med["malloc_membership"]), "", ""])
    ours = medians[OURS]
    naive = medians["naive Python (deque + set entries)"]
    met = (ours["rss_mailbox"] <= 256 and ours["rss_membership"] <= 64
           and ours["rss_mailbox"] < naive["rss_mailbox"]
           and ours["rss_membership"] < naive["rss_membership"])
    table.rows[0][7] = "≤ 256 B, ≤ 64 B, below naive"
    table.rows[0][8] = "met" if met else "missed"
    table.notes.append(
        f"Channels come from a pool of {POOL:,} names made before the "
        "first gauge reading, so their strings are not counted; a "
        "channel's own table (ours) or set (naive) is.")
    table.notes.append(
        "The reverse-index row adds what a naive library needs to make a "
        "closed mailbox leave all its channels (ours keeps that index in "
        "C and it is counted in its row).")
    return [table]
