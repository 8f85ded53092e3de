# asapd — the two commands that matter: `make run` and `make test`.
CARGO ?= cargo
# `make run LISTEN=… DATA_DIR=…` wins; otherwise ASAPD_LISTEN / ASAPD_DATA_DIR
# from the environment, as `asapd serve` itself would read them; then the
# --dev defaults.
DATA_DIR ?= $(or $(ASAPD_DATA_DIR),./data)
LISTEN ?= $(or $(ASAPD_LISTEN),127.0.0.1:8443)
# `make install` copies the release binary to $(DESTDIR)$(PREFIX)/bin.
PREFIX ?= /usr/local

.PHONY: run build install prereqs soak test test-sqlite test-postgres interop contract fleet qsh-vectors promtool docs-browser postman lint fmt openapi bench fuzz clean

## Build and serve a dev instance: SQLite in $(DATA_DIR), HTTPS with a
## self-signed certificate, a generated master key, admin created on first start.
## The binary is target/release/asapd.
run:
	$(CARGO) run --release -- serve --dev --data-dir $(DATA_DIR) --listen $(LISTEN)

## Build the release binary and install it as $(DESTDIR)$(PREFIX)/bin/asapd.
install:
	$(CARGO) build --release --locked
	install -D -m 0755 target/release/asapd $(DESTDIR)$(PREFIX)/bin/asapd

build:
	$(CARGO) build --locked

## The whole suite, in this order: scripts/prereqs.sh (installs what is
## missing as root, else names it and stops), unit + black-box tests on
## SQLite, the black-box tests on PostgreSQL (a throwaway server unless
## ASAPD_TEST_POSTGRES_URL names one), the interop tests with real ASAP/JWKS
## client libraries, schemathesis against the OpenAPI document (contract),
## the production topology (fleet), then the operations files: alert rules
## (promtool), /docs in headless Chromium, the Postman collection (newman).
## A test that cannot run here (it needs PostgreSQL or root) is reported as
## ignored, with its reason, never as passed.
test:
	bash scripts/prereqs.sh
	$(MAKE) test-sqlite test-postgres interop contract fleet promtool docs-browser postman

## Tests that need root (they mount a tmpfs) are `#[ignore]`d; as root a
## second run includes them.
test-sqlite:
	ASAPD_TEST_POSTGRES_URL= $(CARGO) test --locked
	@if [ "$$(id -u)" = 0 ]; then \
		echo "==> as root: the tests that need root"; \
		ASAPD_TEST_POSTGRES_URL= $(CARGO) test --locked --test api -- --ignored storage_faults::; \
	fi

## The API suite on PostgreSQL, the tests ignored for needing it included;
## storage_faults is SQLite-only and ran above.
test-postgres:
	@set -e; \
	if [ -z "$$ASAPD_TEST_POSTGRES_URL" ]; then \
		pgdir=$$(mktemp -d /tmp/asapd-test-pg.XXXXXX); \
		trap 'scripts/pg-test-server.sh stop "$$pgdir" >/dev/null; rm -rf "$$pgdir"' EXIT; \
		port=$$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
		scripts/pg-test-server.sh start "$$pgdir" "$$port"; \
		ASAPD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$$port/postgres; \
		export ASAPD_TEST_POSTGRES_URL; \
	fi; \
	echo "==> API suite on PostgreSQL ($$ASAPD_TEST_POSTGRES_URL)"; \
	$(CARGO) test --locked --test api -- --include-ignored --skip storage_faults::

interop: build
	bash tests/interop/run.sh

## Only the qsh vectors of the interop step: asapd's Connect query string
## hash against npm atlassian-jwt 2.0.3 (`npm ci` into target/qsh-npm).
qsh-vectors: build
	bash tests/interop/run.sh -k qsh

## schemathesis (pinned, in target/contract-venv) fuzzes a running debug
## asapd from openapi/openapi.json with all its checks, a few minutes at most.
contract: build
	bash tests/contract/schemathesis.sh

## The production topology on loopback: its own PostgreSQL, two replicas,
## nginx over TLS in front; writes target/fleet-propagation.json.
fleet: build
	bash tests/fleet/run.sh

## deploy/prometheus: promtool checks the alert rules, runs their unit
## tests, and checks the scrape config (its rule path rewritten to the file
## here, since /etc/prometheus exists only in the container).
promtool:
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		cp deploy/prometheus/alerts.yml "$$tmp/" && \
		sed "s|/etc/prometheus/alerts.yml|$$tmp/alerts.yml|" deploy/prometheus/prometheus.yml > "$$tmp/prometheus.yml" && \
		promtool check config "$$tmp/prometheus.yml"

## GET /docs rendered by headless Chromium, no request off 127.0.0.1;
## screenshot in target/docs/.
docs-browser: build
	bash tests/docs/run.sh

## clients/postman/ run by newman (pinned, installed under target/) against
## `serve --dev`.
postman: build
	bash tests/postman/run.sh

## rustfmt, clippy, and the layering fitness test (tests/layering/: no
## upward import, no import cycle; the layers are in docs/ARCHITECTURE.md).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --test layering

fmt:
	$(CARGO) fmt --all

## Regenerate the committed OpenAPI document.
openapi:
	$(CARGO) run --quiet -- openapi > openapi/openapi.json

bench: ; bash benches/run.sh

## The property tests of tests/props/ (hostile input to every parser that
## takes it from outside) with many more cases than `make test` gives them
## (PROPTEST_CASES, default 64): tens of minutes, so outside CI. The
## black-box properties run a quarter of FUZZ_CASES each.
FUZZ_CASES ?= 20000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --locked --test props

## The fleet topology (PostgreSQL, two replicas, nginx) under mixed traffic
## for DURATION (default 10m): no 5xx, every token audited, RSS flat, p50 and
## p99 steady; the figures go to benches/RESULTS.md. Not part of `make test`.
DURATION ?= 10m
soak: ; DURATION=$(DURATION) bash benches/soak.sh

## Installs (as root) or names what `make test` needs; `make test` runs it first.
prereqs: ; bash scripts/prereqs.sh

clean:
	$(CARGO) clean
