#!/bin/sh
# Installs what the web admin browser test (tests/web_admin.rs →
# scripts/web-test/admin.mjs) needs on a fresh Debian machine, as root:
# Debian's chromium and node, and playwright-core from npm into
# scripts/web-test/node_modules. No browser download: the test launches
# /usr/bin/chromium. Safe to run again (does nothing when all is there).
set -eu
cd "$(dirname "$0")"

missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup.sh: need root to install:$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing fonts-dejavu-core
fi

if [ ! -f node_modules/playwright-core/package.json ]; then
    # Never let playwright fetch a browser of its own.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --no-save playwright-core@1.65.1
fi
echo "setup.sh: chromium $(chromium --version 2>/dev/null | head -1), node $(node --version), playwright-core ready"
