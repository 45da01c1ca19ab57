"""The catalog's compact form (billing.catalog.documents): the layer build parses each config YAML once
into JSON, and a cold start reads that JSON instead of importing the YAML parser. Whatever the file,
what is loaded is the YAML's own parse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from billing.catalog.documents import compact_path, compile_document, load_document, main
from billing.catalog.plans import PlanCatalog
from billing.metering.price_book import PriceBook
from tests.conftest import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "layers/billing/billing/config"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copytree(CONFIG, tmp_path / "config")
    return tmp_path / "config"


def test_the_shipped_catalog_compiles_to_exactly_its_yaml_parse(config: Path) -> None:
    # Given the shipped plans and price book
    # When the build step compacts them
    assert main([str(config)]) == 0
    # Then each YAML has a compact form, holding the YAML's parse, and that is what is loaded
    for source in sorted(config.glob("*.yaml")):
        parsed = yaml.safe_load(source.read_text())
        assert json.loads(compact_path(source).read_text())["document"] == parsed
        assert load_document(source) == parsed
    # And the catalog and the price book built from them are the ones built from the YAML
    assert PlanCatalog.load(config / "plans.yaml") == PlanCatalog.model_validate(
        yaml.safe_load((config / "plans.yaml").read_text())
    )
    book = PriceBook.load(config / "pricebook.yaml")
    assert (
        book.versions
        == PriceBook.from_document(yaml.safe_load((config / "pricebook.yaml").read_text())).versions
    )


def test_a_compact_form_of_other_text_is_never_used(config: Path) -> None:
    # Given a compacted plans file, then edited (a new base fee) without compacting again
    source = config / "plans.yaml"
    compile_document(source)
    source.write_text(source.read_text().replace('base_fee: "29.00"', 'base_fee: "31.00"'))
    # When it is loaded
    document = load_document(source)
    # Then the edited YAML is what is read
    assert document == yaml.safe_load(source.read_text())
    assert document["plans"][0]["base_fee"] == "31.00"


def test_a_parse_json_cannot_hold_stays_yaml(tmp_path: Path) -> None:
    # Given a YAML whose parse holds a date and an integer key (JSON would give strings back)
    source = tmp_path / "pricebook.yaml"
    source.write_text("versions:\n  - effective_from: 2025-01-01T00:00:00Z\n    markup: '0.25'\n1: one\n")
    # When the build step compacts it
    written = compile_document(source)
    # Then no compact form is written, and loading gives the YAML's own parse
    assert written is None and not compact_path(source).exists()
    assert load_document(source) == yaml.safe_load(source.read_text())
