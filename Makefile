# SKU Lens. `make run` and `make test` are the two set-up commands (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Which Faiss build: `cpu` (faiss-cpu) or `gpu` (faiss-gpu, CUDA 12); both install the module
# `faiss`, so exactly one extra is installed and the other package is removed first.
# Default: gpu where nvidia-smi sees a GPU. `make run FAISS=cpu` forces the CPU build.
FAISS ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
OTHER_FAISS := $(if $(filter gpu,$(FAISS)),faiss-cpu,faiss-gpu)
STAMP := $(VENV)/.installed-$(FAISS)

.PHONY: run serve worker test test-fast lint lint-webapp-types bench venv system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip uninstall --quiet -y $(OTHER_FAISS) 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[$(FAISS),dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import django, torch, faiss, celery, gunicorn, honcho, playwright"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

run: $(STAMP)
	bash scripts/system-deps.sh run
	bash scripts/run.sh

serve: $(STAMP)
	bash scripts/serve.sh

worker: $(STAMP)
	bash scripts/worker.sh

test: $(STAMP) system-deps
	bash scripts/test.sh

test-fast: $(STAMP)
	SKULENS_SKIP_SERVICES=1 bash scripts/test.sh -m "not browser and not worker"

# mypy with django-stubs on webapp (its settings load, so it needs a secret key).
MYPY_WEBAPP := DJANGO_SECRET_KEY=mypy-only $(BIN)/mypy --config-file mypy-webapp.toml webapp

# ruff; mypy --strict on ml (and the Protocol conformance test); the import contracts in
# pyproject.toml; mypy with django-stubs on webapp. CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check ml webapp tests
	$(BIN)/mypy --strict ml
	$(BIN)/mypy tests/ml/test_interfaces.py
	$(BIN)/lint-imports
	$(MYPY_WEBAPP)

# The webapp part of lint alone (about a minute from a cold cache).
lint-webapp-types: $(STAMP)
	$(MYPY_WEBAPP)

bench: $(STAMP)
	bash scripts/bench.sh

clean:
	rm -rf var/db.sqlite3 var/media var/index var/broker var/demo var/metrics var/celerybeat-schedule
