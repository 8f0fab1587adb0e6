# storefold — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
# Debian packages a fresh machine with a Rust toolchain lacks. libclang-dev and
# cmake build RocksDB and librdkafka; libssl, zlib and libcurl are what librdkafka links (TLS, SASL, OIDC);
# postgresql is the server the PostgreSQL sink's tests start (initdb in a temp dir).
APT_PACKAGES := build-essential pkg-config cmake libclang-dev git libssl-dev zlib1g-dev libcurl4-openssl-dev \
  postgresql postgresql-client prometheus chromium
# chromium is the headless browser of the Inspector's end-to-end test (crates/processor/tests/it/ui.rs).
# prometheus brings promtool, which checks deploy/prometheus (tests/tests/it/ops.rs); the
# Python tools of the other deploy/ checks (Helm's SDK, Kubernetes and compose schemas):
PIP_REQUIREMENTS := deploy/requirements-test.txt

# Where cargo puts builds (CARGO_TARGET_DIR, build.target-dir or ./target).
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

.PHONY: dev deps fmt fmt-check clippy doc test unit schemas schemas-check core-purity bench loadgen procbench pgbench normalize-demo

## dev: see it work: every role in one process around an embedded broker, a sample
## history through the real ingest, a Customer 360 summary (README "First steps").
## Built with the test profile, so it shares `make test`'s RocksDB build (~35 min on 2 cores).
## The binary is built with the package's tests: building it alone resolves other
## dependency features and compiles RocksDB's C++ once more.
dev: deps
	$(CARGO) build -q --profile test -p storefold --all-targets
	"$(TARGET_DIR)/debug/storefold" dev $(DEV_ARGS)

## deps: install missing system packages (idempotent, quiet when present)
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest >/dev/null
	@python3 -c 'import helm_python, kubernetes_validate, check_jsonschema' 2>/dev/null || \
	  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r $(PIP_REQUIREMENTS)

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## doc: the API documentation of every crate (target/doc), where any rustdoc
## warning fails: intra-doc links that resolve to nothing or, from public docs, to
## a private item; unclosed HTML tags (write `<name>` in backticks); redundant link
## targets. Dependencies are not documented (--no-deps); their builds (RocksDB's
## and librdkafka's build scripts included) are the dev-profile ones clippy uses.
## Public items only: a link between private items is not checked (add
## --document-private-items by hand to see those too; clean when this was written).
doc:
	RUSTDOCFLAGS="$${RUSTDOCFLAGS:-} -D warnings" $(CARGO) doc --workspace --no-deps

## unit: every crate's tests. The provider conformance tests read ../shared/conformance:
## without it they are skipped with a warning, and under CI (CI set) they fail.
unit:
	@if [ ! -d ../shared/conformance ]; then \
	  if [ -n "$${CI:-}" ] && [ "$${CI}" != "0" ] && [ "$${CI}" != "false" ]; then \
	    echo "ERROR: ../shared/conformance not found: CI must run the provider conformance tests" >&2; exit 1; \
	  fi; \
	  echo "WARNING: ../shared/conformance not found: the provider conformance tests are SKIPPED"; \
	fi
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc

## schemas: rewrite the `view` field of schemas/customer_projection.avsc and
## schemas/order_projection.avsc from the Rust views (crates/codec/src/records/view.rs).
## storefold-codec links neither RocksDB nor librdkafka, so this builds no C++.
schemas:
	$(CARGO) run -q -p storefold-codec --example schemas

# Runs the CLI as the test build made it: building it alone (another profile or
# another feature set) would compile RocksDB's C++ once more (~35 min on 2 cores).
schemas-check:
	$(CARGO) build -q --profile test --workspace --all-targets
	"$(TARGET_DIR)/debug/storefold" schemas check --dir schemas

## core-purity: storefold-core must not depend on runtime crates (ARCHITECTURE §2)
core-purity:
	@bad=$$($(CARGO) tree -p storefold-core -e normal --prefix none | awk '{print $$1}' | grep -E '^(tokio|rdkafka|rocksdb|axum|reqwest)$$' | sort -u); \
	if [ -n "$$bad" ]; then echo "storefold-core depends on: $$bad"; exit 1; else echo "storefold-core is pure (no tokio, rdkafka, rocksdb, axum, reqwest)"; fi

## test: everything CI checks. doc comes after clippy, whose dependency builds it
## reuses: ~20-30 s when the workspace crates changed, nothing when they did not.
test: deps fmt-check clippy doc core-purity unit schemas-check

## bench: criterion benchmarks (figures are printed, never asserted). Built with
## the test profile, like procbench: the bench profile is release-based and would
## compile RocksDB's C++ once more (~40 min on 2 cores). One bench alone:
## `make bench BENCH_ARGS="--bench codec"` (fold, providers, codec).
bench:
	$(CARGO) bench --profile test -p storefold-benches $(BENCH_ARGS)

## loadgen: ingest vs a bare handler under a mix of signed webhooks (figures printed)
loadgen:
	$(CARGO) run --release -q -p storefold-benches --bin loadgen -- --seconds 10

## procbench: processor vs a raw passthrough on the same broker (figures printed):
## throughput and ratio, peak RSS, cold restore, and the changelog and output
## records and bytes per raw event by kind. PROCBENCH_ARGS="--preset 64" (or 256,
## 768) picks one of the README's three sizes; --customers, --tenants, --partitions,
## --events and --batch set each alone.
## Built with the test profile so that it shares CI's RocksDB and librdkafka builds
## (a release build of RocksDB takes ~40 min here). That profile builds the
## processor's crates (core, codec, providers, runtime, processor) and apache-avro
## at opt-level 3 and every other dependency at opt-level 1 (Cargo.toml
## [profile.test.package.*]).
procbench:
	$(CARGO) build -q --profile test -p storefold-testkit --bin storefold-testkit-broker
	$(CARGO) run -q --profile test -p storefold-benches --bin procbench -- $(PROCBENCH_ARGS)

## pgbench: the PostgreSQL sink's batched upsert vs single-row upserts of the same
## rows (figures printed). Test profile for the same reason as procbench (the sink's
## own crate stays at opt-level 1; its time goes to PostgreSQL).
pgbench:
	$(CARGO) run -q --profile test -p storefold-benches --bin pgbench -- $(PGBENCH_ARGS)

## normalize-demo: what the fold sees for a sample Shopify order
normalize-demo:
	$(CARGO) run -q -p storefold -- normalize --provider shopify --topic orders/create \
	  --header 'X-Shopify-Event-Id: demo-1' crates/providers/src/shopify/fixtures/orders_create.json --fold
