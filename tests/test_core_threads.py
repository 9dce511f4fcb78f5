"""The core's mailbox and registry under threads, in C, three ways:
plain, under ThreadSanitizer, and under AddressSanitizer with its leak
checker.  The scenarios are in tests/c/test_mailbox_threads.c; each build
must print "ok" with no sanitizer report.  Also the mailbox's out-of-memory
paths, tests/c/test_mailbox_oom.c."""
from __future__ import annotations

import subprocess

import pytest

from ctools import build, c_env, require_clang_sanitizer

SOURCES = ["tests/c/test_mailbox_threads.c", "csrc/core/ps_registry.c",
           "csrc/core/ps_mailbox.c", "csrc/core/ps_msg.c",
           "csrc/core/ps_common.c", "-lpthread"]

BUILDS = {
    "plain": ("cc", None, ("-O2", "-Werror")),
    "tsan": ("clang", "thread", ("-g", "-O1")),
    "asan": ("clang", "address,undefined",
             ("-g", "-O1", "-fno-sanitize-recover=undefined")),
}


@pytest.mark.parametrize("kind", sorted(BUILDS))
def test_mailbox_threads(tmp_path, kind):
    cc, sanitizer, flags = BUILDS[kind]
    if sanitizer:
        require_clang_sanitizer(sanitizer)
        flags = (*flags, f"-fsanitize={sanitizer}")
    exe = tmp_path / f"test_mailbox_threads_{kind}"
    build(SOURCES, exe, "-Wextra", "-Wno-unused-parameter", *flags, cc=cc)

    env = {**c_env(),
           "TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1",
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=300, env=env)
    report = run.stdout + run.stderr[-6000:]
    assert run.returncode == 0, report
    assert run.stdout.strip().endswith("ok"), report
    assert "Sanitizer" not in run.stderr, report


@pytest.mark.parametrize("kind", ["plain", "asan"])
def test_mailbox_out_of_memory(tmp_path, kind):
    """Pushes and the fan-out bag when malloc fails (the C test wraps
    malloc and realloc to inject the failures)."""
    cc, sanitizer, flags = BUILDS[kind]
    if sanitizer:
        require_clang_sanitizer(sanitizer)
        flags = (*flags, f"-fsanitize={sanitizer}")
    exe = tmp_path / f"test_mailbox_oom_{kind}"
    sources = ["tests/c/test_mailbox_oom.c", *SOURCES[1:]]
    build(sources, exe, "-Wextra", "-Wno-unused-parameter", *flags,
          "-Wl,--wrap=malloc,--wrap=realloc", cc=cc)
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=60, env=c_env())
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    assert run.stdout.strip().endswith("ok"), run.stdout
