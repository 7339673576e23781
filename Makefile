# indexops — every target works on a fresh machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AZURITE := $(VENV)/node/node_modules/.bin/azurite-blob
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false

DEMO_DIR ?= .demo
PREFECT_PORT ?= 4200

.PHONY: install config test test-deep test-unit test-flows test-integration test-e2e demo server deploy serve alerts bench bench-quick clean

install: $(STAMP) $(AZURITE)

# torch first: the CPU wheel pinned here; a bare `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Azurite, Microsoft's Azure Storage emulator, for the az:// source tests (it ships only on npm).
# Without npm nothing is made, so the next `make` tries again; the tests skip (and fail under CI=true).
$(AZURITE):
	if command -v npm >/dev/null; then npm install --loglevel=error --no-audit --no-fund --prefix $(VENV)/node azurite@3.35.0; \
	else echo "npm not found: the az:// tests need Azurite (apt-get install npm, or Node.js from nodejs.org)"; fi

# configs/default.yaml from the settings models (tests/unit/test_settings.py fails when it is stale).
config: install
	$(BIN)/python -m indexops.config_file

test: install
	$(BIN)/python -m pytest -m "unit or flows or integration or e2e" -q

# the incremental property at 400 examples (random draws; `make test` runs 25, derandomised under CI=true)
test-deep: install
	$(BIN)/python -m pytest --hypothesis-profile=deep -q tests/unit/test_property_incremental.py

test-unit: install
	$(BIN)/python -m pytest -m unit -q

test-flows: install
	$(BIN)/python -m pytest -m flows -q

test-integration: install
	$(BIN)/python -m pytest -m integration -q

test-e2e: install
	$(BIN)/python -m pytest -m e2e -q

# Starts a local Prefect server (UI included) unless one answers, then runs every flow built so
# far on the bundled sample data with the real embedding model.
demo: install
	PREFECT_HOME=$(abspath $(DEMO_DIR))/prefect-home $(BIN)/python -m flows.demo --dir $(DEMO_DIR) --port $(PREFECT_PORT)

server: install
	PREFECT_HOME=$(abspath $(DEMO_DIR))/prefect-home PREFECT_UI_URL=http://127.0.0.1:$(PREFECT_PORT) PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

# Against the server `make server` runs (or PREFECT_API_URL): render check, work pool + ingest
# concurrency limit, every deployment of configs/operations.yaml, then a worker in the foreground.
export PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
deploy: install
	$(BIN)/indexops deployments render --check
	$(BIN)/indexops deployments prepare
	$(BIN)/prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml
	$(BIN)/prefect worker start --pool indexops

# One machine, no work pool: the same deployments served from one process.
serve: install
	$(BIN)/python -m flows.serve --config configs/operations.yaml

# Alerts from configs/operations.yaml (secrets from env:/secret: references); quick start:
#   make alerts WEBHOOK_URL=https://hooks.example.com/...
alerts: install
	$(BIN)/indexops alerts setup --config configs/operations.yaml $(if $(WEBHOOK_URL),--webhook-url "$(WEBHOOK_URL)")

bench: install
	$(BIN)/python bench/ingest_scifact.py --repeats 3 --json bench/results/ingest_scifact.json
	$(BIN)/python bench/encoder_backends.py
	$(BIN)/python bench/delta_vs_corpus.py --json bench/results/delta_vs_corpus.json
	$(BIN)/python bench/load_memory.py --docs 200000 --per-file 10000
	$(BIN)/python bench/peers.py --with-backend onnx-int8

bench-quick: install
	$(BIN)/python bench/ingest_scifact.py --quick
	$(BIN)/python bench/encoder_backends.py --quick
	$(BIN)/python bench/delta_vs_corpus.py --quick
	$(BIN)/python bench/load_memory.py --quick
	$(BIN)/python bench/keyed_listing.py --keys 200 --changed 10 --where local --out /tmp/indexops-keyed-listing-quick.json
	$(BIN)/python bench/peers.py --quick --limit 60  # builds bench/.peers-venv once (~2 min)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
