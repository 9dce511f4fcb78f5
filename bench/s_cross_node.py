"""Cross-node 1→1: node A broadcasts small dicts to a member on node B.

Two OS processes on loopback: this one sends, a child receives and
decodes.  A sample is the time from the first send to the last decode,
divided by the message count, in a fresh receiver process each time.
"""
from __future__ import annotations

from . import crossnode
from .harness import OURS, Settings, Table, Target, speed_table

NAME = "cross_node"
TITLE = "cross-node 1→1: small dicts from node A to a member on node B"

TARGETS = {
    "pyzmq PUB/SUB (TCP)": Target(2.0),
    "Redis PUBLISH/SUBSCRIBE": Target(5.0),
    "raw socket relay (batched)": Target(0.7),
}


def run(settings: Settings) -> list[Table]:
    count = 20_000 if settings.quick else 200_000
    systems, missing = [], {}
    for system in crossnode.SYSTEMS:
        why = system.available()
        if why:
            missing[system.name] = why
        else:
            systems.append(system)
    samples: dict[str, list[float]] = {}
    try:
        for r in range(settings.repeats):
            k = r % max(1, len(systems))
            for system in systems[k:] + systems[:k]:
                if system.name in missing:
                    continue
                try:
                    ns = crossnode.throughput_trial(system, count)
                except crossnode.TrialError as exc:
                    missing[system.name] = str(exc)
                    samples.pop(system.name, None)
                    continue
                samples.setdefault(system.name, []).append(ns)
    finally:
        crossnode.stop()
    order = [s.name for s in crossnode.SYSTEMS]
    samples = {name: samples[name] for name in order if name in samples}
    notes = [f"{count:,} messages per sample; ns/msg is wall time from "
             "the first send to the last decode on node B, so it is the "
             "slower of the two ends.",
             "Redis publishes through pipelines of 1,000 commands."]
    if OURS not in samples:
        notes.append("Without our row there is no ratio: the peers' "
                     "figures stand alone.")
    return [speed_table(TITLE, samples, targets=TARGETS,
                        unavailable=missing, notes=notes)]
