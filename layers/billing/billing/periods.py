"""Billing periods: calendar months in UTC. The single place that knows about month boundaries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def utc(dt: datetime) -> datetime:
    """Aware UTC datetime; naive values (as ClickHouse returns DateTime64 'UTC') are taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_instant(value: str) -> datetime:
    """RFC 3339 timestamp to an aware UTC datetime (offset required)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("timestamp needs a UTC offset or Z")
    return dt.astimezone(UTC)


def rfc3339_field(value: object) -> object:
    """A pydantic ``mode="before"`` validator for instants arriving as JSON/YAML text: RFC 3339 with
    an offset, normalised to UTC. None and datetimes pass through for the field's own type check."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string such as 2025-11-03T12:00:00Z")
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp with offset: {exc}") from None


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
        m = _MONTH.match(text.strip())
        if not m:
            raise ValueError(f"month must be YYYY-MM, got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, dt: datetime) -> Month:
        dt = utc(dt)
        return cls(dt.year, dt.month)

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

    def next(self) -> Month:
        return Month(self.year + (self.month == 12), 1 if self.month == 12 else self.month + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    def contains(self, dt: datetime) -> bool:
        return self.start <= utc(dt) < self.end

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
