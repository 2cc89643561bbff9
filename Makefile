# Two entry points for a newcomer: `make run` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@$(BIN)/monitor --config config.toml check; rc=$$?; \
	if [ $$rc -eq 2 ]; then echo "monitor check: exit 2 = problems found (listed above); the run itself worked"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the stages and the vocabulary under them are held to mypy --strict; the wiring above them to plain mypy
STRICT := monitor/types.py monitor/textsafe.py monitor/clock.py monitor/pagesim.py monitor/sections.py monitor/policy.py monitor/config.py monitor/hostnames.py \
	monitor/urls.py monitor/corpus monitor/links monitor/probe monitor/fetch monitor/verdict.py \
	monitor/alerts.py monitor/store
typecheck: $(STAMP)
	$(BIN)/mypy monitor jobs reports
	$(BIN)/mypy --strict $(STRICT)

clean:
	rm -rf $(VENV) monitor.db monitor.db-wal monitor.db-shm reports-out .pytest_cache .ruff_cache
