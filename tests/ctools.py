"""Compiling and running the core's C tests and fuzz harnesses.

The toolchain is part of the test environment (scripts/setup.sh installs
clang and its sanitizer and libFuzzer runtimes), so a missing compiler or
runtime fails the test that needs it, with the fix in the message: a
silently skipped fuzz or sanitizer run would look like a pass.
"""
from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORE = ROOT / "csrc" / "core"

SETUP_HINT = "install it with scripts/setup.sh"


def c_env() -> dict[str, str]:
    """The environment for compilers and C test programs: without what
    scripts/asan.sh sets for the interpreter (a preloaded ASan runtime
    would clash with the sanitizers these programs bring themselves)."""
    env = dict(os.environ)
    for name in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                 "PYTHONMALLOC"):
        env.pop(name, None)
    return env


def compiler(name: str = "cc") -> str:
    """The path of a C compiler, failing the test when it is missing."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed; {SETUP_HINT}"
    return path


@functools.lru_cache(maxsize=None)
def _probe(flags: tuple[str, ...], source: str) -> str:
    """'' when clang links source with flags, else its error output."""
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "probe.c"
        src.write_text(source)
        run = subprocess.run(
            [compiler("clang"), *flags, str(src), "-o", f"{tmp}/probe"],
            capture_output=True, text=True, timeout=120, env=c_env())
    return "" if run.returncode == 0 else run.stderr


def require_clang_sanitizer(sanitizer: str) -> None:
    """Fail unless clang can build with -fsanitize=sanitizer."""
    if "fuzzer" in sanitizer:
        source = ("#include <stdint.h>\n#include <stddef.h>\n"
                  "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                  " { return 0; }\n")
    else:
        source = "int main(void) { return 0; }\n"
    err = _probe((f"-fsanitize={sanitizer}",), source)
    assert not err, (f"clang cannot build with -fsanitize={sanitizer} "
                     f"(runtime missing?); {SETUP_HINT}\n{err[-1000:]}")


def build(sources: list[str], exe: pathlib.Path, *flags: str,
          cc: str = "cc") -> None:
    """Compile sources (paths relative to the repository root, or -l
    options) into exe, asserting success with the compiler's output."""
    args = [a if a.startswith("-") else str(ROOT / a) for a in sources]
    libs = [a for a in args if a.startswith("-l")]
    files = [a for a in args if not a.startswith("-l")]
    run = subprocess.run(
        [compiler(cc), "-std=c11", "-D_GNU_SOURCE", "-Wall", "-I",
         str(CORE), *flags, *files, *libs, "-o", str(exe)],
        capture_output=True, text=True, timeout=300, env=c_env())
    assert run.returncode == 0, run.stderr[-4000:]
