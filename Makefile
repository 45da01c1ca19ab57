# One entry point per job; each bootstraps its own virtual environment on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test smoke venv lint format typecheck bench clean live-stripe-test browser docs portal-screenshots

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

# Debian's Chromium for the portal's browser tests (Playwright drives it; no browser is downloaded).
# Installed only when missing and running as root; elsewhere tests/portal skip and say why.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium (apt-get) for the browser tests"; \
		(apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1)) || \
		echo "chromium could not be installed: browser tests will be skipped"; \
	fi

# The usage page's docs screenshots (docs/guides/portal.png, portal-phone.png): a Kolkata tenant's page
# at a fixed moment, rendered by Debian's Chromium at 1280 and 375 px (billing_local/portal_screenshots.py).
portal-screenshots: $(STAMP) browser
	$(BIN)/python -m billing_local.portal_screenshots docs/guides

# Every test, the deploy smoke test (tests/smoke) included.
test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# What ships, run as Lambda runs it: sam build, then every function in a fresh interpreter with
# only its built code + layer on the path and the template's environment (docs/operations/deploying.md).
smoke: $(STAMP)
	$(BIN)/python -m pytest tests/smoke -q -s -p no:xdist

# The opt-in live tests against Stripe's test mode (skipped unless STRIPE_TEST_SECRET_KEY=sk_test_...):
# invoicing, declines, the setup session, the no-card invoice and the catalog sync (docs/guides/stripe-invoicing.md, "Running it").
live-stripe-test: $(STAMP)
	$(BIN)/python -m pytest tests/invoicing/test_live_stripe.py tests/invoicing/test_live_stripe_collection.py -m live_stripe -v -p no:xdist

# mypy over the whole layer package (files and strictness per module in pyproject.toml), and the client.
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict clients/python/usage_tracker

# Fails on any finding: rules in pyproject.toml ([tool.ruff]); `make format` applies the formatter.
# The contract may not repeat a mapping key (YAML keeps the last one silently).
LINTED := layers functions tests bench src dashboards clients docs_hooks
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m billing_local.yaml_lint openapi.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

# The documentation site (mkdocs.yml, MkDocs + Material) into site/; --strict: a broken link or
# anchor, or a page missing from the navigation, fails (not --quiet: it hides the warnings strict
# mode counts). Offline: nothing is fetched to build it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .data .pytest_cache site
