#!/usr/bin/env bash
# Build every libFuzzer harness in fuzz/ with AddressSanitizer and
# UndefinedBehaviorSanitizer, and run each for SECONDS (default 10).
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]
#
# Harnesses: codec, pydecode, wire, handshake (all when none is named).
# SECONDS 0 only replays the seed corpus.  Each runs over a copy of its
# seed corpus (fuzz/corpus/<name>; pydecode shares codec's), so the
# repository's seeds stay as committed; inputs the run discovers and any
# crash, leak or timeout artifact stay under $FUZZ_OUT (default
# build/fuzz, outside git), where the next run starts from them.  A
# binary is rebuilt only when a source under csrc/ or fuzz/ is newer.
# Exits non-zero if any harness failed; each harness's last line gives
# its executions.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(codec pydecode wire handshake)
out=${FUZZ_OUT:-build/fuzz}
cc=${CC_FUZZ:-clang}
python=${PYTHON:-python3}

if ! command -v "$cc" >/dev/null; then
    echo "fuzz.sh: $cc not found; run scripts/setup.sh" >&2
    exit 2
fi

core=csrc/core
# The arguments that build one harness, after the common flags.
build_args() {
    case "$1" in
    codec) echo "fuzz/codec_fuzz.c $core/ps_codec.c $core/ps_common.c" ;;
    wire) echo "fuzz/wire_fuzz.c $core/ps_wire.c" ;;
    handshake)
        echo "fuzz/handshake_fuzz.c $core/ps_wire.c $core/ps_registry.c" \
             "$core/ps_mailbox.c $core/ps_msg.c $core/ps_common.c" \
             "$core/ps_codec.c" \
             "-lcrypto -lpthread" ;;
    pydecode)
        "$python" - <<'EOF'
import glob, sysconfig
v = sysconfig.get_config_var
lib = v("LIBDIR")
print("-I" + sysconfig.get_paths()["include"], "-Icsrc/py",
      "fuzz/pydecode_fuzz.c", *sorted(glob.glob("csrc/core/*.c")),
      *sorted(glob.glob("csrc/py/*.c")), "-L" + lib, "-Wl,-rpath," + lib,
      "-lpython" + v("LDVERSION"), "-lcrypto -lpthread -ldl -lm")
EOF
        ;;
    *) echo "fuzz.sh: unknown harness $1" >&2; return 1 ;;
    esac
}

corpus_of() {
    case "$1" in
    pydecode) echo fuzz/corpus/codec ;;
    *) echo "fuzz/corpus/$1" ;;
    esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
for name in "${harnesses[@]}"; do
    dir=$out/$name
    exe=$dir/${name}_fuzz
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if [ ! -x "$exe" ] ||
       [ -n "$(find csrc fuzz -name '*.[ch]' -newer "$exe" | head -n 1)" ]
    then
        # shellcheck disable=SC2046
        "$cc" -std=c11 -D_GNU_SOURCE -g -O1 \
            -fsanitize=fuzzer,address,undefined \
            -fno-sanitize-recover=undefined -I"$core" \
            $(build_args "$name") -o "$exe"
    fi
    seeds=$(corpus_of "$name")
    cp -n "$seeds"/* "$dir/corpus/" 2>/dev/null || true

    if [ "$seconds" = 0 ]; then
        echo "== $name: replaying $(ls "$seeds" | wc -l) seeds"
        run=(-runs=0 "$seeds")
    else
        echo "== $name: ${seconds}s from $(ls "$dir/corpus" | wc -l) inputs"
        run=(-max_total_time="$seconds" "$dir/corpus")
    fi
    if "$exe" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/" "${run[@]}" \
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
