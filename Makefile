# One entry point for building, testing and running the project. `make help` lists targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
GO ?= go
BIN := $(CURDIR)/bin

.PHONY: help
help: ## List targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Install what a fresh machine lacks (the wasm32-wasip2 Rust target)
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

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

.PHONY: test
test: setup lint testenv ## Lint, then every test (unit, wasm runtime, real control planes)
	$(CARGO) test --workspace --locked

.PHONY: bench-plugins
bench-plugins: setup ## Plugin call cost: wasm vs native, prints a table and writes target/bench/plugins.json
	$(CARGO) bench -p liqo-host --bench plugin_calls --locked

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
