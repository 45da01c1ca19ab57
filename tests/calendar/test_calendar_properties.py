"""Property tests of the billing calendar (billing.kernel.calendar): every rule its docstring states."""

from __future__ import annotations

import calendar as gregorian
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from billing.kernel.calendar import (
    INTERVALS,
    Calendar,
    CalendarHistory,
    UnknownTimeZone,
    time_zones,
    zone,
)
from billing.kernel.periods import MAX_INSTANT, MIN_INSTANT, Month

MS = timedelta(milliseconds=1)
# Zones that exercise each rule: whole-hour and odd offsets (+05:30, +05:45, -09:30, +14:00, +12:45),
# DST in both hemispheres, a 30-minute DST (Lord Howe), DST at local midnight (Santiago, Havana,
# Beirut), and a zone that skipped a whole day (Apia, 30 December 2011).
ZONES = [
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Marquesas",
    "Pacific/Kiritimati",
    "Pacific/Chatham",
    "America/Los_Angeles",
    "America/New_York",
    "Europe/London",
    "Europe/Paris",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "Pacific/Apia",
    "Asia/Tehran",
]
zones = st.one_of(st.sampled_from(ZONES), st.sampled_from(sorted(time_zones())))
intervals = st.sampled_from(INTERVALS)
# Instants to the millisecond, as the system stores them, away from the accepted range's edges.
instants = st.integers(
    int(datetime(2001, 1, 1, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2098, 1, 1, tzinfo=UTC).timestamp() * 1000),
).map(lambda ms: datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=ms % 1000 * 1000))
anchors = st.one_of(st.none(), instants)
calendars = st.builds(Calendar, zones, anchors, intervals)


def local_wall(instant: datetime, tz: str) -> datetime:
    return instant.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def exists(wall: datetime, tz: str) -> bool:
    """The naive local ``wall`` time occurs in ``tz`` (is not inside a spring-forward gap)."""
    z = ZoneInfo(tz)
    return wall.replace(tzinfo=z).astimezone(UTC).astimezone(z).replace(tzinfo=None) == wall


# --- tiling: every instant in exactly one period, no gap, no overlap -------------------------------


@settings(max_examples=400, deadline=None)
@given(calendars, instants)
def test_every_instant_is_in_the_period_found_for_it_and_its_neighbours_touch(cal: Calendar, t: datetime):
    # Given any calendar and instant / When its period is found
    period = cal.period_of(t)
    # Then it holds the instant, is not empty, and the periods on each side meet it exactly
    assert period.start <= t < period.end
    assert cal.period_of(period.end).start == period.end
    assert cal.period_of(period.start - MS).end == period.start
    assert cal.period_of(period.end - MS) == period  # its last millisecond is still its own


@settings(max_examples=300, deadline=None)
@given(calendars, st.integers(-40, 40))
def test_boundaries_strictly_increase_and_each_opens_its_own_period(cal: Calendar, k: int):
    # Given a calendar's k-th boundary
    start, end = cal.boundary(k), cal.boundary(k + 1)
    assume(MIN_INSTANT <= start and end < MAX_INSTANT)
    # Then the next is later, the boundary instant is in period k, the millisecond before in k - 1
    assert start < end
    assert cal.index_of(start) == k
    assert cal.index_of(end - MS) == k
    assert cal.index_of(start - MS) == k - 1


@settings(max_examples=100, deadline=None)
@given(calendars, instants, st.integers(1, 60))
def test_consecutive_periods_tile_a_stretch_of_time(cal: Calendar, t: datetime, count: int):
    # Given the periods over a stretch of time / Then each starts where the one before ended
    history = CalendarHistory(cal)
    end = min(t + timedelta(days=count * 9), MAX_INSTANT - timedelta(days=400))
    assume(t < end)
    periods = list(history.periods(t, end))
    assert periods[0].contains(t)
    assert periods[-1].contains(end - MS)
    for before, after in zip(periods, periods[1:]):
        assert before.end == after.start
        assert before.start < before.end


# --- the default is today's UTC calendar months ----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(instants)
@example(datetime(2025, 12, 1, tzinfo=UTC))
@example(datetime(2025, 11, 30, 23, 59, 59, 999000, tzinfo=UTC))
@example(datetime(2024, 2, 29, 12, tzinfo=UTC))
def test_the_default_calendar_is_the_utc_calendar_month(t: datetime):
    # Given the default calendar / When the period of any instant is found
    period = Calendar().period_of(t)
    month = Month.of(t)
    # Then it is exactly that UTC month, named as months always were
    assert (period.start, period.end) == (month.start, month.end)
    assert period.seconds == month.seconds
    assert period.key == str(month) == period.label()
    assert period.as_month() == month
    assert Calendar().is_default


# --- the calendar anchor: the 1st (or Monday) at 00:00 local ----------------------------------------


@settings(max_examples=300, deadline=None)
@given(zones, intervals, instants)
def test_calendar_periods_start_at_local_midnight_on_the_1st_or_a_monday(tz: str, interval, t: datetime):
    # Given a calendar-anchored tenant in any zone / When the period of any instant is found
    period = Calendar(tz, None, interval).period_of(t)
    start = local_wall(period.start, tz)
    midnight_1st = (
        start.date() - timedelta(days=start.weekday()) if interval == "week" else start.date().replace(day=1)
    )
    wall = datetime.combine(midnight_1st, datetime.min.time())
    # Then it starts at 00:00 local on the 1st (a Monday for weeks), or where 00:00 does not exist
    # (DST at midnight), at the first instant after the gap
    if exists(wall, tz):
        assert start == wall
    else:
        assert period.start == wall.replace(tzinfo=ZoneInfo(tz), fold=0).astimezone(UTC)
        assert start > wall
    if interval == "quarter":
        assert start.month in (1, 4, 7, 10)
    if interval == "year":
        assert start.month == 1


@pytest.mark.parametrize(
    ("tz", "utc_start"),
    [
        ("Asia/Kolkata", datetime(2025, 10, 31, 18, 30, tzinfo=UTC)),  # +05:30
        ("Asia/Kathmandu", datetime(2025, 10, 31, 18, 15, tzinfo=UTC)),  # +05:45
        ("Pacific/Marquesas", datetime(2025, 11, 1, 9, 30, tzinfo=UTC)),  # -09:30
        ("Pacific/Kiritimati", datetime(2025, 10, 31, 10, 0, tzinfo=UTC)),  # +14:00
        ("America/Los_Angeles", datetime(2025, 11, 1, 7, 0, tzinfo=UTC)),  # PDT until 2 November
    ],
)
def test_november_starts_at_local_midnight_for_odd_offsets(tz: str, utc_start: datetime):
    # Given a calendar-monthly tenant in a zone whose offset is not whole hours or is far from UTC
    cal = Calendar(tz)
    # When the period of 00:00 local on 1 November, and of the millisecond before, are found
    november = cal.period_of(utc_start)
    # Then November starts exactly at local midnight, and the last millisecond before is October's
    assert november.start == utc_start
    assert cal.period_of(utc_start - MS).end == utc_start
    assert local_wall(november.start, tz) == datetime(2025, 11, 1)
    assert local_wall(november.end, tz) == datetime(2025, 12, 1)
    assert november.label() == f"2025-11 ({tz})"


# --- anniversaries: the 29th, 30th and 31st ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(zones, st.sampled_from(["month", "quarter", "year"]), instants, st.integers(-30, 30))
def test_an_anniversary_falls_on_the_last_day_of_a_short_month_and_returns_after(
    tz: str, interval, anchor: datetime, k: int
):
    # Given an anniversary anchor (any day, 29th to 31st included) / When period k starts
    cal = Calendar(tz, anchor, interval)
    wall = local_wall(anchor, tz)
    start = cal.local_start(k)
    # Then it is on the anchor's day, or on the month's last day when the month is shorter
    days = gregorian.monthrange(start.year, start.month)[1]
    assert start.day == min(wall.day, days)
    assert start.time() == wall.time()
    # And the boundary after a clamped one is back on the anchor's own day when that month has it
    after = cal.local_start(k + 1)
    if gregorian.monthrange(after.year, after.month)[1] >= wall.day:
        assert after.day == wall.day


def test_the_31st_through_february_and_march_in_leap_and_common_years():
    # Given tenants anchored on 31 January at 10:00 UTC, in a leap year and in a common year
    for year, february_last in ((2024, 29), (2025, 28)):
        cal = Calendar("UTC", datetime(year, 1, 31, 10, tzinfo=UTC))
        # Then the periods start on 31 Jan, the last day of February, 31 March and 30 April
        assert [cal.boundary(k) for k in range(4)] == [
            datetime(year, 1, 31, 10, tzinfo=UTC),
            datetime(year, 2, february_last, 10, tzinfo=UTC),
            datetime(year, 3, 31, 10, tzinfo=UTC),
            datetime(year, 4, 30, 10, tzinfo=UTC),
        ]
        # And February's period is its days plus one in seconds (31 Jan 10:00 to the last day 10:00)
        assert cal.period_of(datetime(year, 2, 10, tzinfo=UTC)).seconds == february_last * 86400


@settings(max_examples=100, deadline=None)
@given(st.integers(2001, 2090), zones)
def test_a_29_february_yearly_anchor_is_28_february_in_common_years(year: int, tz: str):
    # Given a yearly anniversary of 29 February 2000, 12:00 local
    anchor = datetime(2000, 2, 29, 12, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    assume(local_wall(anchor, tz) == datetime(2000, 2, 29, 12))
    cal = Calendar(tz, anchor, "year")
    # When the period starting in any year is found
    start = cal.local_start(year - 2000)
    # Then it is 29 February in leap years, 28 February otherwise
    assert (start.month, start.day) == (2, 29 if gregorian.isleap(year) else 28)


# --- daylight saving -----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(calendars, st.integers(-60, 60))
def test_a_boundary_is_the_anchor_wall_time_or_the_stated_gap_and_overlap_rule(cal: Calendar, k: int):
    # Given any calendar's k-th boundary
    wall = cal.local_start(k)
    start = cal.boundary(k)
    assume(MIN_INSTANT <= start < MAX_INSTANT)
    tz = ZoneInfo(cal.time_zone)
    earlier = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    later = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if exists(wall, cal.time_zone):
        # Then at an existing local time it is that time, the earlier of two when it occurs twice
        assert local_wall(start, cal.time_zone) == wall
        assert start == min(earlier, later)
    else:
        # And inside a gap it moves forward by the gap: the wall time read with the offset before it
        assert start == max(earlier, later)
        assert local_wall(start, cal.time_zone) > wall


@pytest.mark.parametrize(
    ("interval", "moment", "hours"),
    [
        ("month", datetime(2025, 3, 15, tzinfo=UTC), 31 * 24 - 1),  # spring forward: 743 hours
        ("month", datetime(2025, 11, 15, tzinfo=UTC), 30 * 24 + 1),  # fall back: 721 hours
        ("week", datetime(2025, 3, 5, tzinfo=UTC), 7 * 24 - 1),
        ("week", datetime(2025, 10, 30, tzinfo=UTC), 7 * 24 + 1),
        ("month", datetime(2025, 7, 15, tzinfo=UTC), 31 * 24),
    ],
)
def test_a_period_holding_a_dst_change_is_whole_local_days_in_seconds(interval, moment, hours):
    # Given a Los Angeles tenant / When the period holding a DST change is found
    period = Calendar("America/Los_Angeles", None, interval).period_of(moment)
    # Then it runs local midnight to local midnight, an hour shorter or longer than 24h a day
    assert period.seconds == hours * 3600
    assert local_wall(period.start, "America/Los_Angeles").time() == datetime.min.time()


def test_an_anniversary_inside_the_spring_gap_moves_forward_and_returns_after():
    # Given a New York tenant anchored on the 9th at 02:30 local (a time 9 March 2025 does not have)
    anchor = datetime(2025, 2, 9, 7, 30, tzinfo=UTC)  # 02:30 EST
    cal = Calendar("America/New_York", anchor)
    # Then March's boundary is 03:30 EDT (moved forward by the hour gap), April's back at 02:30
    assert cal.boundary(1) == datetime(2025, 3, 9, 7, 30, tzinfo=UTC)
    assert local_wall(cal.boundary(1), "America/New_York") == datetime(2025, 3, 9, 3, 30)
    assert local_wall(cal.boundary(2), "America/New_York") == datetime(2025, 4, 9, 2, 30)


def test_an_anniversary_inside_the_autumn_overlap_is_its_earlier_occurrence():
    # Given a New York tenant anchored on the 2nd at 01:30 (a time 2 November 2025 has twice)
    cal = Calendar("America/New_York", datetime(2025, 10, 2, 5, 30, tzinfo=UTC))  # 01:30 EDT
    # Then November's boundary is the first 01:30 (EDT, 05:30 UTC), not the second (06:30 UTC)
    assert cal.boundary(1) == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)


# --- changes take effect at a boundary -----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(calendars, calendars, instants, st.integers(0, 100))
def test_a_change_applies_from_the_next_boundary_and_the_first_new_period_is_short_or_whole(
    old: Calendar, new: Calendar, at: datetime, days_later: int
):
    # Given a tenant on ``old`` that switches to ``new`` at ``at``
    assume(at < datetime(2090, 1, 1, tzinfo=UTC))
    changed, effective = CalendarHistory(old).change(at, new)
    # Then the change is effective at the end of the old period holding ``at``
    assert effective == old.period_of(at).end
    assert changed.period_of(at) == old.period_of(at)
    # And the first period after it runs to the new calendar's first boundary after that instant:
    # never longer than a whole new period, a whole one when the boundaries coincide
    first = changed.period_of(effective)
    assert first.start == effective
    assert first.end == new.period_of(effective).end
    assert first.calendar == new
    assert Decimal(0) < first.fraction <= 1
    assert first.fraction == 1 or effective != new.period_of(effective).start
    # And time stays tiled across the change: no gap, no overlap
    later = effective + timedelta(days=days_later)
    periods = list(changed.periods(at, later + MS))
    for before, after in zip(periods, periods[1:]):
        assert before.end == after.start
    for p in periods[1:]:
        assert p.start >= effective and p.calendar == new


def test_a_change_of_zone_mid_month_gives_a_short_first_period():
    # Given a UTC calendar-monthly tenant that moves to Asia/Kolkata on 10 November
    changed, effective = CalendarHistory().change(
        datetime(2025, 11, 10, tzinfo=UTC), Calendar("Asia/Kolkata")
    )
    # Then November stays whole in UTC, and the next period ends at Kolkata's 1 January midnight
    assert effective == datetime(2025, 12, 1, tzinfo=UTC)
    first = changed.period_of(effective)
    assert (first.start, first.end) == (effective, datetime(2025, 12, 31, 18, 30, tzinfo=UTC))
    # And its base-fee fraction is its seconds over Kolkata's whole December (30d 18.5h of 31d)
    assert first.fraction == Decimal(30 * 86400 + 18 * 3600 + 1800) / Decimal(31 * 86400)


def test_a_change_back_before_it_takes_effect_cancels_it():
    # Given a scheduled change, then a change back to the current calendar in the same period
    once, _ = CalendarHistory().change(datetime(2025, 11, 10, tzinfo=UTC), Calendar("Asia/Kolkata"))
    back, _ = once.change(datetime(2025, 11, 20, tzinfo=UTC), Calendar())
    # Then nothing is scheduled any more
    assert back == CalendarHistory()


# --- time zone names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "utc ", "Asia/kolkata", "+05:30"])
def test_unknown_time_zones_are_refused(name: str):
    with pytest.raises(UnknownTimeZone):
        zone(name)
    with pytest.raises(ValueError):
        Calendar(name)


def test_unknown_intervals_and_naive_anchors_are_refused():
    with pytest.raises(ValueError, match="interval"):
        Calendar("UTC", None, "fortnight")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        Calendar("UTC", datetime(2025, 1, 1))
