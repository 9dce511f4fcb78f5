"""The core under threads, in C, built three ways: plain, under
ThreadSanitizer, and under AddressSanitizer with its leak checker.  Each
build must print "ok" with no sanitizer report.

- tests/c/test_mailbox_threads.c: the two-sided mailbox and the registry
  lock, with threads in the I/O thread's role;
- tests/c/test_cluster_threads.c: two nodes of the real transport (one
  forked) on loopback, broadcasting from several threads through the I/O
  thread while membership changes;
- tests/c/test_mailbox_oom.c (plain and ASan): the out-of-memory paths;
- tests/c/test_mailbox_wake.c: a pusher's wake-up held (by wrapping
  write) while the consumer clears the descriptor.
"""
from __future__ import annotations

import subprocess

import pytest

from ctools import build, c_env, require_clang_sanitizer

CORE = ["csrc/core/ps_registry.c", "csrc/core/ps_mailbox.c",
        "csrc/core/ps_msg.c", "csrc/core/ps_common.c", "-lpthread"]

PROGRAMS = {
    "mailbox_threads": ["tests/c/test_mailbox_threads.c", *CORE],
    "cluster_threads": ["tests/c/test_cluster_threads.c",
                        "csrc/core/ps_cluster.c", "csrc/core/ps_wire.c",
                        "csrc/core/ps_codec.c",
                        *CORE, "-lcrypto"],
}

BUILDS = {
    "plain": ("cc", None, ("-O2", "-Werror")),
    "tsan": ("clang", "thread", ("-g", "-O1")),
    "asan": ("clang", "address,undefined",
             ("-g", "-O1", "-fno-sanitize-recover=undefined")),
}

ENV = {"TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1",
       "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
       "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def build_and_run(tmp_path, program, sources, kind, *extra):
    cc, sanitizer, flags = BUILDS[kind]
    if sanitizer:
        require_clang_sanitizer(sanitizer)
        flags = (*flags, f"-fsanitize={sanitizer}")
    exe = tmp_path / f"test_{program}_{kind}"
    build(sources, exe, "-Wextra", "-Wno-unused-parameter", *flags, *extra,
          cc=cc)
    run = subprocess.run([str(exe)], capture_output=True, text=True,
                         timeout=300, env={**c_env(), **ENV})
    report = run.stdout + run.stderr[-6000:]
    assert run.returncode == 0, report
    assert run.stdout.strip().endswith("ok"), report
    assert "Sanitizer" not in run.stderr, report


@pytest.mark.parametrize("kind", sorted(BUILDS))
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_threads(tmp_path, program, kind):
    build_and_run(tmp_path, program, PROGRAMS[program], kind)


@pytest.mark.parametrize("kind", ["plain", "asan"])
def test_mailbox_out_of_memory(tmp_path, kind):
    """Pushes and the fan-out bag when malloc fails (the C test wraps
    malloc and realloc to inject the failures)."""
    build_and_run(tmp_path, "mailbox_oom",
                  ["tests/c/test_mailbox_oom.c", *CORE], kind,
                  "-Wl,--wrap=malloc,--wrap=realloc")


@pytest.mark.parametrize("kind", sorted(BUILDS))
def test_mailbox_wake_during_clear(tmp_path, kind):
    """A wake-up whose write lands after the consumer cleared the
    descriptor leaves a count the next prepare_wait consumes: a blocking
    recv, which leaves the count for prepare_wait, must not find the
    descriptor readable on every wait after it (the C test holds the
    pusher's write with --wrap=write)."""
    build_and_run(tmp_path, "mailbox_wake",
                  ["tests/c/test_mailbox_wake.c", *CORE], kind,
                  "-Wl,--wrap=write")
