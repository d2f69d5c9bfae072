#!/usr/bin/env bash
# Renders a kustomization: `kubectl kustomize DIR` where kubectl is installed, else kustomize
# itself, built once from the Go module proxy (`go install`) into .local/cache/ (ignored by git).
# Usage: deploy/tools/kustomize.sh DIR
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$REPO_ROOT/deploy/tools/go-install-lib.sh"
# The kustomize that kubectl 1.32 embeds.
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.5.0}"

if command -v kubectl >/dev/null 2>&1 && [[ -z "${KUSTOMIZE_STANDALONE:-}" ]]; then
    exec kubectl kustomize "$1"
fi
DIR="$REPO_ROOT/.local/cache/kustomize-$KUSTOMIZE_VERSION"
BIN="$DIR/kustomize"
go_install_once "$BIN" "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
exec "$BIN" build "$1"
