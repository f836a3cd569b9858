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

.PHONY: all build test lint demo par bench fuzz docs clean

all: build

## build: the provider binary for this machine, in build/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/$(BIN) .

## test: go vet and the whole test suite with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 10m ./...

## lint: gofmt, go vet and staticcheck
lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

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

## bench: cache-hit get through real NATS vs a protocol-only baseline, latency at 1/8/64 clients, and a deployment storm
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./provider/...
	$(GO) run ./provider/internal/cmd/load
	$(GO) run ./provider/internal/cmd/load -storm

## docs: regenerate the settings table in README.md from the code
docs:
	$(GO) run ./provider/internal/cmd/docs README.md

clean:
	rm -rf build
