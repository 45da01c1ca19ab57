"""A plan's ``charges``: which units each charge counts in each pricing segment, priced by its model
(``graduated.py``, ``volume.py``, ``package.py``, ``per_unit.py``), as statement lines.

Rules (docs/guides/pricing-models.md states them for operators):

* A charge is identified by its id across plans: a mid-month plan change continues the month's count
  of every charge id both plans have (graduated/package positions, the volume total).
* Trial: a trial segment's units are free and take no position (no tier, no block, not in the
  volume total); they are shown on one ``charge:{id}:trial`` line at 0.
* Late data: events of a closed month stored after its close add the difference between the charge
  rated on the month's billed units plus the late ones and the charge rated on the billed units
  alone, one ``adjustment`` line per changed line (a late batch can lower a volume charge).
* Line ids: ``charge:{id}:{plan}:t{n}`` (graduated, volume), ``charge:{id}:{plan}`` (package,
  per_unit); adjustments ``adj:{YYYY-MM}:charge:...``.
* A charge on a catalog metric takes its units per segment from ``Measured`` (how each aggregation
  splits across segments: billing.rating.measures). With ``group_by``, each group value is priced by
  the charge on its own units as if it were its own charge (its own tiers, volume total, blocks), on
  lines ``charge:{id}:{group}:...`` where ``{group}`` is ``gpu=h100`` (``,``-joined when several);
  at most ``MAX_GROUPS`` groups per statement, more is a ``TooManyGroups`` error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from billing.catalog.metrics import BUILT_IN_METRICS
from billing.catalog.plans import Charge, Plan
from billing.kernel.money import ZERO
from billing.kernel.periods import RatedPeriod
from billing.rating import wording
from billing.rating.graduated import graduated
from billing.rating.lines import line
from billing.rating.measures import MAX_GROUPS, Group, Measured, TooManyGroups
from billing.rating.metrics import METRIC_UNITS, quantity
from billing.rating.package import package
from billing.rating.per_unit import per_unit
from billing.rating.pricing_types import Priced, Use
from billing.rating.segments import Segment
from billing.rating.usage import Meters
from billing.rating.volume import volume
from billing.statements.statement import StatementLine

MODELS: dict[str, Callable[[Sequence[Use]], list[Priced]]] = {
    "graduated": graduated,
    "volume": volume,
    "package": package,
    "per_unit": per_unit,
}


def charge_ids(segments: Sequence[Segment], plan_of: Callable[[str], Plan]) -> list[str]:
    """Charge ids of the plans in force, in order of first appearance."""
    ids: list[str] = []
    for seg in segments:
        for charge in plan_of(seg.plan).charges:
            if charge.id not in ids:
                ids.append(charge.id)
    return ids


def needs_meters(segments: Sequence[Segment], plan_of: Callable[[str], Plan]) -> bool:
    return any(plan_of(seg.plan).charges for seg in segments)


def _charge(plan: Plan, charge_id: str) -> Charge | None:
    return next((c for c in plan.charges if c.id == charge_id), None)


Units = Callable[[Charge], str]  # what a charge's units are called in its lines


def builtin_units(charge: Charge) -> str:
    return METRIC_UNITS[charge.metric]


@dataclass(frozen=True)
class Part:
    """One separately priced part of a charge on a catalog metric: the units of one ``group``
    (``group_by``), or, with ``price_by``, of the values one price covers (``entry``: its index in
    ``price_by.prices``; None with ``by_value``: every other value, at the charge's own price)."""

    prefix: str
    group: Group | None = None
    by_value: bool = False
    entry: int | None = None
    names: tuple[str, ...] = ()  # what the lines' words name: ``(gpu: h100)``
    values: tuple[str, ...] = ()

    def units(self, charge: Charge, cell: Mapping[Group, Decimal]) -> Decimal:
        if self.group is not None:
            return cell.get(self.group, ZERO)
        if not self.by_value:
            return sum(cell.values(), ZERO)
        return sum((u for g, u in cell.items() if _entry_of(charge, g[0]) == self.entry), ZERO)

    def label(self, charge: Charge) -> str:
        return wording.grouped(charge.label, self.names, self.values) if self.names else charge.label


def _entry_of(charge: Charge, value: str) -> int | None:
    """The ``price_by`` price holding ``value`` (None: the default)."""
    assert charge.price_by is not None
    return next((i for i, p in enumerate(charge.price_by.prices) if value in p.values), None)


def _measured_units(measured: Sequence[Measured], index: int, charge: Charge, part: Part | None) -> Decimal:
    """A catalog-metric charge's units in segment ``index``: of one part, or of all."""
    if index >= len(measured):
        return ZERO
    cell = measured[index].get(charge.id, {})
    return sum(cell.values(), ZERO) if part is None else part.units(charge, cell)


def groups_of(charge_id: str, measured: Sequence[Measured]) -> list[Group]:
    """The group values of a grouped charge in the period, sorted; at most ``MAX_GROUPS``."""
    groups = sorted({g for per_segment in measured for g in per_segment.get(charge_id, {})})
    if len(groups) > MAX_GROUPS:
        raise TooManyGroups(
            f"charge {charge_id}: {len(groups)} groups in one statement, more than the {MAX_GROUPS} allowed"
        )
    return groups


def _group_id(charge: Charge, group: Group) -> str:
    return ",".join(f"{name}={value}" for name, value in zip(charge.group_by, group))


def uses_of(
    charge_id: str,
    segments: Sequence[Segment],
    metered: Sequence[Meters],
    plan_of: Callable[[str], Plan],
    measured: Sequence[Measured] = (),
    part: Part | None = None,
) -> tuple[list[Use], int | Decimal]:
    """(non-trial uses in time order, trial units) of one charge id (of one ``part`` of it, each use
    at that part's price)."""
    uses: list[Use] = []
    trial: int | Decimal = 0
    for index, seg in enumerate(segments):
        plan = plan_of(seg.plan)
        charge = _charge(plan, charge_id)
        if charge is None:
            continue
        count: int | Decimal
        if charge.metric in BUILT_IN_METRICS:
            count = quantity(charge, metered[index])
        else:
            count = _measured_units(measured, index, charge, part)
            if part is not None and part.by_value:
                charge = charge.priced_at(part.entry)
        if seg.trial:
            trial += count
        else:
            uses.append(Use(plan, charge, count, seg.start, seg.end))
    return uses, trial


def price(uses: Sequence[Use]) -> list[Priced]:
    return MODELS[uses[0].charge.charge_model](uses) if uses else []


def describe(
    priced: Priced,
    currency: str,
    several_plans: bool = False,
    units: Units = builtin_units,
    part: Part | None = None,
) -> str:
    """The customer's words for one priced line of a charge (billing.rating.wording); the plan is
    named when the charge was priced under several plans in the period, the part's values when the
    charge has parts (group_by, price_by)."""
    charge = priced.charge
    unit = units(charge)
    label = part.label(charge) if part is not None else charge.label
    price = priced.unit_price or ZERO
    model = charge.charge_model
    if model == "graduated":
        assert priced.tier_index is not None
        text = wording.graduated_charge(
            label, unit, charge.tiers, priced.tier_index, priced.quantity, price, currency, priced.flat
        )
    elif model == "volume":
        assert priced.tier_index is not None
        text = wording.volume_charge(
            label, unit, charge.tiers, priced.tier_index, priced.quantity, price, currency, priced.flat
        )
    elif model == "package":
        assert charge.package_size is not None
        text = wording.package_charge(
            label, unit, priced.quantity, charge.package_size, priced.used, price, currency
        )
    else:
        text = wording.per_unit_charge(label, unit, priced.quantity, price, currency)
    return wording.with_plan(text, priced.plan.name if several_plans else None)


def _several_plans(priced: Sequence[Priced]) -> bool:
    return len({p.plan.id for p in priced}) > 1


def _parts(
    charge_id: str, segments: Sequence[Segment], measured: Sequence[Measured], plan_of: Callable[[str], Plan]
) -> list[Part | None]:
    """Each separately priced part of a charge: one (None), one per group, or one per price."""
    charge = next(c for s in segments for c in plan_of(s.plan).charges if c.id == charge_id)
    if charge.price_by is not None:
        prop = charge.price_by.property
        parts: list[Part | None] = [
            Part(
                f"charge:{charge_id}:{prop}={'|'.join(p.values)}",
                None,
                True,
                i,
                (prop,),
                (" or ".join(p.values),),
            )
            for i, p in enumerate(charge.price_by.prices)
        ]
        return [*parts, Part(f"charge:{charge_id}:{prop}=*", None, True, None, (prop,), ("other",))]
    if not charge.group_by:
        return [None]
    names = tuple(charge.group_by)
    return [
        Part(f"charge:{charge_id}:{_group_id(charge, g)}", g, names=names, values=g)
        for g in groups_of(charge_id, measured)
    ]


def _prefix(charge_id: str, part: Part | None) -> str:
    return part.prefix if part is not None else f"charge:{charge_id}"


def charge_lines(
    segments: Sequence[Segment],
    metered: Sequence[Meters],
    plan_of: Callable[[str], Plan],
    currency: str,
    measured: Sequence[Measured] = (),
    units: Units = builtin_units,
) -> list[StatementLine]:
    lines = []
    for charge_id in charge_ids(segments, plan_of):
        for part in _parts(charge_id, segments, measured, plan_of):
            lines += _part_lines(charge_id, part, segments, metered, plan_of, currency, measured, units)
    return lines


def _part_lines(
    charge_id: str,
    part: Part | None,
    segments: Sequence[Segment],
    metered: Sequence[Meters],
    plan_of: Callable[[str], Plan],
    currency: str,
    measured: Sequence[Measured],
    units: Units,
) -> list[StatementLine]:
    lines = []
    prefix = _prefix(charge_id, part)
    uses, trial = uses_of(charge_id, segments, metered, plan_of, measured, part)
    all_priced = price(uses)
    several = _several_plans(all_priced)
    for priced in all_priced:
        lines.append(
            line(
                currency,
                line_id=f"{prefix}:{priced.key}",
                kind="charge",
                plan=priced.plan.id,
                description=describe(priced, currency, several, units, part),
                quantity=Decimal(priced.quantity),
                unit_price=priced.unit_price,
                exact=priced.exact,
                period_start=priced.start,
                period_end=priced.end,
            )
        )
    if trial:
        first = next(s for s in segments if s.trial)
        last = next(s for s in reversed(segments) if s.trial)
        charge = next(c for s in segments for c in plan_of(s.plan).charges if c.id == charge_id)
        label = part.label(charge) if part is not None else charge.label
        lines.append(
            line(
                currency,
                line_id=f"{prefix}:trial",
                kind="charge",
                plan=None,
                description=wording.trial_charge(label, units(charge), trial),
                quantity=Decimal(trial),
                unit_price=ZERO,
                exact=ZERO,
                period_start=first.start,
                period_end=last.end,
            )
        )
    return lines


def adjustment_lines(
    period: RatedPeriod,
    segments: Sequence[Segment],
    billed: Sequence[Meters],
    late: Sequence[Meters],
    plan_of: Callable[[str], Plan],
    currency: str,
    billed_measured: Sequence[Measured] = (),
    measured_with_late: Sequence[Measured] = (),
    units: Units = builtin_units,
) -> list[StatementLine]:
    """Late events of closed ``period`` (a month, or a tenant calendar's period, named in the
    tenant's words): the charge with them minus the charge billed without them.
    A catalog-metric charge compares its units measured over the billed events (``billed_measured``)
    and over the billed and late events together (``measured_with_late``): a late event can change
    a max, a latest or a unique count, not only add to it."""
    combined = [tuple(b) + tuple(l) for b, l in zip(billed, late)]
    lines = []
    for charge_id in charge_ids(segments, plan_of):
        for part in _parts(charge_id, segments, [*billed_measured, *measured_with_late], plan_of):
            lines += _adjustment_part(
                period, charge_id, part, segments, billed, combined, plan_of, currency,
                billed_measured, measured_with_late, units,
            )  # fmt: skip
    return lines


def _adjustment_part(
    period: RatedPeriod,
    charge_id: str,
    part: Part | None,
    segments: Sequence[Segment],
    billed: Sequence[Meters],
    combined: Sequence[Meters],
    plan_of: Callable[[str], Plan],
    currency: str,
    billed_measured: Sequence[Measured],
    measured_with_late: Sequence[Measured],
    units: Units,
) -> list[StatementLine]:
    lines = []
    month = str(period)
    prefix = _prefix(charge_id, part)
    before = {
        p.key: p for p in price(uses_of(charge_id, segments, billed, plan_of, billed_measured, part)[0])
    }
    after = {
        p.key: p for p in price(uses_of(charge_id, segments, combined, plan_of, measured_with_late, part)[0])
    }
    for key in [*after, *(k for k in before if k not in after)]:
        a, b = after.get(key), before.get(key)
        quantity_delta = (a.quantity if a else ZERO) - (b.quantity if b else ZERO)
        exact_delta = (a.exact if a else ZERO) - (b.exact if b else ZERO)
        if not quantity_delta and not exact_delta:
            continue
        ref = a or b
        assert ref is not None
        label = part.label(ref.charge) if part is not None else ref.charge.label
        several = _several_plans([*after.values(), *before.values()])
        was = f"{wording.count(b.quantity)} for {wording.money(b.exact, currency)}" if b else "nothing"
        lines.append(
            line(
                currency,
                line_id=f"adj:{month}:{prefix}:{key}",
                kind="adjustment",
                plan=ref.plan.id,
                adjustment_month=month,
                description=wording.late_recharge(
                    period,
                    describe(a, currency, several, units, part)
                    if a
                    else wording.none_now(wording.with_plan(label, ref.plan.name if several else None)),
                    was,
                ),
                quantity=quantity_delta,
                unit_price=ref.unit_price,
                exact=exact_delta,
                period_start=ref.start,
                period_end=ref.end,
            )
        )
    return lines
