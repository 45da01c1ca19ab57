"""Billing periods: calendar months in UTC, the default calendar's periods (every other calendar is
billing.kernel.calendar, which yields exactly these months by default)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Protocol

from billing.kernel.errors import InvalidRequest

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # ASCII digits only: \d would take any script's
# The usual form, ...:SS[.ffffff]Z, which datetime.fromisoformat reads as the same instant in UTC.
_RFC3339_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z")
# RFC 3339 section 5.6 date-time, exactly: no week dates, no basic format, offsets in minutes, "T".
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

# The instants the system accepts anywhere (events, plan changes, trials, months): far enough from
# datetime's limits that no month arithmetic or UTC conversion can overflow.
MIN_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive


class OutOfRange(ValueError):
    """An instant or month outside [MIN_INSTANT, MAX_INSTANT)."""


def utc(dt: datetime) -> datetime:
    """Aware UTC datetime; naive values (as ClickHouse returns DateTime64 'UTC') are taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_instant(value: str) -> datetime:
    """An RFC 3339 date-time (offset required, nothing around it) to an aware UTC datetime inside
    [MIN_INSTANT, MAX_INSTANT); ValueError (OutOfRange beyond it) otherwise, never anything else."""
    if type(value) is str and _RFC3339_UTC.fullmatch(value):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            pass  # such as month 13: the general path gives its own message
        else:
            if MIN_INSTANT <= dt < MAX_INSTANT:
                return dt
            raise OutOfRange(_range_message())
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("not an RFC 3339 date-time such as 2025-11-03T12:00:00Z (offset required)")
    offset = match.group(8)
    fraction = (match.group(7) or "")[:7]  # datetime keeps microseconds; we keep milliseconds
    text = f"{value[:19]}{fraction}{'+00:00' if offset in ('Z', 'z') else offset}"
    try:
        dt = datetime.fromisoformat(text.replace("t", "T", 1))
        return in_range(dt.astimezone(UTC))
    except OverflowError:
        raise OutOfRange(_range_message()) from None


def in_range(dt: datetime) -> datetime:
    """``dt`` (aware) if inside [MIN_INSTANT, MAX_INSTANT), else OutOfRange."""
    if not MIN_INSTANT <= dt < MAX_INSTANT:
        raise OutOfRange(_range_message())
    return dt


def _range_message() -> str:
    return f"instants must be from {iso(MIN_INSTANT)} up to (not including) {iso(MAX_INSTANT)}"


def to_ms(instant: datetime) -> datetime:
    """``instant`` in UTC truncated to the millisecond: how every instant is stored and compared."""
    instant = utc(instant)
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def rfc3339_field(value: object) -> object:
    """A pydantic ``mode="before"`` validator for instants arriving as JSON/YAML text: RFC 3339 with
    an offset, normalised to UTC. None and datetimes pass through for the field's own type check."""
    if type(value) is str:
        if _RFC3339_UTC.fullmatch(value):  # parse_instant's usual case, without the call
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if MIN_INSTANT <= dt < MAX_INSTANT:
                    return dt
        return parse_instant(value)
    if value is None:
        return value
    if isinstance(value, datetime):  # built in code, not read from a request: no range to enforce
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string such as 2025-11-03T12:00:00Z")
    return parse_instant(value)


def iso(dt: datetime) -> str:
    """Canonical text form: UTC, milliseconds when present, Z suffix."""
    dt = utc(dt)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """``YYYY-MM`` (ASCII digits, nothing around it) of a month inside the accepted range."""
        m = _MONTH.fullmatch(text) if isinstance(text, str) else None
        if not m:
            raise ValueError(f"month must be YYYY-MM, got {text!r}")
        month = cls(int(m.group(1)), int(m.group(2)))
        if not MIN_INSTANT <= month.start < MAX_INSTANT:
            raise OutOfRange(
                f"month must be from {Month.of(MIN_INSTANT)} to {Month.of(MAX_INSTANT).previous()}"
            )
        return month

    @classmethod
    def of(cls, dt: datetime) -> Month:
        if dt.tzinfo is not UTC:
            dt = utc(dt)
        if cls is not Month:
            return cls(dt.year, dt.month)
        key = (dt.year, dt.month)
        found = _MONTHS.get(key)
        if found is None:  # months are immutable values: one instance each serves every caller
            found = _MONTHS[key] = Month(dt.year, dt.month)
        return found

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """Exclusive end: the first instant of the next month."""
        return self.next().start

    @property
    def last_day(self) -> datetime:
        return self.end - timedelta(days=1)

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def whole_seconds(self) -> int:
        """What a monthly fee is spread over: the month's seconds (as ``kernel.calendar.Period``'s)."""
        return self.seconds

    def local(self, instant: datetime) -> datetime:
        """``instant`` as a customer reads it: in UTC, the calendar months' zone."""
        return utc(instant)

    def next(self) -> Month:
        return Month(self.year + (self.month == 12), 1 if self.month == 12 else self.month + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    def contains(self, dt: datetime) -> bool:
        return self.start <= utc(dt) < self.end

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


_MONTHS: dict[tuple[int, int], Month] = {}  # Month.of's instances
_TZINFO, _YEAR, _MONTH_OF_YEAR = attrgetter("tzinfo"), attrgetter("year"), attrgetter("month")


def month_keys(instants: Sequence[datetime]) -> list[tuple[int, int]]:
    """``(year, month)`` of ``Month.of(i)`` for each of ``instants``; for instants all in UTC (what
    validated events hold) without a Python call per instant (ingest asks once per batch). Keys,
    not Months: a tuple of ints hashes in C, a Month's dataclass hash is Python code."""
    if set(map(_TZINFO, instants)) <= {UTC}:
        return list(zip(map(_YEAR, instants), map(_MONTH_OF_YEAR, instants)))
    return [(m.year, m.month) for m in map(Month.of, instants)]


class RatedPeriod(Protocol):
    """What rating reads of a statement's period: a UTC ``Month``, or a tenant calendar's
    ``kernel.calendar.Period``. ``whole_seconds`` is what a base fee per interval is spread over;
    ``year``/``month`` the (local) month it starts in; ``local`` an instant as its customer reads it."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def seconds(self) -> int: ...
    @property
    def whole_seconds(self) -> int: ...
    @property
    def last_day(self) -> datetime: ...
    @property
    def year(self) -> int: ...
    @property
    def month(self) -> int: ...
    def local(self, instant: datetime) -> datetime: ...
    def next(self) -> RatedPeriod: ...


class PeriodStore(Protocol):
    """Where each period's close is recorded: ``close`` writes it once (a later call returns the
    first ``closed_at``); ``closed_at`` is None until then. Ingest refuses events of a closed period."""

    def closed_at(self, month: Month | str) -> datetime | None: ...
    def close(self, month: Month | str, closed_at: datetime) -> datetime: ...


def parse_month(text: str, field: str = "month") -> Month:
    """``YYYY-MM`` from a request or a command line; anything else is a 400 naming ``field``."""
    try:
        return Month.parse(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), details=[{"field": field, "reason": "must be YYYY-MM"}]) from None
