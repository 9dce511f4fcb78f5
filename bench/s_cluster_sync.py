"""Cluster sync: a node holding 100,000 memberships joins a running node.

This process is the running node A.  A child process makes 10,000
mailboxes, each in 10 of 1,000 channels (100,000 memberships), and only
then starts its node B with A as its seed.  A sample is the time from
just before B's ``start_node`` to the moment A sees every one of B's
memberships through ``get_members``.  No peer: nothing else here has
cluster-wide membership to compare with.
"""
from __future__ import annotations

import os
import statistics
import time

from . import crossnode
from .harness import OURS, Settings, Table, fmt_num, fmt_spread

NAME = "cluster_sync"
TITLE = "cluster sync: a node with many memberships joins a running node"

TARGET_S = 1.0
TIMEOUT_S = 30.0


def trial(memberships: int, number: int) -> float:
    """Seconds until node A sees all of a new node's memberships."""
    import pubsub

    address = crossnode.Ours.start()
    prefix = f"sync-{os.getpid()}-{number}"
    child = crossnode.Child("sync", "-", str(memberships), address, prefix)
    try:
        nchannels = child.expect("ready", 120)["ready"]
        channels = [f"{prefix}-{k}" for k in range(nchannels)]
        per_channel = memberships // nchannels
        child.tell("go")
        started = None
        deadline = time.monotonic() + TIMEOUT_S
        seen_at = None
        while time.monotonic() < deadline:
            if started is None:
                msg = child.poll(0)
                if msg and "t_start" in msg:
                    started = msg["t_start"]
            # The snapshot arrives whole; poll the cheap check, then
            # confirm once with the full count.
            if len(pubsub.get_members(channels[-1])) >= per_channel:
                now = time.perf_counter()
                total = sum(len(pubsub.get_members(c)) for c in channels)
                if total >= memberships:
                    seen_at = now
                    break
            time.sleep(0.0005)
        if started is None:
            started = child.expect("t_start", 5)["t_start"]
        if seen_at is None:
            raise crossnode.TrialError(
                f"memberships not all visible after {TIMEOUT_S:g} s")
        child.tell("done")
        return seen_at - started
    finally:
        child.close()


def run(settings: Settings) -> list[Table]:
    memberships = 10_000 if settings.quick else 100_000
    table = Table(f"{TITLE}: {memberships:,} memberships",
                  ["system", "median ms", "min–max", "target", "verdict"])
    why = crossnode.Ours.available()
    samples: list[float] = []
    if why is None:
        try:
            for r in range(settings.repeats):
                samples.append(trial(memberships, r) * 1e3)
        except crossnode.TrialError as exc:
            why = str(exc)
        finally:
            crossnode.stop()
    if why or not samples:
        table.rows.append([OURS, "not available", why or "no sample",
                           f"< {TARGET_S * 1e3:,.0f} ms", ""])
    else:
        med = statistics.median(samples)
        table.rows.append([OURS, fmt_num(med), fmt_spread(samples),
                           f"< {TARGET_S * 1e3:,.0f} ms",
                           "met" if med < TARGET_S * 1e3 else "missed"])
    table.notes.append("Time from just before node B's start_node (B's "
                       "clock) to node A seeing all of B's memberships "
                       "(A's clock; both CLOCK_MONOTONIC).  It includes "
                       "B's connect and handshake.")
    return [table]
