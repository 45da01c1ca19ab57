"""What a customer reads on a statement line: the one place that words every line kind.

The same description is shown on the usage page, written to the lines CSV and sent as the Stripe
invoice item's description, so an invoice and the page never say different things.

Invariants:

* a description is plain text, never more than ``DESCRIPTION_LIMIT`` characters (Stripe's limit on
  an invoice item's description; ``fit`` cuts a longer one at a word boundary);
* money is shown in the statement's currency with its minor unit (``$99.00``, ``€99.00``,
  ``¥12,000``), rounded half-up like the line itself; unit prices keep every significant digit
  (``$0.008``); counts have thousands separators, tokens and bytes past 10,000 are compact
  (``8.75M``);
* dates are days in UTC; a period ``[start, end)`` is shown by its first and last day
  (``1-30 Nov 2026``, ``28 Nov - 3 Dec 2026``, ``28 Dec 2026 - 3 Jan 2027``);
* wording never changes an amount: what a line is audited by (its id, ``amount_exact``, the
  prorated seconds, its instants) stays in the line's data, not in its words.

Length: one function per line kind (base fee, tiers, packages, metrics and their groups, late
usage, corrections, coupons, credits) over shared number and date formatting; kept in one module
so that every line a customer reads is worded, and can be reviewed, in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing.kernel.money import exponent, round_minor
from billing.kernel.periods import Month, RatedPeriod
from billing.rating.tiers import Tier, tier_lower

# Stripe refuses an invoice item description over 500 characters (API changelog 2018-10-31).
DESCRIPTION_LIMIT = 500

_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
_COMPACT = ((Decimal(10) ** 12, "T"), (Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"), (Decimal(1000), "K"))
_DAY = Decimal(86_400)


# --------------------------------------------------------------------------------------- numbers
def money(amount: Decimal, currency: str) -> str:
    """``$1,234.50``, ``-€10.00``, ``¥12,000``; other currencies as ``1,234.50 CHF``."""
    rounded = round_minor(amount, currency)
    return _with_symbol(f"{abs(rounded):,.{exponent(currency)}f}", rounded < 0, currency)


def unit_price(price: Decimal, currency: str) -> str:
    """A price per unit with every significant digit, at least the currency's minor digits:
    ``$0.008``, ``$0.01``, ``$2.00``, ``¥0.5``, ``¥2``."""
    places = max(exponent(currency), -min(0, int(price.normalize().as_tuple().exponent)))
    return _with_symbol(f"{abs(price):,.{places}f}", price < 0, currency)


def _with_symbol(digits: str, negative: bool, currency: str) -> str:
    sign = "-" if negative else ""
    symbol = _SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency.upper()}"


# Fractional places a customer reads; more (a gauge's time held: 0.666666666666666667 GB-hours) are
# rounded for reading only, and said to be: amounts are computed from the exact figure, which a
# per-unit, graduated or volume line keeps as its quantity.
SHOWN_PLACES = 6


def count(n: int | Decimal) -> str:
    """``2,238``; a Decimal with a fraction keeps it (``1,234.5``), up to ``SHOWN_PLACES`` places:
    beyond, ``about 0.666667``."""
    if isinstance(n, Decimal) and n != n.to_integral_value():
        exact = n.normalize()
        if -int(exact.as_tuple().exponent) > SHOWN_PLACES:
            return f"about {n.quantize(Decimal(1).scaleb(-SHOWN_PLACES)).normalize():,f}"
        return f"{exact:,f}"
    return f"{int(n):,}"


def compact(n: int | Decimal) -> str:
    """A large count a person reads at a glance: below 10,000 in full (``9,800``), then three
    significant digits (``12.3K``, ``8.75M``, ``1B``), rounded half-up."""
    value = Decimal(n)
    if abs(value) < 10_000:
        return count(n)
    for i, (scale, suffix) in enumerate(_COMPACT):
        if abs(value) >= scale:
            scaled = value / scale
            digits = 3 - len(str(int(abs(scaled))))
            shown = scaled.quantize(Decimal(1).scaleb(-max(0, digits)), rounding=ROUND_HALF_UP)
            if abs(shown) >= 1000 and i > 0:  # 999,950 is 1M, not 1,000K
                bigger, bigger_suffix = _COMPACT[i - 1]
                shown = (value / bigger).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
                suffix = bigger_suffix
            text = f"{shown:f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return text + suffix
    return count(n)


def plural(n: int | Decimal, one: str, many: str | None = None) -> str:
    return one if n == 1 else (many or one + "s")


# --------------------------------------------------------------------------------------- dates
# English names, whatever the process locale: the same statement always reads the same.
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def _mon(at: datetime) -> str:
    return _MONTHS[at.month - 1][:3]


def day(at: datetime) -> str:
    """``7 Nov 2026``."""
    return f"{at.day} {_mon(at)} {at.year}"


def month_name(month: Month | RatedPeriod | str) -> str:
    """``October 2026`` (of a month or its ``YYYY-MM``); a tenant calendar's period by its label in
    the tenant's time zone (``31 Jan 2026 – 27 Feb 2026 (Asia/Kolkata)``)."""
    if isinstance(month, Month):
        return f"{_MONTHS[month.month - 1]} {month.year}"
    label = getattr(month, "label", None)
    if callable(label):
        return str(label())
    assert isinstance(month, str)
    year, number = month.split("-")
    return f"{_MONTHS[int(number) - 1]} {int(year)}"


def day_range(start: datetime, end: datetime) -> str:
    """The days of ``[start, end)``: ``7 Nov 2026``, ``1-30 Nov 2026``, ``28 Nov - 3 Dec 2026``,
    ``28 Dec 2026 - 3 Jan 2027`` (the last day is the one holding the last instant before ``end``)."""
    last = max(start, end - timedelta(microseconds=1))
    if start.date() == last.date():
        return day(start)
    if (start.year, start.month) == (last.year, last.month):
        return f"{start.day}-{last.day} {_mon(last)} {last.year}"
    if start.year == last.year:
        return f"{start.day} {_mon(start)} - {day(last)}"
    return f"{day(start)} - {day(last)}"


def days(seconds: Decimal) -> str:
    """Seconds as days: whole days exactly (``24``), otherwise to one decimal (``24.9``); a part
    of a day too small for that is ``under 0.1``."""
    value = seconds / _DAY
    if value == value.to_integral_value():
        return f"{int(value)}"
    if value < Decimal("0.05"):
        return "under 0.1"
    text = f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):f}"
    return text[:-2] if text.endswith(".0") else text


# --------------------------------------------------------------------------------------- ranges
def tier_range(tiers: Sequence[Tier], index: int) -> str:
    """The cumulative units a tier holds: ``1-10,000``, ``10,001-50,000``, ``over 50,000``; "" for
    a single unbounded tier (every unit at one price); a fractional bound (0.5 GB-hours) reads
    ``over 0.5 up to 2``, since no "next unit" starts a fractional tier."""
    lower, upper = tier_lower(tiers, index), tiers[index].up_to
    if upper is None:
        return "" if lower == 0 else f"over {count(lower)}"
    if lower != int(lower) or upper != int(upper):
        return f"over {count(lower)} up to {count(upper)}" if lower else f"up to {count(upper)}"
    return f"{lower + 1:,}-{upper:,}"


def _quantity_of(n: int | Decimal, unit: str) -> str:
    """``2,238 queries``; tokens and bytes compact (``8.75M tokens``)."""
    shown = compact(n) if unit.endswith(("tokens", "bytes")) else count(n)
    singular = unit
    if abs(n) == 1:  # -1 query too (a void)
        singular = unit[:-3] + "y" if unit.endswith("ies") else unit.removesuffix("s")
    return f"{shown} {singular}"


def _plan_note(plan_name: str | None) -> str:
    return f" ({plan_label(plan_name)})" if plan_name else ""


def plan_label(plan_name: str) -> str:
    """``Pro plan`` (a name that already says plan is kept)."""
    return plan_name if plan_name.lower().endswith("plan") else f"{plan_name} plan"


# --------------------------------------------------------------------------------------- lines
def base_fee(
    plan_name: str,
    start: datetime,
    end: datetime,
    *,
    seconds: Decimal,
    month_seconds: int,
    trial_until: datetime | None = None,
) -> str:
    """``Pro plan, 1-30 Nov 2026``; ``Pro plan, 7-30 Nov 2026 (prorated, 24 of 30 days)``;
    ``Pro plan, 1-14 Nov 2026 (free trial)``; ``Pro plan, 1-30 Nov 2026 (prorated, 16 of 30 days
    after the free trial 1-14 Nov 2026)``. ``seconds``: the paid (non-trial) seconds charged;
    ``trial_until``: the end of the trial when part of the interval was trial."""
    head = f"{plan_label(plan_name)}, {day_range(start, end)}"
    if seconds == 0 and trial_until is not None:
        return f"{head} (free trial)"
    if seconds == month_seconds:
        return head
    of_month = f"{days(seconds)} of {days(Decimal(month_seconds))} days"
    if trial_until is not None:
        return f"{head} (prorated, {of_month} after the free trial {day_range(start, trial_until)})"
    return f"{head} (prorated, {of_month})"


def query_tier(
    tiers: Sequence[Tier],
    index: int,
    quantity: int | Decimal,
    price: Decimal,
    currency: str,
    plan_name: str | None = None,
) -> str:
    """``Queries 1-10,000 at $0.008 (10,000 queries)``; one price for every query:
    ``1,234 queries at $0.002``. ``plan_name`` when the statement has several plans' tiers."""
    span = tier_range(tiers, index)
    at = f"at {unit_price(price, currency)}"
    if not span:
        return with_plan(f"{_quantity_of(quantity, 'queries')} {at}", plan_name)
    return with_plan(f"Queries {span} {at} ({_quantity_of(quantity, 'queries')})", plan_name)


def trial_queries(quantity: int) -> str:
    """``Queries during the free trial: 1,234 (free)``."""
    return f"Queries during the free trial: {count(quantity)} (free)"


def graduated_charge(
    label: str,
    unit: str,
    tiers: Sequence[Tier],
    index: int,
    quantity: int | Decimal,
    price: Decimal,
    currency: str,
    flat: Decimal | None = None,
) -> str:
    """``GPT-4o output 1-1,000,000 at $0.00001 + $5.00 flat (800K output tokens)``."""
    span = tier_range(tiers, index)
    at = _at(price, currency, flat)
    if not span:
        return f"{label}: {_quantity_of(quantity, unit)} {at}"
    return f"{label} {span} {at} ({_quantity_of(quantity, unit)})"


def volume_charge(
    label: str,
    unit: str,
    tiers: Sequence[Tier],
    index: int,
    quantity: int | Decimal,
    price: Decimal,
    currency: str,
    flat: Decimal | None = None,
) -> str:
    """``Storage: 12.3K events at $0.001 + $5.00 flat (the price for 10,001-50,000 a month)``."""
    span = tier_range(tiers, index)
    why = f" (the price for {span} a month)" if span else ""
    return f"{label}: {_quantity_of(quantity, unit)} {_at(price, currency, flat)}{why}"


def _at(price: Decimal, currency: str, flat: Decimal | None) -> str:
    """``at $0.00001``, or ``at $0.00001 + $5.00 flat`` for a tier with a flat fee."""
    flat_text = f" + {money(flat, currency)} flat" if flat else ""
    return f"at {unit_price(price, currency)}{flat_text}"


def package_charge(
    label: str,
    unit: str,
    packages: int | Decimal,
    size: int | Decimal,
    used: int | Decimal,
    price: Decimal,
    currency: str,
) -> str:
    """``Storage: 4 packages of 1M bytes at $0.50 (3.2M bytes)``."""
    return (
        f"{label}: {count(packages)} {plural(packages, 'package')} of {_quantity_of(size, unit)} at "
        f"{unit_price(price, currency)} ({_quantity_of(used, unit)})"
    )


def per_unit_charge(label: str, unit: str, quantity: int | Decimal, price: Decimal, currency: str) -> str:
    """``Embeddings: 300 events at $0.02``."""
    return f"{label}: {_quantity_of(quantity, unit)} at {unit_price(price, currency)}"


def trial_charge(label: str, unit: str, quantity: int | Decimal) -> str:
    """``Embeddings during the free trial: 300 events (free)``."""
    return f"{label} during the free trial: {_quantity_of(quantity, unit)} (free)"


def with_plan(text: str, plan_name: str | None) -> str:
    """Which plan priced the line, when a statement has several: ``100 queries at $0.01 (Starter
    plan)``, or inside a closing note: ``Queries 1-10,000 at $0.008 (100 queries, Pro plan)``."""
    if not plan_name:
        return text
    if text.endswith(")"):
        return f"{text[:-1]}, {plan_label(plan_name)})"
    return text + _plan_note(plan_name)


def usage(events: int, tokens: int, cost_usd: Decimal, currency: str, rates: Sequence[Decimal]) -> str:
    """``Usage at list prices: 2,238 requests, 8.75M tokens``; in another currency the list price
    in US dollars and the rate: ``... (US$1.234567 at ¥150 per US$)``."""
    return f"Usage at list prices: {_usage_counts(events, tokens)}{_conversion(cost_usd, currency, rates)}"


def trial_usage(events: int, tokens: int, cost_usd: Decimal) -> str:
    """``Usage during the free trial: 120 requests, 1.2M tokens ($0.42 at list prices, free)``."""
    return f"Usage during the free trial: {_usage_counts(events, tokens)} ({money(cost_usd, 'usd')} at list prices, free)"


def _usage_counts(events: int, tokens: int) -> str:
    return f"{count(events)} {plural(events, 'request')}, {compact(tokens)} {plural(tokens, 'token')}"


def _conversion(cost_usd: Decimal, currency: str, rates: Sequence[Decimal]) -> str:
    if currency.lower() == "usd" or not rates:
        return ""
    usd = f"US${unit_price(cost_usd, 'usd')[1:]}"
    per = " / ".join(unit_price(r, currency) for r in rates)
    return f" ({usd} at {per} per US$)"


def late(month: Month | RatedPeriod | str, text: str) -> str:
    """``Late usage from October 2026: <what>``: usage of a closed month stored after its close."""
    return f"Late usage from {month_name(month)}: {text}"


def corrected(month: Month | RatedPeriod | str, text: str) -> str:
    """``Usage from October 2026 corrected after its statement: <what>``: usage of a closed month
    taken off after its close (a void, an amend)."""
    return f"Usage from {month_name(month)} corrected after its statement: {text}"


def adjusted(month: Month | RatedPeriod | str, quantity: int, text: str) -> str:
    """A late tier line: ``late`` when units were added after the close, ``corrected`` when taken off."""
    return (corrected if quantity < 0 else late)(month, text)


def late_usage(
    month: Month | RatedPeriod | str,
    events: int,
    tokens: int,
    cost_usd: Decimal,
    currency: str,
    rates: Sequence[Decimal],
) -> str:
    """``Late usage from October 2026: 3 requests, 1.2K tokens at list prices``."""
    return late(
        month, f"{_usage_counts(events, tokens)} at list prices{_conversion(cost_usd, currency, rates)}"
    )


def corrected_usage(
    month: Month | RatedPeriod | str,
    events: int,
    tokens: int,
    cost_usd: Decimal,
    currency: str,
    rates: Sequence[Decimal],
) -> str:
    """Late usage whose events were mostly taken off (voids, amends after the close):
    ``Usage from October 2026 corrected after its statement: 3 requests, 1.2K tokens taken off at
    list prices`` (or ``... 40K tokens more ...`` when an amend added tokens)."""
    parts = []
    if events:
        parts.append(f"{count(abs(events))} {plural(abs(events), 'request')}")
    if tokens:
        parts.append(f"{compact(abs(tokens))} {plural(abs(tokens), 'token')}")
    what = ", ".join(parts) or "cost"
    direction = "taken off" if (events or tokens or cost_usd) < 0 else "more"
    return (
        f"Usage from {month_name(month)} corrected after its statement: {what} {direction} at list prices"
        f"{_conversion(cost_usd, currency, rates)}"
    )


def late_recharge(month: Month | RatedPeriod | str, now: str, was: str) -> str:
    """A charge re-rated with a month's late usage: ``Late usage from October 2026: <the charge as it
    is now>; billed before: <what the month's statement charged for it>``."""
    return late(month, f"{now}; billed before: {was}")


def none_now(label: str) -> str:
    """A charge line the late usage took away (a volume charge moved to another price)."""
    return f"{label}: none at this price now"


def commitment(required: Decimal, charged: Decimal, currency: str, prorated: bool) -> str:
    """``Top-up to the minimum commitment of $500.00 ($321.00 used)``."""
    note = ", prorated" if prorated else ""
    return (
        f"Top-up to the minimum commitment of {money(required, currency)}{note} "
        f"({money(charged, currency)} used)"
    )


def coupon(
    name: str, coupon_id: str, percent_off: Decimal | None, amount_off: Decimal | None, currency: str
) -> str:
    """``Launch offer: 20% off``, ``Coupon WELCOME: $10.00 off``."""
    title = name or f"Coupon {coupon_id}"
    if percent_off is not None:
        pct = f"{percent_off.normalize():f}"
        return f"{title}: {pct}% off"
    assert amount_off is not None
    return f"{title}: {money(amount_off, currency)} off"


def credit(description: str, grant_id: str, left: Decimal, currency: str, expires_at: datetime | None) -> str:
    """``Welcome credit (prepaid, $30.00 left, expires 31 Dec 2026)``."""
    title = description or f"Prepaid credit {grant_id}"
    kind = "prepaid, " if description else ""
    expiry = f", expires {day(expires_at)}" if expires_at else ""
    return f"{title} ({kind}{money(left, currency)} left{expiry})"


# --------------------------------------------------------------------------------------- limits
def fit(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``text`` if it fits; otherwise cut at the last word boundary that leaves room for "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:(") + "…"


def grouped(label: str, names: Sequence[str], values: Sequence[str]) -> str:
    """A grouped charge's label for one group: ``GPU seconds (gpu: h100)``; several properties
    ``GPU seconds (gpu: h100, region: eu)``; an event lacking the property: ``(gpu: none)``."""
    shown = ", ".join(f"{name}: {value or 'none'}" for name, value in zip(names, values))
    return f"{label} ({shown})"
