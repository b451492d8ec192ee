# The two commands: `make demo` and `make test`. Both create the venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Debian packages the tests drive for real; installed when running as root.
APT_PACKAGES := nginx libnginx-mod-rtmp ffmpeg chromium shellcheck

.PHONY: demo test lint unit bench install system-deps clean

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

test: $(STAMP) system-deps lint tests/timescale/node_modules
	$(BIN)/python -m pytest -m "not gpu"

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
