#!/usr/bin/env bash
# Install what building, testing and running cpubsub needs on a Debian
# machine, then the package itself: editable, with the test and blog
# extras.  Safe to run again; it installs only what is missing.
# chromium and chromium-driver are for tests/test_blog_page.py, which drives
# the blog's page in headless Chromium through selenium (a test extra).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in libssl-dev chromium chromium-driver; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}"
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test,blog]'
