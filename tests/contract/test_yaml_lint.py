"""openapi.yaml repeats no mapping key at any level: PyYAML (and schemathesis) would keep the last
of two and say nothing, so a reader and the contract test would see different documents."""

from __future__ import annotations

import pytest

from billing_local.wsgi_api import OPENAPI_PATH
from billing_local.yaml_lint import DuplicateKeyError, load_unique, main


def test_the_contract_repeats_no_key_at_any_level():
    # Given openapi.yaml as written
    text = OPENAPI_PATH.read_text()
    # When it is loaded refusing repeated keys (as `make lint` loads it)
    document = load_unique(text, "openapi.yaml")
    # Then it loads, and every schema it names is there once
    assert "IngestResult" in document["components"]["schemas"]
    assert main([str(OPENAPI_PATH)]) == 0


@pytest.mark.parametrize(
    "text, line",
    [
        ("a: 1\nb: 2\na: 3\n", 3),  # at the top
        ("components:\n  schemas:\n    Quota: {type: object}\n    Quota: {type: string}\n", 4),  # nested
        ("paths:\n  - {get: 1, get: 2}\n", 2),  # in a flow mapping inside a list
    ],
)
def test_a_repeated_key_is_refused_wherever_it_is(text, line):
    # Given a YAML document whose mapping names a key twice
    # When it is loaded
    with pytest.raises(DuplicateKeyError) as refused:
        load_unique(text)
    # Then it is refused, naming where the repeat is
    assert refused.value.problems[0].startswith(f"line {line}:")


def test_a_merge_key_is_not_a_repeat():
    # Given a mapping that overrides what it merges from an anchor
    text = "base: &base {x: 1}\nderived:\n  <<: *base\n  x: 2\n"
    # When it is loaded, Then the override stands
    assert load_unique(text)["derived"] == {"x": 2}


def test_the_lint_fails_on_a_file_with_a_repeat(tmp_path, capsys):
    # Given a file repeating a key
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\n")
    # When the lint runs on it, Then it fails naming the file and the line
    assert main([str(bad)]) == 1
    assert "bad.yaml" in capsys.readouterr().err
