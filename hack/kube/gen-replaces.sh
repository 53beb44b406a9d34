#!/usr/bin/env bash
# Prints the replace block of hack/kube/go.mod: every k8s.io module that
# k8s.io/kubernetes requires at v0.0.0 (its staging modules, which its own
# go.mod replaces with local paths) mapped to the same-named module at the
# staging version. Usage: hack/kube/gen-replaces.sh [v1.37.2]
set -euo pipefail
kube=${1:-v1.37.2}
staging=v0.${kube#v1.}
mod=$(go mod download -json "k8s.io/kubernetes@$kube" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
echo "replace ("
grep -E '^[[:space:]]+k8s\.io/[^[:space:]]+ v0\.0\.0$' "$mod" | awk -v v="$staging" '{printf "\t%s => %s %s\n", $1, $1, v}' | sort
echo ")"
