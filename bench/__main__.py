"""Run the benchmark suite: ``python -m bench [--quick] [--only NAMES]``.

Prints the machine, then one table per scenario (several for scenarios
with a size parameter).  ``--markdown FILE`` also writes everything to a
file in the form bench/RESULTS.md keeps.
"""
from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
import traceback

from . import deps
from .harness import Settings, Table

SCENARIOS = [
    "s_one_to_one",
    "s_fanout",
    "s_batch",
    "s_memory",
    "s_cross_node",
    "s_latency",
    "s_websocket",
    "s_cluster_sync",
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    import os

    peers = ", ".join(f"{p} {deps.version(p)}" for p in (
        "pyzmq", "redis", "blinker", "websockets", "starlette", "uvicorn"))
    lines = [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- Python: {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.platform()}",
        f"- cpubsub: {deps.version('cpubsub')} (the extension in this tree)",
        f"- peers: {peers}",
    ]
    if deps.redis_server.proc is not None:
        lines.append(f"- redis-server: {deps.redis_server.version}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats (CI)")
    parser.add_argument("--only", default="",
                        help="comma-separated scenario names to run")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats per scenario")
    parser.add_argument("--markdown", default=None,
                        help="also write the tables to this file")
    parser.add_argument("--list", action="store_true",
                        help="list the scenarios and exit")
    args = parser.parse_args(argv)

    modules = [importlib.import_module(f"bench.{m}") for m in SCENARIOS]
    if args.list:
        for m in modules:
            print(f"{m.NAME:16} {m.TITLE}")
        return 0
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = wanted - {m.NAME for m in modules}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    settings = Settings.make(args.quick, args.repeats)
    mode = "quick" if settings.quick else "full"
    print(f"# cpubsub benchmarks ({mode} mode, {settings.repeats} "
          f"interleaved repeats)\n", flush=True)

    out: list[str] = []
    failed = 0
    started = time.monotonic()
    try:
        for m in modules:
            if wanted and m.NAME not in wanted:
                continue
            t0 = time.monotonic()
            try:
                tables: list[Table] = m.run(settings)
            except Exception:
                failed += 1
                text = (f"### {m.TITLE}\n\nscenario failed:\n\n```\n"
                        f"{traceback.format_exc()}```\n")
                print(text, flush=True)
                out.append(text)
                continue
            for table in tables:
                text = table.render()
                print(text, flush=True)
                out.append(text)
            print(f"({m.NAME}: {time.monotonic() - t0:.1f} s)\n",
                  flush=True)
    finally:
        info = machine()
        deps.redis_server.stop()
    print(info)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"## Machine\n\n{info}\n\n## Tables ({mode} mode, "
                    f"{settings.repeats} interleaved repeats)\n\n")
            f.write("\n".join(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
