"""The dunning retry schedule: when each retry of a failed invoice is due, and when retries end.

A schedule is a sequence of day offsets (``Settings.dunning_retry_days``, default
``DEFAULT_RETRY_DAYS``). Invariants:

- every offset counts from the invoice's first failed payment, not from the previous retry:
  retry k (1-based) is due at ``first_failure + retry_days[k - 1]`` days, so a retry that ran
  late does not push the later ones back (an earlier failure learned late moves them all earlier);
- the retry due next is the one after the retries already made: with ``made`` retries made it is
  retry ``made + 1``, due at ``first_failure + retry_days[made]``;
- the schedule ends with retry ``len(retry_days)``: once that many were made none is due, and the
  invoice is exhausted when that last one failed. A schedule shortened below the retries already
  made is ended too, never an index error.

Everything that tells a retry's time (the stored due date, the status view, the notices) reads it
here, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

DEFAULT_RETRY_DAYS: tuple[int, ...] = (3, 7, 14)


def last_retry(retry_days: Sequence[int]) -> int:
    """The number of the last retry: the schedule ends when it has been made."""
    return len(retry_days)


def retry_due_at(first_failure: datetime, made: int, retry_days: Sequence[int]) -> datetime | None:
    """When retry ``made + 1`` is due, after ``made`` retries; None once the schedule has ended."""
    if made >= last_retry(retry_days):
        return None
    return first_failure + timedelta(days=retry_days[made])
