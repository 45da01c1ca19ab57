"""Evaluating a tenant's alerts: each threshold fires once per period when usage crosses it, and
resolves when usage goes back under it.

Invariants:
- an alert's state is one record per (tenant, period, alert, threshold) (``AlertStates``): ``fire``
  and ``resolve`` are conditional writes, so however many evaluators run at once (the ingest hook,
  the scheduled run, a retry) a threshold fires once while it stays crossed, and resolves once;
  a threshold crossed again after resolving fires again, with the next ``occurrence``;
- a firing or resolving is published after its record is written, as a notice
  (``alert.triggered`` / ``alert.resolved``) and as the webhook of the same type, both with a stable
  id naming (tenant, period, alert, threshold, occurrence): a repeat publishes the same fact, which
  the publisher sends once and a consumer drops by its id; a lost publish never undoes the record;
- the value is read as the period's stored usage when the evaluation runs (``AlertUsage``): queries
  from ingest's own counter (exact at once), other metrics from ClickHouse, spend from the
  period-to-date statement; a correction or a plan change (a higher limit, a threshold removed)
  resolves an active threshold at the next evaluation;
- the period is the tenant's period holding the evaluation's instant, the very window its quota
  counts in (``billing.metering.quota_windows``): the UTC calendar month for a default tenant, its
  own period (in its time zone) for a tenant with a calendar; records are keyed by that period's
  key, so every threshold starts afresh at the tenant's period start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, Protocol

from billing.catalog.limits import SPEND, AlertRule, Threshold, alert_rules, limit_on
from billing.catalog.plans import Plan, PlanCatalog
from billing.kernel.notices import FactNotice, FactNotices
from billing.kernel.periods import iso
from billing.metering.quota_windows import QuotaWindow, quota_window
from billing.outgoing_webhooks.publishing import WebhookPublisher
from billing.runtime.observability import logger
from billing.tenants.tenant import Tenant, TenantStore

TRIGGERED: Final = "alert.triggered"
RESOLVED: Final = "alert.resolved"


@dataclass(frozen=True)
class AlertState:
    """One threshold of one alert of a tenant in a period."""

    tenant_id: str
    period: str
    alert_id: str
    threshold: str  # "80%" or an amount, as the plan writes it
    metric: str
    state: Literal["active", "resolved"]
    occurrence: int  # 1 the first time it fires in the period, 2 after a resolve, ...
    value: Decimal  # the usage (or spend) when it last changed
    level: Decimal  # the usage at which it is crossed
    fired_at: datetime
    resolved_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.alert_id, self.threshold)

    @property
    def source_id(self) -> str:
        kind = TRIGGERED if self.state == "active" else RESOLVED
        return f"{kind}:{self.tenant_id}:{self.period}:{self.alert_id}:{self.threshold}:{self.occurrence}"

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "period": self.period,
            "alert_id": self.alert_id,
            "metric": self.metric,
            "threshold": self.threshold,
            "level": _plain(self.level),
            "value": _plain(self.value),
            "state": self.state,
            "occurrence": self.occurrence,
            "fired_at": iso(self.fired_at),
            "resolved_at": iso(self.resolved_at) if self.resolved_at else None,
        }


def _plain(number: Decimal) -> str:
    """A quantity as an exact decimal string without trailing zeros (``1500``, ``2.5``)."""
    return f"{number.normalize():f}" if number != 0 else "0"


class AlertStates(Protocol):
    def fire(self, state: AlertState) -> AlertState | None:
        """Record ``state`` (active) unless the threshold is active already: the record written,
        its ``occurrence`` one more than the last resolved one's; None if it was active."""
        ...

    def resolve(self, state: AlertState, at: datetime, value: Decimal) -> AlertState | None:
        """Mark the active ``state`` (same occurrence) resolved; None if it was not active."""
        ...

    def of_period(self, tenant_id: str, period: str) -> list[AlertState]:
        """Every threshold recorded for the tenant in the period (strongly consistent)."""
        ...


class AlertUsage(Protocol):
    def usage(self, tenant_id: str, metric: str, window: QuotaWindow, now: datetime) -> Decimal:
        """The metric's value over the tenant's stored events of the period until ``now``."""
        ...

    def spend(self, tenant: Tenant, window: QuotaWindow) -> Decimal:
        """The period-to-date statement's total (plan currency)."""
        ...


@dataclass(frozen=True)
class AlertChange:
    kind: Literal["alert.triggered", "alert.resolved"]
    state: AlertState


def _rules(plan: Plan) -> list[AlertRule]:
    return alert_rules(plan.limits, plan.alerts)


class AlertEvaluator:
    def __init__(
        self,
        *,
        tenants: TenantStore,
        catalog: PlanCatalog,
        usage: AlertUsage,
        states: AlertStates,
        clock: Callable[[], datetime],
        notices: FactNotices | None = None,
        webhooks: WebhookPublisher | None = None,
    ):
        self.tenants, self.catalog, self.usage, self.states = tenants, catalog, usage, states
        self.clock, self.notices, self.webhooks = clock, notices, webhooks

    def watches(self, tenant: Tenant, metric: str, at: datetime) -> bool:
        """Whether the plan in force at ``at`` has an alert on ``metric`` (cheap: no reads)."""
        plan_id = tenant.plan_at(at)
        return (
            plan_id is not None
            and plan_id in self.catalog
            and any(r.metric == metric for r in _rules(self.catalog.get(plan_id)))
        )

    def evaluate(self, tenant_ids: Iterable[str] | None = None) -> list[AlertChange]:
        """Every tenant (or those named), as of now; a tenant whose evaluation fails is logged and
        the others evaluated (it is evaluated again at the next run)."""
        now = self.clock()
        tenants = (
            self.tenants.list_all()
            if tenant_ids is None
            else list(self.tenants.get_many(sorted(set(tenant_ids))).values())
        )
        changes: list[AlertChange] = []
        for tenant in tenants:
            try:
                changes += self.evaluate_tenant(tenant, now)
            except Exception:  # noqa: BLE001 - one tenant's failure never stops the others' alerts
                logger.exception("alerts not evaluated", extra={"tenant_id": tenant.id})
        return changes

    def evaluate_tenant(
        self, tenant: Tenant, now: datetime, *, metrics: frozenset[str] | None = None
    ) -> list[AlertChange]:
        """Fire and resolve the tenant's thresholds of the period of ``now`` (only the alerts on
        ``metrics`` when given: what ingest's counter answers at once)."""
        window = quota_window(tenant, now)
        plan_id = tenant.plan_at(now)
        plan = self.catalog.get(plan_id) if plan_id is not None and plan_id in self.catalog else None
        rules = [r for r in (_rules(plan) if plan else []) if metrics is None or r.metric in metrics]
        recorded = self.states.of_period(tenant.id, window.key)
        if not rules and not any(s.state == "active" for s in recorded):
            return []
        active = {s.key: s for s in recorded if s.state == "active"}
        wanted: set[tuple[str, str]] = set()
        changes: list[AlertChange] = []
        for rule in rules:
            value = self._value(tenant, rule, window, now)
            limit = limit_on(plan.query_quota, plan.limits, rule.metric) if plan else None
            for threshold in rule.thresholds:
                key = (rule.id, threshold.text)
                wanted.add(key)
                level = threshold.level(limit)
                crossed = level is not None and value >= level
                if crossed and key not in active:
                    assert level is not None
                    fired = self._fire(tenant.id, window, rule, threshold, value, level, now)
                    if fired is not None:
                        changes.append(AlertChange(TRIGGERED, fired))
                elif not crossed and key in active:
                    resolved = self.states.resolve(active[key], now, value)
                    if resolved is not None:
                        changes.append(AlertChange(RESOLVED, resolved))
        # thresholds of alerts the plan no longer has (a plan change): resolved
        if metrics is None:
            for key, state in active.items():
                if key not in wanted:
                    resolved = self.states.resolve(state, now, state.value)
                    if resolved is not None:
                        changes.append(AlertChange(RESOLVED, resolved))
        self._publish(changes)
        return changes

    def _value(self, tenant: Tenant, rule: AlertRule, window: QuotaWindow, now: datetime) -> Decimal:
        if rule.metric == SPEND:
            return self.usage.spend(tenant, window)
        return self.usage.usage(tenant.id, rule.metric, window, now)

    def _fire(
        self,
        tenant_id: str,
        window: QuotaWindow,
        rule: AlertRule,
        threshold: Threshold,
        value: Decimal,
        level: Decimal,
        now: datetime,
    ) -> AlertState | None:
        state = AlertState(
            tenant_id=tenant_id,
            period=window.key,
            alert_id=rule.id,
            threshold=threshold.text,
            metric=rule.metric,
            state="active",
            occurrence=1,
            value=value,
            level=level,
            fired_at=now,
        )
        return self.states.fire(state)

    def _publish(self, changes: Sequence[AlertChange]) -> None:
        for change in changes:
            state = change.state
            data = state.to_json()
            logger.info(change.kind, extra=data)
            if self.notices is not None:
                at = state.resolved_at or state.fired_at
                self.notices.publish([FactNotice(change.kind, state.source_id, at, data)])
            if self.webhooks is not None:
                self.webhooks.publish(change.kind, state.tenant_id, data, source_id=state.source_id)


class StoredUsage:
    """``AlertUsage`` from what the stack stores: ``queries`` from ingest's counter (exact at
    once), other metrics from ClickHouse (``metric_value``) over ``[window.start, now)``, spend from
    the period-to-date statement (``spend_of``)."""

    def __init__(
        self,
        catalog: PlanCatalog,
        quota_used: Callable[[str, str], tuple[int, int | None]],
        metric_value: Callable[[Any, str, datetime, datetime], Decimal | None],
        spend_of: Callable[[Tenant, QuotaWindow], Decimal],
    ):
        self.catalog, self.quota_used, self.metric_value, self.spend_of = (
            catalog,
            quota_used,
            metric_value,
            spend_of,
        )

    def usage(self, tenant_id: str, metric: str, window: QuotaWindow, now: datetime) -> Decimal:
        if metric == "queries":
            return Decimal(self.quota_used(tenant_id, window.key)[0])
        from billing.catalog.metrics import BUILT_IN

        definition = BUILT_IN[metric] if metric in BUILT_IN else self.catalog.metric(metric)
        value = self.metric_value(definition, tenant_id, window.start, min(now, window.end))
        return value if value is not None else Decimal(0)

    def spend(self, tenant: Tenant, window: QuotaWindow) -> Decimal:
        return self.spend_of(tenant, window)
