#!/usr/bin/env bash
# Runs promtool with the given arguments, installing Debian's `prometheus` package (which ships
# it) first if it is missing, the way deploy/local/*.sh install the stack's packages.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1; then
    echo "installing Debian's prometheus package (for promtool)" >&2
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends prometheus >/dev/null
fi
exec promtool "$@"
