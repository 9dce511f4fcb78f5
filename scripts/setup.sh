#!/usr/bin/env bash
# Install what building, testing and running cpubsub needs on a Debian
# machine, then the package itself: editable, with the test and blog
# extras.  Safe to run again; it installs only what is missing.
#
# clang with its libFuzzer and sanitizer runtimes is part of the test
# environment: the fuzz, ThreadSanitizer and AddressSanitizer tests fail
# without it rather than skip.  Debian ships those runtimes apart from
# clang, in libclang-rt-<major>-dev.  chromium and chromium-driver are for
# tests/test_blog_page.py, which drives the blog's page in headless
# Chromium through selenium (a test extra).
set -euo pipefail
cd "$(dirname "$0")/.."

# A Python that marks itself EXTERNALLY-MANAGED (Debian's own python3)
# has a pip that refuses to install outside a virtual environment.  Say
# so before installing anything, rather than fail at the last step.
managed=$(python3 -c '
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
print(os.path.exists(marker) and sys.prefix == sys.base_prefix)
')
if [ "$managed" = True ]; then
    cat >&2 <<EOF
scripts/setup.sh: $(command -v python3) is the system's Python, whose pip
installs nothing outside a virtual environment.  Create one, activate it,
then run this script again:

    python3 -m venv .venv
    . .venv/bin/activate

(On Debian, python3 -m venv needs the python3-venv package.)
EOF
    exit 1
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
updated=0

apt_update_once() {
    if [ $updated = 0 ]; then
        $sudo apt-get update -qq
        updated=1
    fi
}

install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    apt_update_once
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}"
}

install_missing libssl-dev clang chromium chromium-driver
# Debian's Python keeps its C headers apart, in python3-dev.
include=$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')
[ -e "$include/Python.h" ] || install_missing python3-dev
# Before Debian 12 the runtimes came with clang itself.
rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
if ! dpkg -s "$rt" >/dev/null 2>&1; then
    apt_update_once
    if apt-cache show "$rt" >/dev/null 2>&1; then
        install_missing "$rt"
    fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test,blog]'
