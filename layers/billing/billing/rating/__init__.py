"""Monthly rating: a tenant's month of usage to an exact, reproducible statement. Pure (no I/O).

Where things are: ``segments`` (the period and its pricing segments), ``proration`` (base fees by the
second), ``tiers`` (graduated tier math), ``usage`` (the aggregates rated), ``rater`` (statement lines),
``csv`` (the invoice CSV, the periods CSV and the lines CSV); pricing models: ``charges`` (a plan's charges: metrics per
segment, trial, plan change, late data), ``metrics`` (what a charge counts), one file per charge model
(``graduated``, ``volume``, ``package``, ``per_unit``; values in ``pricing_types``), ``commitment``
(minimum commitment true-up), ``coupon_lines`` and ``credit_lines`` (the negative lines, in that order, last);
``wording`` (what the customer reads on each line: the page, the CSV and the Stripe item alike).

Rules (docs/concepts/rating.md, "Rating rules", states them for operators; this package implements them):

* The period is the calendar month in UTC, ending early at ``canceled_at`` (the final statement).
* Pricing segments: maximal half-open intervals ``[start, end)`` of the period with one plan and one
  trial state. A plan entry that repeats the plan already in force does not cut a segment, and an
  event exactly at a boundary belongs to the later segment (the new plan takes effect at its instant).
* Base fee: one line per maximal interval of one plan: ``base_fee x non-trial seconds / month seconds``.
* Queries: graduated tiers over the month's cumulative count of billable (non-trial) queries in
  (timestamp, event_id) order; each query is priced by the tiers of the plan in force at its time at
  its cumulative position, so a plan change does not restart the count. One line per plan and tier.
* Usage cost: the sum of stored event-time ``cost_usd`` of the month's non-trial events, one line;
  none on a statement of a month without a period (late usage alone: adjustment lines only).
* Trial: base fee, queries and usage cost are free; trial queries take no tier position. Trial usage
  is shown at 0.00.
* Late data: events of a closed month M' stored after its close are billed on the next statement as
  ``adjustment`` lines naming M': their usage cost, and their non-trial queries priced by the plan in
  force at each query's time, continuing the tier walk of M' after every query of M' already billed.
* Charges, commitment, coupons, credits: see those modules (and docs/guides/pricing-models.md).
* Rounding: every line is computed exactly and rounded half-up once to the minor unit of the tenant's
  currency (cents for USD); the total is the sum of the rounded lines.
"""

from billing.rating.csv import (
    CSV_HEADER,
    LINES_HEADER,
    PERIODS_CSV_HEADER,
    invoices_csv,
    lines_csv,
    periods_csv,
)
from billing.rating.rater import RATING_VERSION, Rater
from billing.rating.segments import (
    Segment,
    final_month,
    is_final,
    pricing_segments,
    seconds_between,
    statement_period,
)
from billing.rating.tiers import TierSlice, tier_label, walk_tiers
from billing.rating.usage import LateUsage, MonthUsage, Usage

__all__ = [
    "CSV_HEADER",
    "LINES_HEADER",
    "PERIODS_CSV_HEADER",
    "RATING_VERSION",
    "LateUsage",
    "MonthUsage",
    "Rater",
    "Segment",
    "TierSlice",
    "Usage",
    "final_month",
    "invoices_csv",
    "is_final",
    "lines_csv",
    "periods_csv",
    "pricing_segments",
    "seconds_between",
    "statement_period",
    "tier_label",
    "walk_tiers",
]
