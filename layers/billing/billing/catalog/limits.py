"""A plan's limits on its metrics, and the alerts a tenant on the plan gets.

YAML, on a plan (both keys optional)::

    limits:
      - {metric: tokens, value: 5000000, enforcement: soft}   # alert only
      - {metric: queries, value: 10000, enforcement: hard}    # what query_quota says (one or the other)
    alerts:
      - {id: queries, metric: queries, thresholds: ["50%", "80%", "100%"]}   # % of the plan's limit
      - {id: tokens, metric: tokens, thresholds: ["1000000"]}                # or an amount of the metric
      - {id: spend, metric: spend, thresholds: ["100.00", "250.00"]}         # spend so far, plan currency

Invariants (checked when the catalog loads; a refusal names the plan, the limit or alert, and why):
- a limit is on a count or sum metric (built in, or a catalog metric of aggregation count or sum),
  at most one limit per metric per plan; ``value`` is an integer or a quoted decimal, never a float;
- ``query_quota: N`` is the hard limit ``{metric: queries, value: N}``; a plan gives one or the
  other. Hard limits, on any count or sum metric, are enforced at ingest (429, exactly once, in the
  transaction that claims each event: ``billing.metering.claims``, ``billing.metering.hard_limits``);
  soft limits only alert;
- an alert's thresholds are percentages of the plan's limit on its metric (the metric must have
  one) or amounts (of the metric; of money in the plan's currency for ``spend``), distinct; a soft
  limit with no alert of its own on that metric alerts at 100%.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Literal

if TYPE_CHECKING:
    from billing.catalog.metrics import MetricDefinition

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

SPEND = "spend"  # an alert's metric meaning spend so far in the period (never a catalog metric id)
LIMITABLE = ("count", "sum")


def _exact(value: object) -> object:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError('write a number as an integer or a quoted decimal string, e.g. "2.5", never a float')
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
        if not number.is_finite():
            raise ValueError("must be a finite number")
        return number
    return value


Amount = Annotated[Decimal, BeforeValidator(_exact)]


class Threshold(BaseModel):
    """``80%`` (of the limit) or an amount; ``text`` is how it is named (records, webhooks)."""

    model_config = ConfigDict(frozen=True)
    percent: Decimal | None = None
    amount: Decimal | None = None

    @property
    def text(self) -> str:
        if self.percent is not None:
            return f"{self.percent.normalize():f}%"
        assert self.amount is not None
        return f"{self.amount.normalize():f}"

    def level(self, limit: Decimal | None) -> Decimal | None:
        """The usage at which it is crossed (None: a percentage with no limit in force)."""
        if self.amount is not None:
            return self.amount
        if limit is None:
            return None
        assert self.percent is not None
        return limit * self.percent / 100


def _threshold(value: object) -> object:
    if isinstance(value, Threshold | dict):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = _exact(value.strip()[:-1])
        if not isinstance(percent, Decimal) or percent <= 0 or percent > 1000:
            raise ValueError(f"{value!r}: a percentage is more than 0% and at most 1000%")
        return Threshold(percent=percent)
    amount = _exact(value)
    if not isinstance(amount, Decimal) or amount <= 0:
        raise ValueError(f'{value!r}: a threshold is a percentage ("80%") or an amount greater than 0')
    return Threshold(amount=amount)


class Limit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    value: Amount = Field(ge=0)
    enforcement: Literal["hard", "soft"]


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")  # a metric id, or "spend"
    thresholds: list[Annotated[Threshold, BeforeValidator(_threshold)]] = Field(min_length=1, max_length=10)

    @field_validator("thresholds")
    @classmethod
    def _distinct(cls, value: list[Threshold]) -> list[Threshold]:
        if len({t.text for t in value}) != len(value):
            raise ValueError("lists a threshold twice")
        return value


def check_limits(
    plan_id: str,
    query_quota: int | None,
    limits: list[Limit],
    alerts: list[AlertRule],
    aggregation_of: dict[str, str],
) -> None:
    """The module's invariants for one plan; ``aggregation_of``: every metric id -> its aggregation."""
    owner = f"plan {plan_id}"
    seen: set[str] = set()
    for limit in limits:
        where = f"{owner}, limit on {limit.metric}"
        if limit.metric in seen:
            raise ValueError(f"{where}: the metric has two limits")
        seen.add(limit.metric)
        aggregation = aggregation_of.get(limit.metric)
        if aggregation is None:
            raise ValueError(f"{where}: unknown metric (built in: queries, tokens, events...)")
        if aggregation not in LIMITABLE:
            raise ValueError(f"{where}: a limit is on a count or sum metric, not {aggregation}")
        if limit.metric == "queries" and query_quota is not None:
            raise ValueError(f"{where}: give query_quota or a limit on queries, not both")
        if limit.metric == "queries" and limit.enforcement == "hard" and limit.value != int(limit.value):
            raise ValueError(f"{where}: a query count is a whole number")
    ids = [a.id for a in alerts]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{owner}: alert ids must be unique")
    limited = seen | ({"queries"} if query_quota is not None else set())
    for alert in alerts:
        where = f"{owner}, alert {alert.id}"
        if alert.metric != SPEND and alert.metric not in aggregation_of:
            raise ValueError(f"{where}: unknown metric {alert.metric!r} (a metric id, or spend)")
        if alert.metric != SPEND and aggregation_of[alert.metric] not in LIMITABLE:
            raise ValueError(f"{where}: alerts are on count or sum metrics, or spend")
        percents = [t.text for t in alert.thresholds if t.percent is not None]
        if percents and alert.metric == SPEND:
            raise ValueError(f"{where}: spend has no limit; give amounts, not {', '.join(percents)}")
        if percents and alert.metric not in limited:
            raise ValueError(
                f"{where}: {', '.join(percents)} of what? The plan has no limit on {alert.metric}; "
                "add one under limits, or give amounts"
            )


def check_catalog(
    metrics: Sequence[MetricDefinition],
    plans: Sequence[tuple[str, int | None, list[Limit], list[AlertRule]]],
) -> None:
    """``check_limits`` for every (plan id, query_quota, limits, alerts) over the catalog's metrics."""
    from billing.catalog.metrics import BUILT_IN

    aggregation_of: dict[str, str] = {m: d.aggregation for m, d in BUILT_IN.items()}
    aggregation_of |= {m.id: m.aggregation for m in metrics}
    if SPEND in aggregation_of:
        raise ValueError(f"metric {SPEND}: the id names spend in alerts; choose another")
    for plan_id, query_quota, limits, alerts in plans:
        check_limits(plan_id, query_quota, limits, alerts, aggregation_of)


def hard_query_limit(query_quota: int | None, limits: Sequence[Limit]) -> int | None:
    """``query_quota``, or a hard limit on ``queries``; None: unlimited."""
    if query_quota is not None:
        return query_quota
    for limit in limits:
        if limit.metric == "queries" and limit.enforcement == "hard":
            return int(limit.value)
    return None


def hard_metric_limits(limits: Sequence[Limit]) -> dict[str, Decimal]:
    """The hard limits on metrics other than ``queries`` (whose limit is ``hard_query_limit``)."""
    return {
        limit.metric: limit.value
        for limit in limits
        if limit.enforcement == "hard" and limit.metric != "queries"
    }


def limit_on(query_quota: int | None, limits: Sequence[Limit], metric: str) -> Decimal | None:
    """The limit (hard or soft) on ``metric``; None: none."""
    if metric == "queries" and query_quota is not None:
        return Decimal(query_quota)
    for limit in limits:
        if limit.metric == metric:
            return limit.value
    return None


def alert_rules(limits: Sequence[Limit], alerts: Sequence[AlertRule]) -> list[AlertRule]:
    """The declared alerts, and one at 100% for each soft limit no alert watches."""
    rules = list(alerts)
    watched = {a.metric for a in alerts}
    for limit in limits:
        if limit.enforcement == "soft" and limit.metric not in watched:
            rules.append(
                AlertRule(
                    id=f"{limit.metric}-limit",
                    metric=limit.metric,
                    thresholds=[Threshold(percent=Decimal(100))],
                )
            )
    return rules
