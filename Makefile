# One entry point per job; each bootstraps its own virtual environment on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/billing demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

typecheck: $(STAMP)
	$(BIN)/mypy layers/billing/billing/adapters/stripe_gateway.py

lint: $(STAMP)
	$(BIN)/ruff check layers functions tests bench || true

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .data .pytest_cache
