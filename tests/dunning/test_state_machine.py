"""The dunning state machine as pure functions: any order, any repetition of an invoice's facts
gives the same record, standing and audit trail (many examples, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.dunning.facts import Attempt, Attempted, Failed, Finalized, InvoiceDunning, Mark, Resolved, apply
from billing.dunning.timeline import timeline

T0 = datetime(2025, 12, 1, 9, tzinfo=UTC)
RETRY_DAYS = [3, 7, 14]

hours = st.integers(min_value=0, max_value=24 * 20)
fact = st.one_of(
    st.builds(
        lambda h, n: Finalized(Mark(T0 + timedelta(hours=h), f"evt_fin_{n}")), hours, st.integers(0, 2)
    ),
    st.builds(
        lambda h, n: Failed(Mark(T0 + timedelta(hours=h), f"evt_fail_{h}_{n}"), "payment failed"),
        hours,
        st.integers(0, 2),
    ),
    st.builds(
        lambda k, h: Resolved(k, Mark(T0 + timedelta(hours=h), f"evt_{k}_{h}")),
        st.sampled_from(["paid", "void", "uncollectible"]),
        hours,
    ),
)


def _attempt(n: int, ok: bool) -> Attempted:
    return Attempted(
        Attempt(n, T0 + timedelta(days=RETRY_DAYS[n - 1], hours=1), ok, None if ok else "card_declined")
    )


# Attempt n has one outcome (one idempotency key per attempt), so outcomes are drawn per number.
invoice_facts = st.builds(
    lambda facts, outcomes: facts + [_attempt(n, ok) for n, ok in outcomes.items()],
    st.lists(fact, min_size=1, max_size=6),
    st.dictionaries(st.integers(1, 3), st.booleans(), max_size=3),
)


def _fold(facts, invoice_id: str = "in_1") -> InvoiceDunning:
    record = InvoiceDunning("acme", invoice_id, "2025-11")
    for f in facts:
        record = apply(record, f)
    return record


@settings(max_examples=500, deadline=None)
@given(invoices=st.lists(invoice_facts, min_size=1, max_size=3), deleted=st.none() | hours, data=st.data())
def test_order_and_repetition_do_not_matter(invoices, deleted, data):
    customer_deleted = Mark(T0 + timedelta(hours=deleted), "evt_del") if deleted is not None else None
    ordered = [_fold(facts, f"in_{i}") for i, facts in enumerate(invoices)]
    shuffled = []
    for i, facts in enumerate(invoices):
        again = data.draw(st.lists(st.sampled_from(facts), max_size=len(facts)))
        shuffled.append(_fold(data.draw(st.permutations(facts + again)), f"in_{i}"))
    assert [r.fingerprint() for r in shuffled] == [r.fingerprint() for r in ordered]
    assert timeline(shuffled, customer_deleted, 3) == timeline(ordered, customer_deleted, 3)


@settings(max_examples=100, deadline=None)
@given(facts=invoice_facts, late=hours)
def test_a_failure_dated_after_the_invoice_closed_changes_nothing(facts, late):
    record = _fold(facts)
    if record.closed is None:
        return
    after = Failed(Mark(record.closed.mark.at + timedelta(hours=late), "evt_late"), "late")
    assert apply(record, after) == record


def test_the_schedule_is_day_3_7_14_after_the_first_failure():
    record = _fold([Failed(Mark(T0, "evt_f"), "declined")])
    assert record.next_retry_at(RETRY_DAYS) == T0 + timedelta(days=3)
    for n, day in ((1, 7), (2, 14)):
        record = apply(record, Attempted(Attempt(n, T0 + timedelta(days=RETRY_DAYS[n - 1]), False)))
        assert record.next_retry_at(RETRY_DAYS) == T0 + timedelta(days=day)
    record = apply(record, Attempted(Attempt(3, T0 + timedelta(days=14), False)))
    assert record.next_retry_at(RETRY_DAYS) is None and record.state(3) == "exhausted"
    standing, entries = timeline([record], None, 3)
    assert standing == "suspended"
    assert [(e.subject, e.to_state) for e in entries if e.subject == "tenant"] == [
        ("tenant", "past_due"),
        ("tenant", "suspended"),
    ]


def test_an_earlier_failure_arriving_late_moves_the_schedule_earlier():
    record = _fold([Failed(Mark(T0 + timedelta(days=1), "evt_second"), "declined")])
    record = apply(record, Failed(Mark(T0, "evt_first"), "declined"))
    assert record.first_failure == Mark(T0, "evt_first")
    assert record.next_retry_at(RETRY_DAYS) == T0 + timedelta(days=3)


def test_suspension_lifts_only_when_every_failed_invoice_is_closed():
    a = _fold(
        [Failed(Mark(T0, "evt_a"), "x")]
        + [Attempted(Attempt(n, T0 + timedelta(days=d), False)) for n, d in ((1, 3), (2, 7), (3, 14))]
    )
    b = _fold([Failed(Mark(T0 + timedelta(days=1), "evt_b"), "x")], "in_b")
    assert timeline([a, b], None, 3)[0] == "suspended"
    a = apply(a, Resolved("paid", Mark(T0 + timedelta(days=15), "evt_pa")))
    assert timeline([a, b], None, 3)[0] == "past_due"
    b = apply(b, Resolved("void", Mark(T0 + timedelta(days=16), "evt_vb")))
    assert timeline([a, b], None, 3)[0] == "active"
