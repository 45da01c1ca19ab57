"""parse_instant: the usual ...Z form (a fast path) reads as the same text with a +00:00 offset."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.kernel.periods import parse_instant

_two = st.integers(0, 99).map(lambda n: f"{n:02d}")
_texts = st.builds(
    lambda y, mo, d, h, mi, s, frac: f"{y:04d}-{mo}-{d}T{h}:{mi}:{s}{frac}",
    st.integers(1990, 2110),
    _two,
    _two,
    _two,
    _two,
    _two,
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,9}", fullmatch=True)),
)


def _read(text: str) -> object:
    try:
        return parse_instant(text)
    except ValueError as exc:
        return type(exc)


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(_texts)
def test_a_z_instant_reads_as_its_offset_form(text):
    # Given any date-time text (impossible days, hours and ranges included), When it is read with Z
    # and with +00:00, Then both give the same instant, or the same kind of error
    assert _read(text + "Z") == _read(text + "+00:00")


@pytest.mark.parametrize("text", ["2025-11-03T24:00:00Z", "2025-02-30T12:00:00Z", "2100-01-01T00:00:00Z"])
def test_a_bad_z_instant_gets_the_general_paths_message(text):
    # Given a well-formed but impossible (or out of range) instant ending in Z
    # When it is read, Then the error is the one its +00:00 form gets, with the text itself named
    with pytest.raises(ValueError) as z:
        parse_instant(text)
    with pytest.raises(ValueError) as offset:
        parse_instant(text.replace("Z", "+00:00"))
    assert type(z.value) is type(offset.value)
    assert str(z.value).replace("Z", "+00:00") == str(offset.value) or str(z.value) == str(offset.value)
