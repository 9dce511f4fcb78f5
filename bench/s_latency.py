"""Cross-node latency at 1,000 messages per second, one way.

This process sends one small dict per millisecond, stamped with
perf_counter_ns just before the send call; the receiver, blocked in its
system's ordinary wait (no busy polling), stamps its arrival after
decoding.  Both stamps come from CLOCK_MONOTONIC, which all processes of
the machine share.  Percentiles pool every message of every repeat; the
min–max columns are the spread of each repeat's own percentile.
"""
from __future__ import annotations

from . import crossnode
from .harness import OURS, Settings, Table, fmt_num

NAME = "latency"
TITLE = "cross-node latency at 1,000 msgs/s, one way"

RATE = 1_000.0
P50_TARGET_US = 25.0
P99_TARGET_US = 60.0


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(settings: Settings) -> list[Table]:
    count = 500 if settings.quick else 5_000
    systems, missing = [], {}
    for system in crossnode.LATENCY_SYSTEMS:
        why = system.available()
        if why:
            missing[system.name] = why
        else:
            systems.append(system)
    runs: dict[str, list[list[float]]] = {}
    try:
        for r in range(settings.repeats):
            k = r % max(1, len(systems))
            for system in systems[k:] + systems[:k]:
                if system.name in missing:
                    continue
                try:
                    delays = crossnode.latency_trial(system, count, RATE)
                except crossnode.TrialError as exc:
                    missing[system.name] = str(exc)
                    runs.pop(system.name, None)
                    continue
                runs.setdefault(system.name, []).append(
                    [d / 1000 for d in delays])
    finally:
        crossnode.stop()

    table = Table(TITLE, ["system", "p50 µs", "p50 min–max", "p99 µs",
                          "p99 min–max", "max µs", "target", "verdict"])
    pooled = {name: [d for run in rs for d in run]
              for name, rs in runs.items()}
    for system in crossnode.LATENCY_SYSTEMS:
        name = system.name
        if name in missing:
            table.rows.append([name, "not available", missing[name], "",
                               "", "", "", ""])
            continue
        if name not in runs:
            continue
        p50s = [percentile(run, 0.50) for run in runs[name]]
        p99s = [percentile(run, 0.99) for run in runs[name]]
        all_ = pooled[name]
        table.rows.append([
            name, fmt_num(percentile(all_, 0.50)),
            f"{fmt_num(min(p50s))}–{fmt_num(max(p50s))}",
            fmt_num(percentile(all_, 0.99)),
            f"{fmt_num(min(p99s))}–{fmt_num(max(p99s))}",
            fmt_num(max(all_)), "", ""])
    if OURS in pooled:
        ours50 = percentile(pooled[OURS], 0.50)
        ours99 = percentile(pooled[OURS], 0.99)
        zmq = pooled.get(crossnode.Zmq.name)
        below_zmq = zmq is None or (ours50 < percentile(zmq, 0.50) and
                                    ours99 < percentile(zmq, 0.99))
        met = ours50 <= P50_TARGET_US and ours99 <= P99_TARGET_US
        table.rows[0][6] = (f"p50 ≤ {P50_TARGET_US:g}, p99 ≤ "
                            f"{P99_TARGET_US:g}, below pyzmq")
        table.rows[0][7] = "met" if met and below_zmq else "missed"
    else:
        table.rows[0][6] = (f"p50 ≤ {P50_TARGET_US:g}, p99 ≤ "
                            f"{P99_TARGET_US:g}, below pyzmq")
    table.notes.append(
        "The pipe row is the machine's floor for a one-way hop to a "
        "blocked process: an 8-byte stamp, one os.read, no decoding.  No "
        "system can do better than it at any percentile.")
    table.notes.append(
        f"{count:,} messages per repeat at {RATE:,.0f}/s; pooled "
        f"percentiles over {settings.repeats} repeats.  Peers include "
        "pickling and unpickling; the raw relay sends each frame at once "
        "(nothing to batch at this rate).")
    return [table]
