"""Event-time pricing: the formula, version selection, rounding and refusal of unknown models."""

from dataclasses import replace
from decimal import Decimal, InvalidOperation, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.metering.events import MAX_BYTES, MAX_TOKENS, UsageEvent
from billing.metering.price_book import EventCost, PriceBook, UnknownModel

BOOK = PriceBook.from_document(
    {
        "versions": [
            {
                "effective_from": "2025-01-01T00:00:00Z",
                "markup": "0.25",
                "storage_per_gb": "0.10",
                "models": {"gpt-4o-mini": {"input_per_1m": "0.15", "output_per_1m": "0.60"}},
            },
            {
                "effective_from": "2025-11-15T00:00:00Z",
                "markup": "0.30",
                "storage_per_gb": "0.10",
                "models": {"gpt-4o-mini": {"input_per_1m": "0.10", "output_per_1m": "0.40"}},
            },
        ]
    }
)


def event(ts: str, **kw) -> UsageEvent:
    base = {"event_id": "e", "tenant_id": "t", "timestamp": ts, "type": "query", "model": "gpt-4o-mini"}
    return UsageEvent.model_validate({**base, **kw})


def test_cost_is_provider_cost_plus_markup_worked_by_hand():
    # Given 1200 input, 300 output tokens and 5120 bytes under version 1
    # (1200*0.15 + 300*0.60)/1e6 = 0.00036; 5120/1e9*0.10 = 0.000000512; x1.25 = 0.00045064
    cost = BOOK.cost(event("2025-11-03T12:00:00Z", input_tokens=1200, output_tokens=300, bytes=5120))
    assert cost.cost_usd == Decimal("0.000450640")
    assert cost.price_version == "2025-01-01T00:00:00Z"


def test_the_version_in_force_at_the_event_timestamp_is_used():
    before = BOOK.cost(event("2025-11-14T23:59:59.999Z", input_tokens=1_000_000))
    after = BOOK.cost(event("2025-11-15T00:00:00Z", input_tokens=1_000_000))
    assert (before.cost_usd, before.price_version) == (Decimal("0.187500000"), "2025-01-01T00:00:00Z")
    assert (after.cost_usd, after.price_version) == (Decimal("0.130000000"), "2025-11-15T00:00:00Z")


def test_rounding_is_half_up_at_nine_decimals():
    # 1 input token: 0.15/1e6 * 1.25 = 0.0000001875 -> 0.000000188 (half-up)
    assert BOOK.cost(event("2025-02-01T00:00:00Z", input_tokens=1)).cost_usd == Decimal("0.000000188")
    # 3 bytes: 3/1e9*0.10*1.25 = 3.75e-10 -> 0.000000000
    assert BOOK.cost(event("2025-02-01T00:00:00Z", type="storage", model=None, bytes=3)).cost_usd == Decimal(
        "0E-9"
    )


def test_unknown_model_is_refused():
    with pytest.raises(UnknownModel):
        BOOK.cost(event("2025-02-01T00:00:00Z", model="gpt-9", input_tokens=5))


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**13))
def test_cost_is_exact_and_never_negative(inp, out, nbytes):
    cost = BOOK.cost(
        event("2025-03-01T00:00:00Z", input_tokens=inp, output_tokens=out, bytes=nbytes)
    ).cost_usd
    exact = (
        (Decimal(inp) * Decimal("0.15") + Decimal(out) * Decimal("0.60")) / Decimal(10**6)
        + Decimal(nbytes) / Decimal(10**9) * Decimal("0.10")
    ) * Decimal("1.25")
    assert cost >= 0
    assert abs(cost - exact) <= Decimal("0.0000000005")
    assert cost.as_tuple().exponent == -9


def test_price_book_file_rejects_float_prices(tmp_path):
    path = tmp_path / "book.yaml"
    path.write_text(
        "versions:\n  - effective_from: '2025-01-01T00:00:00Z'\n    markup: 0.25\n"
        "    storage_per_gb: '0.1'\n    models: {}\n"
    )
    with pytest.raises(ValueError):
        PriceBook.load(path)


def _formula(book: PriceBook, event: UsageEvent) -> EventCost:
    """The cost by the formula itself (``PriceBook._cost`` in 60 digits), without the fast path."""
    with localcontext() as ctx:
        ctx.prec = 60
        return book._cost(event)


_prices = st.integers(0, 40).flatmap(
    lambda places: st.decimals(min_value=0, max_value=10**6, places=places, allow_nan=False)
)


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(
    markup=_prices,
    storage=_prices,
    price_in=_prices,
    price_out=_prices,
    inp=st.integers(0, MAX_TOKENS),
    out=st.integers(0, MAX_TOKENS),
    nbytes=st.integers(0, MAX_BYTES),
    model=st.sampled_from(["m", "other", None]),
)
def test_the_fast_path_gives_the_formulas_decimal(
    markup, storage, price_in, price_out, inp, out, nbytes, model
):
    # Given a price book with arbitrary prices (up to 40 decimals: some fold exactly, some do not)
    book = PriceBook.from_document(
        {
            "versions": [
                {
                    "effective_from": "2025-01-01T00:00:00Z",
                    "markup": str(markup),
                    "storage_per_gb": str(storage),
                    "models": {"m": {"input_per_1m": str(price_in), "output_per_1m": str(price_out)}},
                }
            ]
        }
    )
    tokens = {"input_tokens": inp, "output_tokens": out} if model else {}
    kind = "query" if model else "storage"
    e = event("2025-03-01T00:00:00Z", type=kind, model=model, bytes=0 if model else nbytes, **tokens)
    # When it is priced, Then it is the formula's Decimal to the digit (or the same refusal)
    try:
        expected: EventCost | type[Exception] = _formula(book, e)
    except (UnknownModel, InvalidOperation) as exc:
        expected = type(exc)
    if isinstance(expected, EventCost):
        got = book.cost(e)
        assert (str(got.cost_usd), got.price_version) == (str(expected.cost_usd), expected.price_version)
    else:
        with pytest.raises(expected):
            book.cost(e)


def _decimal_path(book: PriceBook) -> PriceBook:
    """``book`` pricing without its integer sums: the Decimal fast path (and the formula) alone."""
    plain = PriceBook(book.versions)
    plain._folded = [None if f is None else replace(f, scaled=None) for f in plain._folded]
    return plain


_signed_prices = st.one_of(_prices, st.just(Decimal("-0")), st.just(Decimal("-0.000")))


@settings(deadline=None)  # a shared machine: timings vary, the property does not
@given(
    markup=_signed_prices,
    storage=_signed_prices,
    price_in=_signed_prices,
    price_out=_signed_prices,
    inp=st.integers(0, MAX_TOKENS) | st.just(0),
    out=st.integers(0, MAX_TOKENS) | st.just(0),
    nbytes=st.integers(0, MAX_BYTES) | st.just(0),
    model=st.sampled_from(["m", "other", None]),
    kind=st.sampled_from(["query", "embedding", "storage"]),
)
def test_the_integer_sums_give_the_decimal_paths_cost(
    markup, storage, price_in, price_out, inp, out, nbytes, model, kind
):
    # Given a price book with arbitrary prices (-0 among them) and an event of any measures
    book = PriceBook.from_document(
        {
            "versions": [
                {
                    "effective_from": "2025-01-01T00:00:00Z",
                    "markup": str(markup),
                    "storage_per_gb": str(storage),
                    "models": {"m": {"input_per_1m": str(price_in), "output_per_1m": str(price_out)}},
                }
            ]
        }
    )
    fields = {
        "query": {"model": model, "input_tokens": inp, "output_tokens": out, "bytes": nbytes},
        "embedding": {"model": model, "input_tokens": inp, "output_tokens": out},
        "storage": {"bytes": nbytes},
    }[kind]
    try:
        e = event("2025-03-01T00:00:00Z", type=kind, **fields)
    except ValueError:  # a combination the event rules refuse (tokens without a model): not priced
        return
    # When it is priced with the integer sums and by the Decimal path alone
    try:
        expected: EventCost | type[Exception] = _decimal_path(book).cost(e)
    except (UnknownModel, InvalidOperation) as exc:
        expected = type(exc)
    # Then both give the same Decimal, to the digit, the exponent and the sign (or the same refusal)
    if isinstance(expected, EventCost):
        got = book.cost(e)
        assert (repr(got.cost_usd), got.price_version) == (repr(expected.cost_usd), expected.price_version)
    else:
        with pytest.raises(expected):
            book.cost(e)
