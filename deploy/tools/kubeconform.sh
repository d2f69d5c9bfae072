#!/usr/bin/env bash
# Prints the path of kubeconform, building it first if this version is not built yet: from the
# Go module proxy with the Go toolchain (`go install`), into .local/cache/ (ignored by git).
# Usage: deploy/tools/kubeconform.sh            -> the binary's path
#        deploy/tools/kubeconform.sh ARGS...    -> runs it with ARGS
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$REPO_ROOT/deploy/tools/go-install-lib.sh"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.7.0}"
DIR="$REPO_ROOT/.local/cache/kubeconform-$KUBECONFORM_VERSION"
BIN="$DIR/kubeconform"

go_install_once "$BIN" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"

if [[ $# -eq 0 ]]; then
    echo "$BIN"
else
    exec "$BIN" "$@"
fi
