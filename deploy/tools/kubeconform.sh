#!/usr/bin/env bash
# Prints the path of kubeconform, building it first if this version is not built yet: from the
# Go module proxy with the Go toolchain (`go install`), into .local/cache/ (ignored by git).
# Usage: deploy/tools/kubeconform.sh            -> the binary's path
#        deploy/tools/kubeconform.sh ARGS...    -> runs it with ARGS
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.7.0}"
DIR="$REPO_ROOT/.local/cache/kubeconform-$KUBECONFORM_VERSION"
BIN="$DIR/kubeconform"

if [[ ! -x "$BIN" ]]; then
    GO="$(command -v go || true)"
    [[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
    if [[ -z "$GO" ]]; then
        # Debian's Go toolchain, installed the way the local stack installs its packages.
        apt-get update -q >/dev/null
        apt-get install -y -q golang-go >/dev/null
        GO="$(command -v go)"
    fi
    mkdir -p "$DIR"
    GOBIN="$DIR" "$GO" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
fi

if [[ $# -eq 0 ]]; then
    echo "$BIN"
else
    exec "$BIN" "$@"
fi
