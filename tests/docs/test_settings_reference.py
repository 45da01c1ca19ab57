"""The settings reference (docs/reference/settings.md) names every variable the stack reads: each
field of `Settings` and each environment variable `template.yaml` sets for a function."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from billing.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class _TemplateLoader(yaml.SafeLoader):
    """CloudFormation's short tags (!Ref, !Sub, ...) read as plain values: only the names matter."""


_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def documented() -> set[str]:
    text = (ROOT / "docs" / "reference" / "settings.md").read_text()
    return {
        name
        for cell in re.findall(r"^\| ([^|]+) \|", text, re.M)
        for name in re.findall(r"`([A-Z0-9_]+)`", cell)
    }


def template_variables() -> set[str]:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_TemplateLoader)  # noqa: S506 - SafeLoader
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            names |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    return names


def test_every_settings_field_is_documented():
    fields = {name.upper() for name in Settings.model_fields}
    assert len(fields) >= 40
    assert fields - documented() == set()


def test_every_variable_the_template_sets_is_documented():
    names = template_variables()
    assert "CLICKHOUSE_URL_SECRET" in names and "STRIPE_RATE_SHARE" in names
    assert names - documented() == set()
