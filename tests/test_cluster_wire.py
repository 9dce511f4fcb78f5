"""The frame layer and the mailbox rings in C: their unit tests, and the
two fuzz harnesses run over their seed corpora (so they keep building and
pass their seeds)."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = ROOT / "csrc" / "core"


def _cc(args: list[str], exe: pathlib.Path, compiler: str = "cc") -> None:
    run = subprocess.run([compiler, "-std=c11", "-D_GNU_SOURCE", "-Wall",
                          "-I", str(CORE), *args, "-o", str(exe)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_wire_c_unit_tests(tmp_path):
    exe = tmp_path / "test_wire"
    _cc(["-Werror", str(ROOT / "tests/c/test_wire.c"),
         str(CORE / "ps_wire.c")], exe)
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_mailbox_c_unit_tests(tmp_path):
    exe = tmp_path / "test_mailbox"
    _cc(["-Werror", str(ROOT / "tests/c/test_mailbox.c"),
         *(str(CORE / f) for f in ("ps_mailbox.c", "ps_msg.c",
                                   "ps_common.c")),
         "-lcrypto", "-lpthread"], exe)
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout


def _has_libfuzzer(tmp_path) -> bool:
    if shutil.which("clang") is None:
        return False
    src = tmp_path / "probe.c"
    src.write_text("#include <stdint.h>\n#include <stddef.h>\n"
                   "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                   "{ return 0; }\n")
    run = subprocess.run(["clang", "-fsanitize=fuzzer", str(src), "-o",
                          str(tmp_path / "probe")], capture_output=True)
    return run.returncode == 0


HARNESSES = {
    "wire": ["fuzz/wire_fuzz.c", "csrc/core/ps_wire.c"],
    "handshake": ["fuzz/handshake_fuzz.c", "csrc/core/ps_wire.c",
                  "csrc/core/ps_registry.c", "csrc/core/ps_mailbox.c",
                  "csrc/core/ps_msg.c", "csrc/core/ps_common.c",
                  "-lcrypto", "-lpthread"],
}


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_fuzz_harness_passes_its_corpus(tmp_path, name):
    if not _has_libfuzzer(tmp_path):
        pytest.skip("clang with libFuzzer is not installed")
    exe = tmp_path / f"{name}_fuzz"
    args = [a if a.startswith("-") else str(ROOT / a)
            for a in HARNESSES[name]]
    _cc(["-g", "-O1", "-fsanitize=fuzzer,address,undefined", *args], exe,
        compiler="clang")
    run = subprocess.run([str(exe), "-runs=0",
                          str(ROOT / "fuzz/corpus" / name)],
                         capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
