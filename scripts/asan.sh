#!/usr/bin/env bash
# Build the extension with AddressSanitizer and UndefinedBehaviorSanitizer
# (and assertions on), run the whole pytest suite against it, then build
# it again normally.
#
#   scripts/asan.sh [PYTEST_ARGS...]
#
# The extension is rebuilt in place, so subprocesses the tests start (the
# cluster peers, the blog) load the sanitized build too.  CPython itself
# is not sanitized, so the ASan runtime is preloaded, Python's allocator
# is switched to malloc (ASan then sees every object's memory, and a
# reference dropped once too often shows up as a use after free), and the
# leak checker is off: the interpreter keeps memory until exit by design;
# tests/test_refleak.py measures leaks instead.
#
# Reports go to build/asan/logs (one file per process).  Exits non-zero
# when pytest fails or any process wrote a report.
set -uo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
cc=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("CC"))')
cc=${cc%% *}
runtime=$("$cc" -print-file-name=libasan.so)
if [ ! -e "$runtime" ]; then
    echo "asan.sh: $cc has no libasan.so; run scripts/setup.sh" >&2
    exit 2
fi
logs=build/asan/logs
rm -rf "$logs"
mkdir -p "$logs"

rebuild_normal() {
    "$python" setup.py -q build_ext --inplace --force >/dev/null 2>&1 ||
        echo "asan.sh: could not rebuild the normal extension" >&2
}
trap rebuild_normal EXIT

echo "== building the extension with address,undefined ($cc)"
PUBSUB_DEBUG=1 PUBSUB_SANITIZE=address,undefined \
    "$python" setup.py -q build_ext --inplace --force >build/asan/build.log \
    2>&1 || { tail -n 40 build/asan/build.log; exit 2; }

echo "== pytest under ASan+UBSan"
LD_PRELOAD=$runtime \
PYTHONMALLOC=malloc \
ASAN_OPTIONS="detect_leaks=0:log_path=$PWD/$logs/asan:print_summary=1" \
UBSAN_OPTIONS="print_stacktrace=1:log_path=$PWD/$logs/ubsan" \
PUBSUB_SANITIZED=asan \
    "$python" -m pytest -p no:cacheprovider "$@"
status=$?

reports=$(find "$logs" -type f | wc -l)
if [ "$reports" -gt 0 ]; then
    echo "== $reports sanitizer report(s):"
    for f in "$logs"/*; do
        echo "--- $f"
        head -n 60 "$f"
    done
    status=1
else
    echo "== no sanitizer reports"
fi
exit $status
