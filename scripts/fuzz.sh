#!/usr/bin/env bash
# Build every libFuzzer harness in fuzz/ with AddressSanitizer and
# UndefinedBehaviorSanitizer, and run each for SECONDS (default 10).
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]
#
# Harnesses: codec, wire, handshake (all of them when none is named).
# Each runs over a copy of its seed corpus in fuzz/corpus/<name>, so the
# repository's seeds stay as committed; inputs the run discovers and any
# crash, leak or timeout artifact stay under $FUZZ_OUT (default
# build/fuzz, outside git).  Exits non-zero if any harness failed; the
# last line per harness gives its executions, for docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(codec wire handshake)
out=${FUZZ_OUT:-build/fuzz}
cc=${CC_FUZZ:-clang}

if ! command -v "$cc" >/dev/null; then
    echo "fuzz.sh: $cc not found; run scripts/setup.sh" >&2
    exit 2
fi

core=csrc/core
sources_for() {
    case "$1" in
    codec) echo "fuzz/codec_fuzz.c $core/ps_codec.c $core/ps_common.c" ;;
    wire) echo "fuzz/wire_fuzz.c $core/ps_wire.c" ;;
    handshake)
        echo "fuzz/handshake_fuzz.c $core/ps_wire.c $core/ps_registry.c" \
             "$core/ps_mailbox.c $core/ps_msg.c $core/ps_common.c" \
             "-lcrypto -lpthread" ;;
    *) echo "fuzz.sh: unknown harness $1" >&2; return 1 ;;
    esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
for name in "${harnesses[@]}"; do
    dir=$out/$name
    mkdir -p "$dir/corpus" "$dir/artifacts"
    # shellcheck disable=SC2046
    "$cc" -std=c11 -D_GNU_SOURCE -g -O1 \
        -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -I"$core" \
        $(sources_for "$name") -o "$dir/${name}_fuzz"
    cp -n fuzz/corpus/"$name"/* "$dir/corpus/" 2>/dev/null || true

    echo "== $name: ${seconds}s over $(ls "$dir/corpus" | wc -l) inputs"
    if "$dir/${name}_fuzz" -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
            >"$dir/log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
        echo "== $name: ok, ${runs:-?} executions"
    else
        failed=1
        tail -n 60 "$dir/log"
        echo "== $name: FAILED; artifacts in $dir/artifacts" >&2
    fi
done
exit $failed
