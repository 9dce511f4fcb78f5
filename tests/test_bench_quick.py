"""The benchmark suite runs: each scenario's quick mode prints its table.

Timings are never checked, only that every scenario produced a table with
a row per system.  A peer whose package truly cannot be installed makes
its scenario skip, with the installer's reason.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# scenario -> rows it must print (a number or a stated reason in each).
SCENARIOS = {
    "one_to_one": ["cpubsub", "naive Python", "naive Python + Lock",
                   "queue.SimpleQueue (floor)", "pyzmq inproc (bytes)",
                   "blinker"],
    "fanout": ["cpubsub", "naive Python", "pyzmq inproc",
               "Redis (redis-py)"],
    "batch": ["cpubsub recv_nowait loop", "cpubsub recv_many()"],
    "memory": ["cpubsub", "naive Python (deque + set entries)"],
    "websocket": ["cpubsub", "websockets.broadcast helper"],
    "cross_node": ["cpubsub", "pyzmq PUB/SUB (TCP)",
                   "Redis PUBLISH/SUBSCRIBE", "raw socket relay (batched)"],
    "latency": ["cpubsub", "pyzmq PUB/SUB (TCP)", "Redis PUBLISH/SUBSCRIBE",
                "raw socket relay (batched)"],
    "cluster_sync": ["cpubsub"],
}

# Rows that may say "not available" for a reason other than an install.
MAY_BE_MISSING = {("fanout", "Redis (redis-py)")}


def rows(output: str) -> dict[str, list[str]]:
    table = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| system"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            table.setdefault(cells[0], cells)
    return table


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_quick_mode_prints_the_scenario_table(scenario):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--repeats", "2",
         "--only", scenario],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "### " in proc.stdout
    assert "scenario failed" not in proc.stdout
    found = rows(proc.stdout)
    for system in SCENARIOS[scenario]:
        assert system in found, f"no row for {system}:\n{proc.stdout}"
        cells = found[system]
        if cells[1] != "not available":
            assert re.match(r"[\d,.]+$", cells[1]), cells
        elif "install" in cells[2]:
            pytest.skip(f"{system}: {cells[2]}")
        else:
            assert (scenario, system) in MAY_BE_MISSING, cells
