# Tools built from the Go module proxy with the Go toolchain (`go install`), shared by
# kubeconform.sh and kustomize.sh; sourced.

# go_install_once BIN MODULE@VERSION: builds BIN into its own folder (under .local/cache/,
# ignored by git) unless it is there already; the folder names the version, so a new version
# is built once too.
go_install_once() {
    local bin="$1" module="$2" go
    if [[ -x "$bin" ]]; then return 0; fi
    go="$(command -v go || true)"
    [[ -z "$go" && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
    if [[ -z "$go" ]]; then
        # Debian's Go toolchain, installed the way the local stack installs its packages.
        apt-get update -q >/dev/null
        apt-get install -y -q golang-go >/dev/null
        go="$(command -v go)"
    fi
    mkdir -p "$(dirname "$bin")"
    GOBIN="$(dirname "$bin")" "$go" install "$module" >&2
}
