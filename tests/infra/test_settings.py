"""Settings read the environment exactly as the template writes it (a list variable set
with !Join arrives as "k1,k2", which a reader expecting JSON would refuse on every invocation)."""

from __future__ import annotations

import pytest

from billing.runtime.settings import Settings
from billing_local.template import load_template


def template_join(value: list[str]) -> str:
    """What CloudFormation makes of the template's PLATFORM_API_KEY_IDS for a PlatformApiKeyIds value."""
    template = load_template()
    expression = template["Globals"]["Function"]["Environment"]["Variables"]["PLATFORM_API_KEY_IDS"]
    separator, operand = expression["Fn::Join"]
    assert operand == {"Ref": "PlatformApiKeyIds"}
    return separator.join(value)


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ([], []),  # the parameter's default ("" joins to "")
        (["k1"], ["k1"]),
        (["k1", "k2"], ["k1", "k2"]),
    ],
)
def test_platform_api_key_ids_read_what_the_template_joins(monkeypatch, parameter, expected):
    # Given the environment variable as CloudFormation renders the template's Join
    monkeypatch.setenv("PLATFORM_API_KEY_IDS", template_join(parameter))
    # When the settings are read
    settings = Settings()
    # Then the ids are the parameter's ids
    assert settings.platform_api_key_ids == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["k1", "k2"]', ["k1", "k2"]),  # JSON, as the local sandbox and older docs set it
        ("[]", []),
        (" k1 , k2 ,", ["k1", "k2"]),  # blanks and empty items are not ids
    ],
)
def test_platform_api_key_ids_accept_json_and_tolerate_blanks(monkeypatch, raw, expected):
    # Given a hand-written value
    monkeypatch.setenv("PLATFORM_API_KEY_IDS", raw)
    # When / Then
    assert Settings().platform_api_key_ids == expected


def test_dunning_retry_days_accept_comma_separated_integers(monkeypatch):
    # Given the retry days as an operator would type them
    monkeypatch.setenv("DUNNING_RETRY_DAYS", "2,5,10")
    # When / Then they are integers, in order
    assert Settings().dunning_retry_days == [2, 5, 10]


def test_a_list_given_in_code_is_kept(monkeypatch):
    monkeypatch.delenv("PLATFORM_API_KEY_IDS", raising=False)
    assert Settings(platform_api_key_ids=["k9"]).platform_api_key_ids == ["k9"]
