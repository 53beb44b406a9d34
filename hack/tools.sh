#!/usr/bin/env bash
# Builds the conformance tools the tests run, from the Go module proxy, into
# a cache directory, and prints that directory. Re-running is cheap: a tool
# already built at the pinned version is kept.
#   h2spec                 HTTP/2 conformance suite
#   interop_server/client  grpc-go's cross-language interop test cases, at the
#                          grpc version of go.mod
#   promtool               Prometheus' rules checker and unit tester
#   node_modules/ws        the Node WebSocket package, an independent peer
#   helm                   lints and renders charts/longhaul
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${LONGHAUL_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/longhaul/tools}
mkdir -p "$dir"
grpc_version=$(go list -m -f '{{.Version}}' google.golang.org/grpc)
build() { # name package@version
  local name=$1 pkg=$2 stamp="$dir/.$1.version"
  if [ -x "$dir/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then return; fi
  echo "tools: building $name from $pkg" >&2
  local tmp; tmp=$(mktemp -d)
  GOBIN="$tmp" CGO_ENABLED=0 go install "$pkg" >&2
  mv "$tmp"/* "$dir/$name"
  rm -rf "$tmp"
  echo "$pkg" >"$stamp"
}
build h2spec github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
build interop_server "google.golang.org/grpc/interop/server@$grpc_version"
build interop_client "google.golang.org/grpc/interop/client@$grpc_version"
build helm helm.sh/helm/v4/cmd/helm@v4.3.2
build promtool github.com/prometheus/prometheus/cmd/promtool@v0.316.0
# The Node "ws" package: an independent WebSocket peer.
if [ ! -f "$dir/node_modules/ws/package.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "tools: installing the ws package with npm" >&2
    npm install --silent --no-audit --no-fund --prefix "$dir" ws@8 >&2
  else
    echo "tools: npm not found; the WebSocket peer test will fail until Node.js and npm are installed" >&2
  fi
fi
echo "$dir"
