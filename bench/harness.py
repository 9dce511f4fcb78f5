"""Timing, interleaved repeats and the tables every scenario prints.

A *case* is one system under test in one scenario.  It is a callable
``case(n)`` that does ``n`` operations and returns the seconds they took
(so each case decides what is inside the timed region and what is set-up).
``measure`` calibrates ``n`` once per case, then runs the repeats with the
systems interleaved: repeat r starts at a different system, so a burst of
noise on the machine lands on all of them alike rather than on one row.

Nothing here asserts a timing.  Targets are printed next to the ratios as
"met" or "missed" for the reader, never checked.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

OURS = "cpubsub"


@dataclass
class Settings:
    """How hard to measure: set once from the command line."""

    quick: bool = False
    repeats: int = 7
    sample_seconds: float = 0.25    # one timed run of one case
    sizes_scale: float = 1.0        # message counts of the process scenarios

    @classmethod
    def make(cls, quick: bool, repeats: int | None) -> "Settings":
        if quick:
            return cls(quick=True, repeats=repeats or 3, sample_seconds=0.03,
                       sizes_scale=0.1)
        return cls(repeats=repeats or 7)


def calibrate(case: Callable[[int], float], seconds: float,
              start: int = 100, limit: int = 50_000_000) -> int:
    """The operation count that makes one run of case last about seconds."""
    n = start
    while n < limit:
        took = case(n)
        if took >= seconds / 4:
            return max(1, int(n * seconds / took))
        n *= 8 if took < seconds / 64 else 2
    return limit


def measure(cases: dict[str, Callable[[int], float]], settings: Settings,
            per_op: float = 1.0, counts: dict[str, int] | None = None
            ) -> dict[str, list[float]]:
    """Nanoseconds per op for each case, one sample per repeat.

    per_op divides each sample further (a fan-out to N members counts N
    deliveries per operation).  counts fixes the operation count of a case
    instead of calibrating it.
    """
    names = list(cases)
    ns: dict[str, int] = {}
    for name in names:
        if counts and name in counts:
            ns[name] = counts[name]
        else:
            ns[name] = calibrate(cases[name], settings.sample_seconds)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            took = cases[name](ns[name])
            samples[name].append(took * 1e9 / ns[name] / per_op)
    return samples


def fmt_num(x: float) -> str:
    """Three significant figures, no exponent for the sizes we print."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_spread(xs: Sequence[float]) -> str:
    return f"{fmt_num(min(xs))}–{fmt_num(max(xs))}"


@dataclass
class Target:
    """A target on the ratio peer/ours of a lower-is-better metric.

    ``at_least`` is the speed-up of ours that the issue asks for: 2.0 means
    "ours at least twice as fast", 0.55 "at least 0.55 times as fast".
    """

    at_least: float

    def text(self) -> str:
        return f"≥ {self.at_least:g}×"

    def verdict(self, ratio: float) -> str:
        return "met" if ratio >= self.at_least else "missed"


@dataclass
class Table:
    """One printed table: a title, headers, rows of strings, notes."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def line(cells: Sequence[str]) -> str:
            padded = (c.ljust(w) for c, w in zip(cells, widths))
            return "| " + " | ".join(padded) + " |"

        out = [f"### {self.title}", "", line(self.headers),
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out) + "\n"


def speed_table(title: str, samples: dict[str, list[float]],
                unit: str = "ns/msg",
                targets: dict[str, Target] | None = None,
                unavailable: dict[str, str] | None = None,
                notes: Sequence[str] = (), baseline: str = OURS) -> Table:
    """A table of a lower-is-better metric with ours against each peer.

    The "peer / ours" column is how many times faster ours is than the
    row's system (median against median); baseline names the row that
    stands for ours.
    """
    targets = targets or {}
    table = Table(title, ["system", f"median {unit}", "min–max",
                          "peer / ours", "target", "verdict"],
                  notes=list(notes))
    ours = (statistics.median(samples[baseline]) if baseline in samples
            else None)
    for name, xs in samples.items():
        med = statistics.median(xs)
        ratio, target, verdict = "", "", ""
        if name != baseline and ours:
            r = med / ours
            ratio = f"{r:.2f}×"
            if name in targets:
                target = targets[name].text()
                verdict = targets[name].verdict(r)
        table.rows.append([name, fmt_num(med), fmt_spread(xs), ratio,
                           target, verdict])
    for name, why in (unavailable or {}).items():
        row = [name, "not available", why, "",
               targets[name].text() if name in targets else "", ""]
        table.rows.insert(0 if name == baseline else len(table.rows), row)
    return table


class Timer:
    """perf_counter as a context manager: ``with Timer() as t: ...``."""

    __slots__ = ("start", "seconds")

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
