# One entry point for building, testing and running the project. `make help` lists targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
GO ?= go
BIN := $(CURDIR)/bin
# Example plugins are standalone crates (their own workspace, as `liqoctl plugin new` makes
# them); lint and test them too.
EXAMPLE_PLUGINS := examples/plugins/configmap examples/plugins/widget

.PHONY: help
help: ## List targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Install what a fresh machine lacks (the wasm32-wasip2 Rust target; as root, iproute2, iptables and nftables)
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@# testenv's network mode (root only: network namespaces, kube-proxy's iptables rules).
	@if command -v ip >/dev/null && command -v iptables >/dev/null && command -v nft >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables nftables >/dev/null; \
	else echo "note: testenv network mode (its tests) needs root with iproute2 and iptables installed"; fi

.PHONY: build
build: setup ## Build the host (with its embedded plugins) and liqoctl
	$(CARGO) build --workspace --locked

.PHONY: testenv
testenv: ## Build bin/testenv and bin/kubectl (real control planes from Go modules)
	@mkdir -p $(BIN)
	cd testenv && $(GO) build -o $(BIN)/testenv .
	ln -sf testenv $(BIN)/kubectl

.PHONY: lint
lint: setup ## cargo fmt --check, clippy -D warnings, gofmt and go vet
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@out=$$(gofmt -l testenv); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	cd testenv && $(GO) vet ./...
	cd testenv/imagebuild && $(GO) vet ./...
	@for example in $(EXAMPLE_PLUGINS); do \
	  (cd $$example && $(CARGO) fmt --check && $(CARGO) clippy --all-targets --locked -- -D warnings) || exit 1; \
	done

.PHONY: test
test: setup lint testenv ## Lint, then every test (unit, wasm runtime, real control planes)
	cd testenv && $(GO) test ./...
	cd testenv/imagebuild && $(GO) test ./...
	$(CARGO) test --workspace --locked --no-fail-fast
	@for example in $(EXAMPLE_PLUGINS); do \
	  echo "== $$example (its own workspace)"; \
	  (cd $$example && $(CARGO) test --locked) || exit 1; \
	done

.PHONY: bench-plugins
bench-plugins: setup ## Plugin call cost: wasm vs native, prints a table and writes target/bench/plugin_calls.json
	BENCH_OUT=$(TARGET_DIR)/bench/plugin_calls.json $(CARGO) bench -p liqo-host --bench plugin_calls --locked

# The cluster data path (testenv network mode: root) through both gateways vs the same
# kube-proxy hop without them. Debug builds by default (what `make test` builds already; numbers
# are pessimistic for the gateway); PROFILE=release for representative ones (a cold release
# build takes about 15 minutes and several GB). Extra flags: TRANSPORT_ARGS="--requests 5000".
TRANSPORT_PROFILE = $(if $(filter release,$(PROFILE)),release,debug)

.PHONY: bench-transport
bench-transport: setup testenv ## Gateway data path vs direct ClusterIP (root): round trips and 100 MiB; table and target/bench/transport.json (PROFILE=release)
	$(CARGO) build --locked $(if $(filter release,$(TRANSPORT_PROFILE)),--release) -p liqo-host -p liqoctl -p liqo-bench
	$(TARGET_DIR)/$(TRANSPORT_PROFILE)/liqo-bench-transport run $(TRANSPORT_ARGS)

# `make bench` runs the plugin call benchmark, then the full reflection benchmark on release
# builds (about 15 minutes on 2 cores once built, 12-15 of them measuring); `make bench BENCH=short` (or
# `make bench-short`) the CI-sized one on debug builds (about 110 s once built). Extra liqo-bench flags: BENCH_ARGS="--phases floor,propagation".
BENCH ?= full
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: bench
bench: setup testenv ## Reflection latency/throughput/scale vs the floor; table, target/bench/reflection.json and latency.svg (BENCH=short: CI-sized)
ifeq ($(BENCH),short)
	$(CARGO) build --locked -p liqo-host -p liqoctl -p liqo-bench
	$(TARGET_DIR)/debug/liqo-bench --mode short $(BENCH_ARGS)
else
	$(MAKE) --no-print-directory bench-plugins
	$(CARGO) build --release --locked -p liqo-host -p liqoctl -p liqo-bench
	$(TARGET_DIR)/release/liqo-bench --mode full $(BENCH_ARGS)
endif

.PHONY: bench-short
bench-short: ## Same as `make bench BENCH=short`: proves the reflection benchmark works (< 2 min once built)
	@$(MAKE) --no-print-directory bench BENCH=short

# RustSec advisories against every Cargo.lock (the workspace and the standalone example
# plugins). The database is a git repository on GitHub, which CI cannot reach: point
# ADVISORY_DB at a clone (cargo-audit's default is ~/.cargo/advisory-db).
ADVISORY_DB ?= $(HOME)/.cargo/advisory-db

.PHONY: audit
audit: ## cargo audit of every Cargo.lock against the RustSec database in ADVISORY_DB (installs cargo-audit if missing)
	@test -d $(ADVISORY_DB) || { echo "no RustSec advisory database at $(ADVISORY_DB): git clone https://github.com/rustsec/advisory-db $(ADVISORY_DB), or set ADVISORY_DB"; exit 1; }
	@command -v cargo-audit >/dev/null || $(CARGO) install --locked cargo-audit
	@echo "advisory database: $$(git -C $(ADVISORY_DB) log -1 --format='%h of %cd' --date=short 2>/dev/null)"
	$(CARGO) audit --db $(ADVISORY_DB) --no-fetch --stale --deny warnings
	@for example in $(EXAMPLE_PLUGINS); do \
	  (cd $$example && $(CARGO) audit --db $(ADVISORY_DB) --no-fetch --stale --deny warnings) || exit 1; \
	done

# Container images without a daemon or registry (testenv/imagebuild, go-containerregistry):
# docker-archives that `docker load`, `kind load image-archive` and `ctr images import` accept.
# Reproducible: files, owners and times are fixed, the creation time is the last commit's.
IMAGES_DIR := $(CURDIR)/target/images
IMAGE_TAG ?= dev
IMAGE_CREATED := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_REVISION := $(shell git describe --always --dirty --abbrev=40 2>/dev/null)
image_labels = --label org.opencontainers.image.title=$(1) --label "org.opencontainers.image.description=$(2)" \
  --label org.opencontainers.image.licenses=Apache-2.0 --label org.opencontainers.image.version=$(IMAGE_TAG) \
  --label org.opencontainers.image.revision=$(IMAGE_REVISION) --created $(IMAGE_CREATED)

.PHONY: images
images: setup ## Container images without a daemon: target/images/{liqo-host,flights-service,curl}.tar (see deploy/README.md)
	$(CARGO) build --release --locked -p liqo-host -p flights-service
	@mkdir -p $(BIN) $(IMAGES_DIR)
	cd testenv/imagebuild && CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/imagebuild ./cmd/imagebuild
	cd testenv/imagebuild && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/curl ./cmd/curl
	$(BIN)/imagebuild build --out $(IMAGES_DIR)/liqo-host.tar --tag liqo-host:$(IMAGE_TAG) --libs \
	  --file $(TARGET_DIR)/release/liqo-host:/usr/local/bin/liqo-host --entrypoint /usr/local/bin/liqo-host \
	  --cmd run --cmd --metrics-addr --cmd 0.0.0.0:8080 --expose 8080 \
	  $(call image_labels,liqo-host,The liqo host runtime with its built-in plugins)
	$(BIN)/imagebuild build --out $(IMAGES_DIR)/flights-service.tar --tag flights-service:$(IMAGE_TAG) --libs \
	  --file $(TARGET_DIR)/release/flights-service:/usr/local/bin/flights-service \
	  --entrypoint /usr/local/bin/flights-service --expose 7999 \
	  $(call image_labels,flights-service,The tutorial's flights schedule service)
	$(BIN)/imagebuild build --out $(IMAGES_DIR)/curl.tar --tag curl:$(IMAGE_TAG) \
	  --file $(BIN)/curl:/usr/bin/curl --entrypoint /usr/bin/curl \
	  $(call image_labels,curl,A small HTTP client standing in for curlimages/curl (-s -S -f -i -H -X -d -o -m))
	@bash hack/check-images.sh $(IMAGES_DIR) $(BIN)/imagebuild

.PHONY: manifests
manifests: setup ## Regenerate deploy/crds from the Rust types (a test fails when they are stale)
	$(CARGO) run -p liqo-host --locked -- crd --out-dir deploy/crds

.PHONY: demo
demo: setup ## The seed scenario (Liqo's "Offloading a Service") on two local clusters; KEEP=1 keeps them
	@bash hack/demo.sh

.PHONY: demo-down
demo-down: ## Stop what `KEEP=1 make demo` left running
	@bash hack/demo.sh down

.PHONY: clean
clean: ## Remove build outputs
	$(CARGO) clean
	rm -rf $(BIN)
