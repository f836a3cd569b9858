# infisical-secrets-provider
BIN        := infisical-secrets-provider
GO         ?= go
VERSION    ?= 0.1.0
REVISION   ?= 0
VENDOR     ?= infisical-secrets-provider
NAME       ?= Infisical Secrets Provider
LDFLAGS    := -s -w -X github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli.Version=$(VERSION)
STATICCHECK_VERSION ?= v0.8.2
FUZZTIME   ?= 10s

.PHONY: all build test test-quick lint demo par push image bench charts fuzz docs clean test-wasmcloud wasmcloud-tools wasmcloud-deps

all: build

## build: the provider binary for this machine, in build/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/$(BIN) .

## test: go vet and the whole test suite with the race detector, the slow wall-clock scenarios (TestSlow_*) included
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 10m ./...

## test-quick: the test suite with the race detector but without the slow wall-clock scenarios (TestSlow_*), for the
## edit-and-test loop; make test (and CI) runs them
test-quick:
	$(GO) test -race -count=1 -timeout 10m -skip '^TestSlow_' ./...

## lint: gofmt, a tidy go.mod, go vet and staticcheck
lint:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags wasmcloud ./provider/wasmcloudtest/
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags wasmcloud ./provider/wasmcloudtest/

## demo: embedded NATS, a fake Infisical with a demo project, the backend, and a host-style fetch
demo:
	$(GO) run ./provider/internal/cmd/demo

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@set -e; $(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do \
	  for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

## par: signed provider archive (PAR) with static linux and darwin binaries, verified after building
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
par:
	@set -e; bins=""; \
	for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; out=build/bin/$$os-$$arch/$(BIN); \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out .; \
	  bins="$$bins --bin $$p=$$out"; \
	done; \
	$(GO) run ./provider/internal/cmd/par --name "$(NAME)" --vendor "$(VENDOR)" --version $(VERSION) \
	  --revision $(REVISION) --keys-dir build/keys --out build/$(BIN).par.gz $$bins
	$(GO) run ./provider/internal/cmd/par verify --target x86_64-linux build/$(BIN).par.gz

## push: the PAR to an OCI registry as `wash push` does, without wash: make push REF=registry/repo:tag [INSECURE=1]
## [PAR=file]; prints REF@DIGEST. Credentials: WASH_REG_USER/WASH_REG_PASSWORD, else docker login's.
PAR ?= build/$(BIN).par.gz
push:
	@test -n "$(REF)" || { echo "usage: make push REF=registry/repo:tag [INSECURE=1] [PAR=$(PAR)]"; exit 2; }
	@$(GO) run ./provider/internal/cmd/push $(if $(INSECURE),--insecure) '$(REF)' '$(PAR)'

## image: OCI image for standalone `serve` without Docker (static linux/amd64 binary, CA bundle, user 65532), as a
## `docker load`/`podman load` tarball build/$(BIN)-image.tar tagged $(IMAGE)
IMAGE     ?= ghcr.io/infisical-secrets-provider/infisical-secrets-provider-standalone:$(VERSION)
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/bin/linux-amd64/$(BIN) .
	$(GO) run ./provider/internal/cmd/image --binary build/bin/linux-amd64/$(BIN) --ca-bundle '$(CA_BUNDLE)' \
	  --tag '$(IMAGE)' --version '$(VERSION)' --vendor '$(VENDOR)' --revision "$$(git rev-parse HEAD 2>/dev/null)" \
	  --out build/$(BIN)-image.tar

## bench: cache-hit get through real NATS vs a protocol-only baseline (each in its own process: throughput, CPU per get,
## latency at 1/8/64 clients, peak RSS), with and without the JWT cache, and a deployment storm
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./provider/...
	$(GO) run ./provider/internal/cmd/load
	$(GO) run ./provider/internal/cmd/load -jwt-cache=false -build=false
	$(GO) run ./provider/internal/cmd/load -storm

## charts: the load tool's client levels and deployment storm as SVG charts in docs/performance (under a minute on 2
## cores; shorter with e.g. CHARTS_FLAGS='-duration 1s -storm-hosts 4')
CHARTS_FLAGS ?=
charts:
	$(GO) run ./provider/internal/cmd/load -charts docs/performance -build=false $(CHARTS_FLAGS)

## docs: regenerate the settings table in docs/configuration.md from the code
docs:
	$(GO) run ./provider/internal/cmd/docs docs/configuration.md

## The real wasmCloud 1.x tools, built from registry crates (Rust is test tooling only; the product is Go). Build
## output stays outside the checkout, so only the first build on a machine is slow (see docs/development.md).
WASMCLOUD_TOOLS  ?= $(HOME)/.cache/isp-wasmcloud
WASH_VERSION     := 0.43.0
NATS_KV_VERSION  := 0.2.0
WASH             := $(WASMCLOUD_TOOLS)/wash-$(WASH_VERSION)/bin/wash
NATS_KV          := $(WASMCLOUD_TOOLS)/secrets-nats-kv-$(NATS_KV_VERSION)/bin/secrets-nats-kv
LATTICE          := $(WASMCLOUD_TOOLS)/target-lattice/debug/isp-lattice
CARGO            ?= cargo

## wasmcloud-deps: the system packages the Rust builds need (a C compiler, pkg-config, libdbus headers for wash)
wasmcloud-deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo is not installed: make test-wasmcloud builds the real wasmCloud tools with it (https://rustup.rs)"; exit 1; }
	@if ! command -v cc >/dev/null || ! pkg-config --exists dbus-1 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing build-essential pkg-config libdbus-1-dev"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential pkg-config libdbus-1-dev >/dev/null; \
	  else echo "install a C compiler, pkg-config and the libdbus-1 headers (Debian: build-essential pkg-config libdbus-1-dev)"; exit 1; fi; \
	fi

## wasmcloud-tools: wash $(WASH_VERSION), secrets-nats-kv $(NATS_KV_VERSION), and our host+wadm runner (provider/internal/lattice)
wasmcloud-tools: wasmcloud-deps
	@mkdir -p $(WASMCLOUD_TOOLS)
	CARGO_TARGET_DIR=$(WASMCLOUD_TOOLS)/target-wash $(CARGO) install --locked --quiet wash --version =$(WASH_VERSION) --root $(WASMCLOUD_TOOLS)/wash-$(WASH_VERSION)
	CARGO_TARGET_DIR=$(WASMCLOUD_TOOLS)/target-natskv $(CARGO) install --locked --quiet secrets-nats-kv --version =$(NATS_KV_VERSION) --root $(WASMCLOUD_TOOLS)/secrets-nats-kv-$(NATS_KV_VERSION)
	CARGO_TARGET_DIR=$(WASMCLOUD_TOOLS)/target-lattice RUSTC_WRAPPER=$(CURDIR)/provider/internal/lattice/rustc-wrapper.sh \
	  $(CARGO) build --locked --quiet --manifest-path provider/internal/lattice/Cargo.toml

## test-wasmcloud: the provider against the real host, wash, wadm and secrets-nats-kv (builds them first)
test-wasmcloud: par wasmcloud-tools
	ISP_WASH=$(WASH) ISP_SECRETS_NATS_KV=$(NATS_KV) ISP_LATTICE=$(LATTICE) ISP_PAR=$(CURDIR)/build/$(BIN).par.gz \
	  $(GO) test -tags wasmcloud -count=1 -timeout 30m -v ./provider/wasmcloudtest/

clean:
	rm -rf build
