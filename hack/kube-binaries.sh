#!/usr/bin/env bash
# Builds a real kube-apiserver, kube-controller-manager and etcd from the Go
# module proxy (the module in hack/kube) into a cache directory, and prints
# that directory on stdout.
# internal/kubetest runs them; point it there with LONGHAUL_KUBE_BIN.
#
#   dir: $LONGHAUL_KUBE_BIN, or ${XDG_CACHE_HOME:-$HOME/.cache}/longhaul/kube-v1.37.2
#
# Re-running is cheap: the build is skipped while all binaries exist and the
# stamp file matches hack/kube's go.mod, go.sum, sources and this script's
# build flags. A cold build takes about 7.5 minutes on 2 cores (6 for etcd and
# kube-apiserver; kube-controller-manager, built last from mostly the same
# packages, adds about 1.5), about 2.4 GB of memory and 3 GB of Go build
# cache; it runs under `nice`. Progress goes to stderr. Concurrent runs wait
# for each other (flock).
set -euo pipefail
cd "$(dirname "$0")/kube"

kube_version=v1.37.2
dir=${LONGHAUL_KUBE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/longhaul/kube-$kube_version}
mkdir -p "$dir"

# Without these the server reports v0.0.0-master+$Format:%H$, which clients
# cannot parse.
ver_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver_flags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  ver_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
ldflags="-s -w$ver_flags"

stamp() {
  {
    echo "$ldflags"
    go env GOVERSION
    cat go.mod go.sum apiserver/main.go controller-manager/main.go etcd/main.go
  } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [ -x "$dir/kube-apiserver" ] && [ -x "$dir/kube-controller-manager" ] && [ -x "$dir/etcd" ] &&
    [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$(stamp)" ]
}

if ! up_to_date; then
  # Serialise builds into the same directory; a second caller waits, then
  # finds the binaries up to date.
  exec 9>"$dir/.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if ! up_to_date; then
    want=$(stamp)
    echo "kube-binaries: building kube-apiserver, kube-controller-manager and etcd $kube_version into $dir (cold: ~7.5 min)" >&2
    start=$(date +%s)
    tmp=$(mktemp -d "$dir/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
    nice go build -trimpath -ldflags "$ldflags" -o "$tmp/etcd" ./etcd >&2
    nice go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" ./apiserver >&2
    nice go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-controller-manager" ./controller-manager >&2
    mv -f "$tmp/etcd" "$tmp/kube-apiserver" "$tmp/kube-controller-manager" "$dir/"
    echo "$want" >"$dir/.stamp"
    echo "kube-binaries: built in $(($(date +%s) - start)) s" >&2
  fi
fi
echo "$dir"
