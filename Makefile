# SKU Lens. `make run` and `make test` are the two set-up commands (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run worker test test-fast lint bench venv system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import django, torch, faiss, celery, playwright" 
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

run: $(STAMP)
	bash scripts/run.sh

worker: $(STAMP)
	bash scripts/worker.sh

test: $(STAMP) system-deps
	bash scripts/test.sh

test-fast: $(STAMP)
	SKULENS_SKIP_SERVICES=1 bash scripts/test.sh -m "not browser and not worker"

lint: $(STAMP)
	$(BIN)/ruff check ml webapp tests
	$(BIN)/mypy ml

bench: $(STAMP)
	bash scripts/bench.sh

clean:
	rm -rf var/db.sqlite3 var/media var/index var/broker var/demo
