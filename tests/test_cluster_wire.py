"""The frame layer and the mailbox rings in C: their unit tests, and the
fuzz harnesses.

Every harness is built by scripts/fuzz.sh (the script that also runs
longer campaigns), replays its seed corpus, and is then fuzzed for a
short, bounded time.  These tests need clang with libFuzzer and fail
without it (scripts/setup.sh installs it).  Inputs found and crash
artifacts stay in build/fuzz-ci/<harness>/; a crash's input belongs in
fuzz/corpus/<harness>/ once it is fixed, so every later run replays it.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from ctools import ROOT, build, c_env, require_clang_sanitizer

# Seconds of fuzzing per harness in the test suite; FUZZ_SECONDS overrides.
SHORT_RUN = int(os.environ.get("FUZZ_SECONDS", "30"))

HARNESSES = ["codec", "handshake", "pydecode", "wire"]


def fuzz(seconds: int, name: str) -> str:
    """Run scripts/fuzz.sh for one harness; its output."""
    require_clang_sanitizer("fuzzer,address,undefined")
    run = subprocess.run(
        ["bash", str(ROOT / "scripts/fuzz.sh"), str(seconds), name],
        capture_output=True, text=True, timeout=seconds + 600,
        env={**c_env(), "FUZZ_OUT": str(ROOT / "build" / "fuzz-ci")})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"== {name}: ok" in run.stdout, run.stdout
    return run.stdout


def test_wire_c_unit_tests(tmp_path):
    exe = tmp_path / "test_wire"
    build(["tests/c/test_wire.c", "csrc/core/ps_wire.c"], exe, "-Werror")
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=60, env=c_env())
    assert run.returncode == 0, run.stdout


def test_mailbox_c_unit_tests(tmp_path):
    exe = tmp_path / "test_mailbox"
    build(["tests/c/test_mailbox.c", "csrc/core/ps_mailbox.c",
           "csrc/core/ps_msg.c", "csrc/core/ps_common.c", "-lcrypto",
           "-lpthread"], exe, "-Werror")
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=120, env=c_env())
    assert run.returncode == 0, run.stdout


@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz_harness_passes_its_corpus(name):
    fuzz(0, name)


@pytest.mark.fuzz
@pytest.mark.slow
@pytest.mark.parametrize("name", HARNESSES)
def test_short_fuzz_run_finds_nothing(name):
    print(fuzz(SHORT_RUN, name))     # executions, shown with -rP
