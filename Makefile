# The developer's and CI's entry points; see README.rst.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint bench run clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

SOURCES := $(shell find linkrouter twisted -name '*.py' -o -name py.typed -o -name '*.toml' \
	-o -path 'linkrouter/collector/dashboard/*')

# A regular install, not an editable one: twistd finds plugins only in real twisted/plugins
# directories on sys.path, which a PEP 660 editable install does not provide. Any change to
# the sources reinstalls the project, so twistd never runs stale code.
$(VENV)/.dependencies: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet '.[test]'
	touch $@

$(STAMP): $(VENV)/.dependencies $(SOURCES)
	$(BIN)/python -m pip install --quiet --no-deps .
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict linkrouter

test: lint
	$(BIN)/python -m twisted.trial $(TRIAL_ARGS) tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_codec.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_resource.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_router.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_sync.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_rewrite.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_enrich.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_ingest.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_collector.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) _trial_temp .mypy_cache .ruff_cache .hypothesis build *.egg-info
	find . -name dropin.cache -delete

# A collector and a router on loopback, the router syncing to the collector, with development
# material made once under var/dev/; Ctrl-C stops both.
run: $(STAMP)
	@$(BIN)/linkrouter devenv var/dev
	@$(BIN)/linkrouter sign --keyring var/dev/keyring.json --base https://localhost:8443 \
		--issued-at $$(( $$(date +%s) - 3600 )) https://example.com/ > var/dev/sample-link
	@echo "sample tracked link: $$(cat var/dev/sample-link)"
	@echo "try: curl --cacert var/dev/ca.pem -I $$(cat var/dev/sample-link)"
	@echo "dashboard: https://localhost:8444/ (trust var/dev/ca.pem; any user name, the"
	@echo "  password is in var/dev/reader-token); clicks show up within a sync interval (2 s)"
	@echo "metrics: http://127.0.0.1:9110/metrics and https://localhost:8444/metrics"
	@trap 'kill -TERM $$collector 2>/dev/null; wait $$collector' EXIT INT TERM; \
	$(BIN)/twistd -n --pidfile= linkcollector --config var/dev/linkcollector.toml & \
	collector=$$!; \
	$(BIN)/twistd -n --pidfile= linkrouter --config var/dev/linkrouter.toml
