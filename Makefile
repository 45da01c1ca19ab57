# One entry point per job; each bootstraps its own virtual environment on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test smoke venv lint typecheck bench clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The embeddable client (usage_tracker) is its own package; tests/client run it from here.
	$(BIN)/pip install --quiet -e ./clients/python
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/billing demo

# Every test, the deploy smoke test (tests/smoke) included.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# What ships, run as Lambda runs it: sam build, then every function in a fresh interpreter with
# only its built code + layer on the path and the template's environment (README "Deploying").
smoke: $(STAMP)
	$(BIN)/python -m pytest tests/smoke -q -s -p no:xdist

typecheck: $(STAMP)
	$(BIN)/mypy layers/billing/billing/adapters/stripe_gateway.py
	$(BIN)/mypy --strict clients/python/usage_tracker

lint: $(STAMP)
	$(BIN)/ruff check layers functions tests bench clients || true

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .data .pytest_cache
