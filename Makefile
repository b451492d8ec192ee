# The two commands: `make demo` and `make test`. Both create the venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Debian packages the tests drive for real; installed when running as root.
APT_PACKAGES := nginx libnginx-mod-rtmp ffmpeg chromium shellcheck docker.io debootstrap
# kubectl for `kubectl kustomize` (tests/test_kubernetes.py): Debian's kubernetes-client, unless a kubectl is on PATH
# already (the Google Cloud CLI's `kubectl` package owns the same path and would conflict).
APT_PACKAGES += $(if $(shell command -v kubectl),,kubernetes-client)
# checkov (IaC scanner) pins packaging<24, cachetools<6 and ships its own `hcl2` module, which would break pytest and
# python-hcl2 in the project venv: it gets a venv of its own.
CHECKOV_VERSION := 3.3.30
CHECKOV := $(VENV)/tools/checkov/bin/checkov

.PHONY: demo test rehearsal lint unit bench install system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages (install them as root): $$missing"; [ "$$CI" != true ]; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(STAMP) system-deps lint tests/timescale/node_modules $(CHECKOV)
	$(BIN)/python -m pytest -m "not gpu and not rehearsal"
	$(MAKE) --no-print-directory rehearsal

# The production rehearsal (docs/deploy.md): the Dockerfile's images built and docker-compose.yml run on a real
# Docker Engine (our own dockerd when none answers), smoke-tested from outside. Caches in ~/.cache/stream-platform-rehearsal.
rehearsal: $(STAMP) system-deps
	$(BIN)/python -m pytest -m rehearsal tests/rehearsal

$(CHECKOV): | $(STAMP)
	$(PYTHON) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/pip install -q checkov==$(CHECKOV_VERSION)

# TimescaleDB (PGlite WebAssembly build) for the timescaledb-profile tests: Node.js and npm, then `npm ci`.
tests/timescale/node_modules: tests/timescale/package.json tests/timescale/package-lock.json
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	cd tests/timescale && npm ci --no-audit --no-fund
	touch $@

demo: $(STAMP)
	$(BIN)/stream-platform demo

bench: $(STAMP) system-deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .data .demo .pytest_cache .ruff_cache
