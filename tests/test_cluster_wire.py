"""The frame layer in C: its unit tests, and the fuzz harnesses.

Every harness is run over its seed corpus (so it keeps building and its
seeds keep passing), then fuzzed for a short, bounded time through
scripts/fuzz.sh, the script that also runs longer campaigns.  These tests
need clang with libFuzzer and fail without it (scripts/setup.sh installs
it).
"""
from __future__ import annotations

import os
import subprocess

import pytest

from ctools import ROOT, build, require_clang_sanitizer

# Seconds of fuzzing per harness in the test suite; FUZZ_SECONDS overrides.
SHORT_RUN = int(os.environ.get("FUZZ_SECONDS", "30"))

HARNESSES = {
    "codec": ["fuzz/codec_fuzz.c", "csrc/core/ps_codec.c",
              "csrc/core/ps_common.c"],
    "wire": ["fuzz/wire_fuzz.c", "csrc/core/ps_wire.c"],
    "handshake": ["fuzz/handshake_fuzz.c", "csrc/core/ps_wire.c",
                  "csrc/core/ps_registry.c", "csrc/core/ps_mailbox.c",
                  "csrc/core/ps_msg.c", "csrc/core/ps_common.c",
                  "-lcrypto", "-lpthread"],
}

FUZZ_FLAGS = ("-g", "-O1", "-fsanitize=fuzzer,address,undefined",
              "-fno-sanitize-recover=undefined")


def test_wire_c_unit_tests(tmp_path):
    exe = tmp_path / "test_wire"
    build(["tests/c/test_wire.c", "csrc/core/ps_wire.c"], exe, "-Werror")
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_fuzz_harness_passes_its_corpus(tmp_path, name):
    require_clang_sanitizer("fuzzer,address,undefined")
    exe = tmp_path / f"{name}_fuzz"
    build(HARNESSES[name], exe, *FUZZ_FLAGS, cc="clang")
    run = subprocess.run([str(exe), "-runs=0",
                          str(ROOT / "fuzz/corpus" / name)],
                         capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.fuzz
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_short_fuzz_run_finds_nothing(name):
    """A bounded libFuzzer run; a crash leaves its input under
    build/fuzz-ci/<name>/artifacts for the regression corpus."""
    require_clang_sanitizer("fuzzer,address,undefined")
    out = ROOT / "build" / "fuzz-ci"
    run = subprocess.run(
        ["bash", str(ROOT / "scripts/fuzz.sh"), str(SHORT_RUN), name],
        capture_output=True, text=True, timeout=SHORT_RUN + 600,
        env={**os.environ, "FUZZ_OUT": str(out)})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"== {name}: ok" in run.stdout
