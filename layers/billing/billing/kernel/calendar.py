"""A tenant's billing calendar: the one place that computes its periods from a time zone, an anchor
and an interval (``kernel.periods.Month`` stays the UTC calendar month the default calendar yields).

The rules, each proved by the property tests in ``tests/calendar``:

- **Boundaries are local wall times.** Period ``k``'s start is the anchor's local date and time moved
  by ``k`` intervals (``k`` of any sign); a week is 7 local days, a month/quarter/year is 1/3/12
  local calendar months. Periods tile time: period ``k`` ends exactly where ``k + 1`` starts, so every
  instant belongs to exactly one period, with no gap and no overlap.
- **Short months.** Every boundary is computed from the anchor, never from the previous boundary: an
  anchor on the 29th, 30th or 31st falls on the last day of a shorter month (28 or 29 February, 30
  April) and returns to its own day the month after. A 29 February yearly anchor is 28 February in
  common years.
- **Daylight saving.** Periods are whole local days, so a period holding a DST change is an hour
  shorter or longer in seconds (days of 23 or 25 hours). A boundary's local time that does not exist
  (inside a spring-forward gap) moves forward by the gap's length (02:30 becomes 03:30); one that
  occurs twice (a fall-back overlap) is its earlier occurrence. That is ``zoneinfo`` with ``fold=0``,
  and the "compatible" choice of RFC 5545 and JavaScript's Temporal.
- **Calendar anchor.** Month, quarter and year periods start on the 1st at 00:00 local (quarters in
  January, April, July and October; years on 1 January); weeks start on Monday at 00:00 local.
- **Anniversary anchor.** The local day and time of an instant (by default the tenant's signup),
  in the tenant's time zone.
- **Changes take effect at a boundary.** A tenant's calendar history (``CalendarHistory``) applies a
  change from the end of the period the change was made in. The first period under the new settings
  runs from that boundary to the new calendar's first boundary after it: a short period when the two
  calendars' boundaries differ (never a long one, never a gap), a full one when they coincide.
  Base fees prorate by ``Period.fraction`` (its seconds over those of the new calendar's full period
  it lies in).

Every instant is an aware datetime; periods hold UTC instants and are compared in UTC.
"""

from __future__ import annotations

import calendar as _gregorian
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from billing.kernel.periods import Month, iso, to_ms, utc

Interval = Literal["week", "month", "quarter", "year"]
INTERVALS: tuple[str, ...] = get_args(Interval)
_MONTHS_PER: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}
_WEEK = timedelta(days=7)
# The calendar anchor's local wall time: the 1st at 00:00 (a January, so quarters and years start in
# January), and for weeks a Monday at 00:00.
_CALENDAR_ANCHOR = datetime(2000, 1, 1)
_CALENDAR_WEEK_ANCHOR = datetime(2000, 1, 3)
DEFAULT_TIME_ZONE = "UTC"


class UnknownTimeZone(ValueError):
    """Not an IANA time zone name known to the tz database this runtime ships."""


@cache
def time_zones() -> frozenset[str]:
    """The IANA names accepted as a tenant's time zone."""
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The tz database zone ``name`` (an IANA name such as ``Asia/Kolkata``), or UnknownTimeZone."""
    if name == DEFAULT_TIME_ZONE:
        return _UTC_ZONE
    if not isinstance(name, str) or name not in time_zones():
        raise UnknownTimeZone(f"unknown time zone {name!r}: an IANA name such as Europe/Paris or UTC")
    return _zone(name)


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(f"unknown time zone {name!r}") from None


_UTC_ZONE = ZoneInfo("UTC")


def _local_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall time to its UTC instant: a nonexistent time moves forward by the gap, an
    ambiguous one is its earlier occurrence (``fold=0``)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def local_midnight(day: date, time_zone: str) -> datetime:
    """The UTC instant ``day`` starts in ``time_zone``: its local 00:00, or where a gap at midnight
    ends (the first instant whose local date is ``day``)."""
    return _local_to_utc(datetime(day.year, day.month, day.day), zone(time_zone))


@dataclass(frozen=True)
class Calendar:
    """One setting of a tenant's calendar: its time zone, its anchor (None: the calendar anchor;
    an instant: the anniversary of that instant's local day and time) and its interval."""

    time_zone: str = DEFAULT_TIME_ZONE
    anchor: datetime | None = None
    interval: Interval = "month"
    _tz: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _wall: datetime = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {self.interval!r}")
        tz = zone(self.time_zone)
        if self.anchor is None:
            wall = _CALENDAR_WEEK_ANCHOR if self.interval == "week" else _CALENDAR_ANCHOR
        else:
            if self.anchor.tzinfo is None:
                raise ValueError("the anchor must be an aware instant")
            wall = to_ms(self.anchor).astimezone(tz).replace(tzinfo=None, fold=0)
            object.__setattr__(self, "anchor", to_ms(self.anchor))
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_wall", wall)

    @property
    def is_default(self) -> bool:
        """UTC calendar months: the periods every tenant had before calendars were settable."""
        return self.time_zone == DEFAULT_TIME_ZONE and self.anchor is None and self.interval == "month"

    def local_start(self, k: int) -> datetime:
        """Period ``k``'s start as a naive local wall time (period 0 starts at the anchor)."""
        wall = self._wall
        if self.interval == "week":
            return wall + k * _WEEK
        months = wall.year * 12 + (wall.month - 1) + k * _MONTHS_PER[self.interval]
        year, month0 = divmod(months, 12)
        day = min(wall.day, _gregorian.monthrange(year, month0 + 1)[1])
        return wall.replace(year=year, month=month0 + 1, day=day)

    def boundary(self, k: int) -> datetime:
        """Period ``k``'s first instant, in UTC. Strictly increasing in ``k``."""
        return _local_to_utc(self.local_start(k), self._tz)

    def index_of(self, instant: datetime) -> int:
        """The ``k`` whose period holds ``instant``: ``boundary(k) <= instant < boundary(k + 1)``."""
        instant = utc(instant)
        local = instant.astimezone(self._tz).replace(tzinfo=None)
        wall = self._wall
        if self.interval == "week":
            k = (local - wall) // _WEEK
        else:
            span = (local.year - wall.year) * 12 + (local.month - wall.month)
            k = span // _MONTHS_PER[self.interval]
        # The estimate is off by at most one either way (the day-of-month clamp, the UTC offset).
        while self.boundary(k) > instant:
            k -= 1
        while self.boundary(k + 1) <= instant:
            k += 1
        return k

    def period_of(self, instant: datetime) -> Period:
        """The period of this calendar holding ``instant``."""
        k = self.index_of(instant)
        return Period(self.boundary(k), self.boundary(k + 1), self)

    def describe(self) -> dict[str, object]:
        return {
            "time_zone": self.time_zone,
            "anchor": "calendar" if self.anchor is None else iso(self.anchor),
            "interval": self.interval,
        }


DEFAULT_CALENDAR = Calendar()


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC, one of a tenant's billing periods, and the calendar it belongs to.
    ``start < end``; a period is short only where a calendar change made it so."""

    start: datetime
    end: datetime
    calendar: Calendar = DEFAULT_CALENDAR

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def whole_seconds(self) -> int:
        """The seconds of its calendar's whole period: what a base fee per interval is spread over
        (a short period after a calendar change is charged its share of them)."""
        return self.full().seconds

    def contains(self, instant: datetime) -> bool:
        return self.start <= utc(instant) < self.end

    # The rater reads a period as it reads a Month: ``last_day`` (the invoice date's day), ``year``
    # and ``month`` (the local month it starts in: coupons count their months by it), ordering by start.
    @property
    def last_day(self) -> datetime:
        """The local start of the period's last day (its date is the statement's invoice date)."""
        last = (self.end - timedelta(milliseconds=1)).astimezone(self.calendar._tz)
        return last.replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def year(self) -> int:
        return self.local_start().year

    @property
    def month(self) -> int:
        return self.local_start().month

    def __lt__(self, other: object) -> bool:
        return self.start < _start_of(other)

    def __le__(self, other: object) -> bool:
        return self.start <= _start_of(other)

    def __gt__(self, other: object) -> bool:
        return self.start > _start_of(other)

    def __ge__(self, other: object) -> bool:
        return self.start >= _start_of(other)

    def __str__(self) -> str:
        return self.key

    def next(self) -> Period:
        """The calendar's period after this one (a change scheduled later is not known here)."""
        return self.calendar.period_of(self.end)

    def full(self) -> Period:
        """The calendar's whole period this one lies in (itself unless a change cut it short)."""
        return self.calendar.period_of(self.start)

    @property
    def fraction(self) -> Decimal:
        """This period's share of its calendar's whole period, by seconds (1 unless cut short):
        what a base fee per interval is multiplied by."""
        full = self.full()
        if full.start == self.start and full.end == self.end:
            return Decimal(1)
        return Decimal(self.seconds) / Decimal(full.seconds)

    def as_month(self) -> Month | None:
        """The UTC calendar month this period is exactly, if it is one (the default calendar's)."""
        m = Month.of(self.start)
        return m if m.start == self.start and m.end == self.end else None

    @property
    def key(self) -> str:
        """A stable name for storage and URLs: ``YYYY-MM`` for a UTC calendar month (what every
        period was named before calendars), else the UTC start and end instants."""
        m = self.as_month()
        return str(m) if m is not None else f"{iso(self.start)}/{iso(self.end)}"

    def local(self, instant: datetime) -> datetime:
        """``instant`` in the period's time zone (as its customer reads it)."""
        return utc(instant).astimezone(self.calendar._tz)

    def local_start(self) -> datetime:
        return self.start.astimezone(self.calendar._tz)

    def local_end(self) -> datetime:
        return self.end.astimezone(self.calendar._tz)

    def label(self) -> str:
        """The period as its customer reads it, in its own time zone: ``2025-11`` for a calendar
        month, else its first and last local days (``15 Jan 2026 – 14 Feb 2026``), with the zone
        unless it is UTC."""
        cal = self.calendar
        start, end = self.local_start(), self.local_end()
        if cal.anchor is None and cal.interval == "month" and start.day == 1 and _midnight(start):
            text = f"{start:%Y-%m}"
        else:
            last = end - timedelta(days=1) if _midnight(end) else end
            text = f"{_day(start)} – {_day(last)}"
            if not (_midnight(start) and _midnight(end)):
                text = f"{_day(start)} {start:%H:%M} – {_day(end)} {end:%H:%M}"
        return text if cal.time_zone == DEFAULT_TIME_ZONE else f"{text} ({cal.time_zone})"


def _start_of(other: object) -> datetime:
    start = getattr(other, "start", None)
    if not isinstance(start, datetime):
        raise TypeError(f"a period compares with periods and months, not {type(other).__name__}")
    return start


def _midnight(local: datetime) -> bool:
    return (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)


def _day(local: datetime) -> str:
    return f"{local.day} {local:%b %Y}"


@dataclass(frozen=True)
class CalendarChange:
    """``calendar`` applies from ``effective_at`` (a boundary of the calendar before it)."""

    effective_at: datetime
    calendar: Calendar


@dataclass(frozen=True)
class CalendarHistory:
    """A tenant's calendars over time: ``initial`` before the first change, each change from its
    ``effective_at`` on. Every instant is in exactly one of its periods."""

    initial: Calendar = DEFAULT_CALENDAR
    changes: tuple[CalendarChange, ...] = ()

    def __post_init__(self) -> None:
        at = [c.effective_at for c in self.changes]
        if at != sorted(at) or len(set(at)) != len(at):
            raise ValueError("calendar changes must be in strictly increasing order of effective_at")

    def calendar_at(self, instant: datetime) -> Calendar:
        current = self.initial
        for change in self.changes:
            if change.effective_at <= instant:
                current = change.calendar
        return current

    def _bounds(self, instant: datetime) -> tuple[datetime | None, datetime | None]:
        """The change instants around ``instant``: the last at or before it, the first after it."""
        before = after = None
        for change in self.changes:
            if change.effective_at <= instant:
                before = change.effective_at
            elif after is None:
                after = change.effective_at
        return before, after

    def period_of(self, instant: datetime) -> Period:
        """The tenant's period holding ``instant``: its calendar's period then, cut at a change."""
        instant = utc(instant)
        cal = self.calendar_at(instant)
        whole = cal.period_of(instant)
        before, after = self._bounds(instant)
        start = max(whole.start, before) if before is not None else whole.start
        end = min(whole.end, after) if after is not None else whole.end
        return Period(start, end, cal)

    def periods(self, start: datetime, end: datetime) -> Iterator[Period]:
        """Every period overlapping ``[start, end)``, in order, each once."""
        instant = utc(start)
        end = utc(end)
        while instant < end:
            period = self.period_of(instant)
            yield period
            instant = period.end

    def change(self, at: datetime, calendar: Calendar) -> tuple[CalendarHistory, datetime]:
        """The history with ``calendar`` applying from the end of the period holding ``at`` (when it
        takes effect), and that instant. Later changes already scheduled are replaced."""
        effective = self.period_of(at).end
        kept = CalendarHistory(self.initial, tuple(c for c in self.changes if c.effective_at < effective))
        if kept.calendar_at(effective) == calendar:
            return kept, effective
        return CalendarHistory(kept.initial, (*kept.changes, CalendarChange(effective, calendar))), effective


def history(initial: Calendar, changes: Sequence[tuple[datetime, Calendar]] = ()) -> CalendarHistory:
    return CalendarHistory(initial, tuple(CalendarChange(at, cal) for at, cal in changes))
