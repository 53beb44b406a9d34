# longhaul: build, test and demo targets. `make test` is what CI runs.
GO       ?= go
GOFLAGS  ?=
TESTFLAGS ?= -race -count=1 -timeout 25m

.PHONY: all build demo test vet deps kube-bin fuzz bench clean conformance

all: build

build:
	$(GO) build ./...

demo:
	$(GO) run ./cmd/longhaul demo

# test installs what the tests need (Debian packages, the real
# kube-apiserver, kube-controller-manager and etcd built from Go modules),
# then vets and runs every test with the race detector.
test: deps
	$(GO) vet ./...
	LONGHAUL_KUBE_BIN="$$(hack/kube-binaries.sh)" LONGHAUL_TOOLS_BIN="$$(hack/tools.sh)" $(GO) test $(TESTFLAGS) ./...

deps:
	hack/deps.sh

# conformance runs the Gateway API conformance suite against longhaul's
# gateway role and refreshes the report kept in gateway/ (test runs it too,
# and fails when its report differs from the kept one).
conformance: deps
	LONGHAUL_KUBE_BIN="$$(hack/kube-binaries.sh)" LONGHAUL_CONFORMANCE_REPORT=$(CURDIR)/gateway/conformance-report.yaml \
		$(GO) test -count=1 -timeout 30m -run TestConformance -v ./cmd/longhaul/

# fuzz runs each fuzz target for a short while (FUZZTIME, default 30s).
FUZZTIME ?= 30s
fuzz:
	hack/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./balancer/ ./proxy/...
bench-compare: ; $(GO) run ./benchmarks/cmd/compare $(COMPAREFLAGS)

clean:
	$(GO) clean -testcache
