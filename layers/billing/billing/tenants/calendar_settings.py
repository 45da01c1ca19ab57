"""A tenant's billing calendar settings as stored and as the API reads and writes them: time zone,
anchor and interval, each entry in force from its ``effective_at`` (None: from the start).

Rules (the calendar's own are in ``billing.kernel.calendar``):
* A tenant with no entry has the default calendar: UTC calendar months, as every tenant had before.
* At signup the settings apply from the start. Afterwards a change applies from the end of the
  period it is made in (``CalendarHistory.change``); fields a change leaves out keep the values in
  force (or already scheduled) at that boundary; a change replaces a change scheduled after it.
* ``anchor`` is ``"calendar"`` (the 1st, or Monday for weeks, at 00:00 local), ``"signup"`` (the
  local day and time of the tenant's first plan) or an RFC 3339 instant (its local day and time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from billing.kernel.calendar import (
    DEFAULT_TIME_ZONE,
    Calendar,
    CalendarChange,
    CalendarHistory,
    Interval,
    Period,
    UnknownTimeZone,
    zone,
)
from billing.kernel.periods import iso, rfc3339_field

AnchorKind = Literal["calendar", "signup"]


def time_zone_field(value: object) -> object:
    """A pydantic ``mode="before"`` validator: an IANA time zone name this runtime knows."""
    if value is None:
        return value
    if not isinstance(value, str):
        raise ValueError("must be an IANA time zone name such as Europe/Paris or UTC")
    try:
        zone(value)
    except UnknownTimeZone as exc:
        raise ValueError(str(exc)) from None
    return value


def anchor_field(value: object) -> object:
    """``"calendar"``, ``"signup"`` or an RFC 3339 instant (normalised to UTC)."""
    if value is None or value in ("calendar", "signup") or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError('must be "calendar", "signup" or an RFC 3339 instant')
    try:
        return rfc3339_field(value)
    except ValueError as exc:
        raise ValueError(f'must be "calendar", "signup" or an RFC 3339 instant: {exc}') from None


def resolve_anchor(
    requested: AnchorKind | datetime | None, current: datetime | None, signup: datetime
) -> datetime | None:
    """The anchor a request names as the calendar stores it (None: the calendar anchor); a request
    without one keeps ``current``."""
    if requested is None:
        return current
    if requested == "calendar":
        return None
    if requested == "signup":
        return signup
    assert isinstance(requested, datetime)
    return requested


class CalendarSetting(BaseModel):
    """One entry of a tenant's calendar history. ``anchor`` is stored resolved: ``"calendar"`` or
    an instant (``"signup"`` is turned into the signup instant when the entry is made)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    time_zone: str = DEFAULT_TIME_ZONE
    anchor: Literal["calendar"] | datetime = "calendar"
    interval: Interval = "month"
    effective_at: datetime | None = None

    _zone = field_validator("time_zone", mode="before")(time_zone_field)
    _anchor = field_validator("anchor", mode="before")(anchor_field)
    _at = field_validator("effective_at", mode="before")(rfc3339_field)

    @field_serializer("anchor")
    def _ser_anchor(self, value: str | datetime) -> str:
        return iso(value) if isinstance(value, datetime) else value

    @field_serializer("effective_at")
    def _ser_at(self, value: datetime | None) -> str | None:
        return iso(value) if value else None

    def calendar(self) -> Calendar:
        anchor = self.anchor if isinstance(self.anchor, datetime) else None
        return Calendar(self.time_zone, anchor, self.interval)

    @classmethod
    def of(cls, calendar: Calendar, effective_at: datetime | None) -> CalendarSetting:
        anchor: Literal["calendar"] | datetime = "calendar" if calendar.anchor is None else calendar.anchor
        return cls(
            time_zone=calendar.time_zone, anchor=anchor, interval=calendar.interval, effective_at=effective_at
        )


def calendar_history(settings: list[CalendarSetting]) -> CalendarHistory:
    """The history the stored entries describe (the default calendar when there are none)."""
    ordered = sorted(settings, key=lambda s: (s.effective_at is not None, s.effective_at or datetime.min))
    initial = Calendar()
    changes: list[CalendarChange] = []
    for setting in ordered:
        if setting.effective_at is None:
            initial = setting.calendar()
        else:
            changes.append(CalendarChange(setting.effective_at, setting.calendar()))
    return CalendarHistory(initial, tuple(changes))


def settings_of(history: CalendarHistory) -> list[CalendarSetting]:
    """The entries to store for ``history``: none for the default calendar with no change."""
    if history == CalendarHistory():
        return []
    return [
        CalendarSetting.of(history.initial, None),
        *(CalendarSetting.of(c.calendar, c.effective_at) for c in history.changes),
    ]


def period_view(period: Period) -> dict[str, Any]:
    """A period as the API shows it: UTC instants, its key, and its label in the tenant's zone."""
    return {
        "key": period.key,
        "start": iso(period.start),
        "end": iso(period.end),
        "label": period.label(),
        "time_zone": period.calendar.time_zone,
        "seconds": period.seconds,
    }


class CalendarView(BaseModel):
    """What ``GET /v1/tenants/{id}/calendar`` answers."""

    tenant_id: str
    time_zone: str
    anchor: str
    interval: str
    current_period: dict[str, Any]
    scheduled: dict[str, Any] | None = Field(default=None)

    @classmethod
    def of(cls, tenant_id: str, history: CalendarHistory, now: datetime) -> CalendarView:
        period = history.period_of(now)
        upcoming = next((c for c in history.changes if c.effective_at > now), None)
        scheduled = None
        if upcoming is not None:
            scheduled = {**upcoming.calendar.describe(), "effective_at": iso(upcoming.effective_at)}
        described = history.calendar_at(now).describe()
        return cls(
            tenant_id=tenant_id,
            time_zone=str(described["time_zone"]),
            anchor=str(described["anchor"]),
            interval=str(described["interval"]),
            current_period=period_view(period),
            scheduled=scheduled,
        )
