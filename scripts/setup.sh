#!/usr/bin/env bash
# Install what building, testing and running cpubsub needs on a Debian
# machine, then the package itself: editable, with the test and blog
# extras.  Safe to run again; it installs only what is missing.
#
# clang with its libFuzzer and sanitizer runtimes is part of the test
# environment: the fuzz, ThreadSanitizer and AddressSanitizer tests fail
# without it rather than skip.  Debian ships those runtimes apart from
# clang, in libclang-rt-<major>-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
updated=0

install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ $updated = 0 ]; then
        $sudo apt-get update -qq
        updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        "${missing[@]}"
}

install_missing libssl-dev clang
major=$(clang -dumpversion | cut -d. -f1)
install_missing "libclang-rt-$major-dev"

python3 -m pip install -q --disable-pip-version-check -e '.[test,blog]'
