#!/usr/bin/env bash
# What the ATO pages' browser test needs, installed once: Debian's Chromium (Playwright drives
# it; its own browser download is not used) and axe-core from npm, under .local/axe-core.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/env.sh"

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Chromium from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q chromium >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "installing npm from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q npm >/dev/null
fi
AXE="$LOCAL_DIR/axe-core"
if [ ! -f "$AXE/node_modules/axe-core/axe.min.js" ]; then
    mkdir -p "$AXE"
    npm install --no-audit --no-fund --silent --prefix "$AXE" axe-core@4 >/dev/null
fi
