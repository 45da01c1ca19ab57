"""The retry schedule is one formula: the stored due date (the record's ``next_retry_at``) and the
date a ``retry_scheduled`` notice names agree for every number of retries made, within the schedule
and beyond it (pure functions, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.dunning.facts import Attempt, Attempted, Failed, InvoiceDunning, Mark, apply
from billing.dunning.notices import notices_for
from billing.dunning.schedule import DEFAULT_RETRY_DAYS, last_retry, retry_due_at
from billing.dunning.timeline import timeline
from billing.runtime.settings import Settings

T0 = datetime(2025, 12, 1, 9, tzinfo=UTC)
SCHEDULES = [DEFAULT_RETRY_DAYS, (1,), (2, 5, 10, 20)]


def _retry_time(retry_days: tuple[int, ...], n: int) -> datetime:
    """When retry n ran: an hour after it was due; past the schedule's end (a schedule shortened
    after the retries were made), a day apart."""
    if n <= len(retry_days):
        return T0 + timedelta(days=retry_days[n - 1], hours=1)
    return T0 + timedelta(days=retry_days[-1] + n - len(retry_days), hours=1)


def _failing_invoice(retry_days: tuple[int, ...], made: int) -> InvoiceDunning:
    """An open invoice whose first charge failed at T0 and whose first ``made`` retries failed."""
    record = apply(InvoiceDunning("acme", "in_1", "2025-11"), Failed(Mark(T0, "evt_fail"), "card declined"))
    for n in range(1, made + 1):
        record = apply(record, Attempted(Attempt(n, _retry_time(retry_days, n), False, "card_declined")))
    return record


def _cases() -> list[object]:
    """Every number of retries made from none to two past the schedule's end, for each schedule."""
    return [
        pytest.param(days, made, id=f"days={'/'.join(map(str, days))}-made={made}")
        for days in SCHEDULES
        for made in range(len(days) + 3)
    ]


def test_the_default_schedule_is_day_3_7_14_and_settings_take_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no DUNNING_RETRY_DAYS in the environment
    monkeypatch.delenv("DUNNING_RETRY_DAYS", raising=False)
    # Then Settings use the schedule module's default
    assert DEFAULT_RETRY_DAYS == (3, 7, 14)
    assert Settings().dunning_retry_days == [3, 7, 14]


@pytest.mark.parametrize(("retry_days", "made"), _cases())
def test_the_formula_counts_from_the_first_failure_and_ends_after_the_last_retry(
    retry_days: tuple[int, ...], made: int
) -> None:
    # Given a schedule and a number of retries made
    # When the next retry's time is asked for
    due = retry_due_at(T0, made, retry_days)
    # Then it is the next offset from the first failure, or none once the last retry was made
    if made < last_retry(retry_days):
        assert due == T0 + timedelta(days=retry_days[made])
    else:
        assert due is None


@pytest.mark.parametrize(("retry_days", "made"), _cases())
def test_the_notices_and_the_record_agree_on_the_next_retry(retry_days: tuple[int, ...], made: int) -> None:
    # Given an invoice whose first charge and first `made` retries failed
    record = _failing_invoice(retry_days, made)

    # When its audit trail is computed and every entry of it becomes notices
    _, entries = timeline([record], None, last_retry(retry_days))
    notices = notices_for("acme", entries, [record], retry_days)

    # Then each failure's "retry scheduled" notice names the date the record stored as due after
    # that failure, and a failure after which the record had no retry due has no such notice
    failures = [e for e in entries if e.subject == "in_1" and e.to_state in ("past_due", "exhausted")]
    assert len(failures) == 1 + made
    for entry in failures:
        as_of = _failing_invoice(retry_days, sum(1 for a in record.attempts if a.at <= entry.at))
        scheduled = [n for n in notices if n.kind == "retry_scheduled" and n.source_id == entry.event_id]
        expected = as_of.next_retry_at(retry_days)
        assert [n.next_retry_at for n in scheduled] == ([expected] if expected is not None else [])

    # And for the latest failure that is the record's own next retry (the due date it is stored with)
    latest = [n for n in notices if n.kind == "retry_scheduled" and n.source_id == failures[-1].event_id]
    assert [n.next_retry_at for n in latest] == (
        [record.next_retry_at(retry_days)] if record.next_retry_at(retry_days) else []
    )
