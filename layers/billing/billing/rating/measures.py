"""Charges on catalog metrics: what rating asks the store for (a ``Measure`` per charge id) and what
it gets back (``Measured``: per pricing segment, each charge's units per group).

How a metric's period splits across the pricing segments of a month (a plan change, a trial). The
trial segments and the paid segments are two separate parts of the period, each aggregated on its
own events; within a part, the units are placed so that the segments add up to the part's value:

* ``count``, ``sum``: each event's units in the segment holding it;
* ``unique_count``: each distinct value once, in the segment of its first event (a user active under
  both plans counts once, under the first); a value seen in the trial and after it counts in both
  parts (free in the trial, once in the paid part);
* ``max``: the part's maximum, in the segment of the first event reaching it;
* ``latest``: the part's last value, in the segment of its event;
* ``time_weighted_sum``: the value x time held within each segment (a holding crossing a bound is cut
  there), the value held when a segment opens carried in from the events before it (in the period,
  or the last one before the period, however long before): a trial's held value carries into the
  paid part, and a new plan's segment starts holding what the old one held. Each segment's value x
  milliseconds is exact; the one rounding (to 18 places in the metric's unit) is of each part's
  running total at each segment's end, a segment getting the difference, so the segments of a part
  add up exactly to the part's value.

So a month split by a change to an identical plan rates exactly as the whole month, for every
charge model (graduated positions, the volume total and package blocks continue across segments).
``group_by``: the same rules per group value (a time-weighted sum: each group is its own gauge, an
event setting its group's value only). A group value is the property's text, or for a number its
exact decimal's canonical text (no trailing zeros, no exponent: 1.50 and 1.5 are ``1.5``, 3.000 is
``3``; the text "1.5" falls in that group too); an event lacking it falls in the group where that
value is "" (worded "none"). ``price_by`` reads values the same way. A statement holds at most ``MAX_GROUPS`` groups
per charge: more is a rating error naming the charge, never a silently merged line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from billing.catalog.metrics import MetricDefinition

MAX_GROUPS = 100

Group = tuple[str, ...]  # the values of the charge's group_by properties, in order; () ungrouped
# One pricing segment: charge id -> group -> units of that segment.
Measured = Mapping[str, Mapping[Group, Decimal]]


@dataclass(frozen=True)
class Measure:
    """What one charge id on a catalog metric needs measured (identical in every plan having it)."""

    charge_id: str
    metric: MetricDefinition
    group_by: tuple[str, ...] = ()


class TooManyGroups(ValueError):
    """A charge's groups in one statement exceed ``MAX_GROUPS``."""
