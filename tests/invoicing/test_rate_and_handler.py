"""The rate cap measured where it matters (at the Stripe double), and the SQS handler."""

from __future__ import annotations

import json
import threading
import time

import pytest

from billing.adapters.stripe.http import RateLimiter
from billing.runtime import container
from billing_local.stripe_double import max_in_window
from tests.conftest import load_event
from tests.invoicing.conftest import MONTH, Billing, load_handler, make_statement, make_tenant


def test_rate_cap_holds_at_stripe_during_a_parallel_month(billing: Billing, monkeypatch) -> None:
    # Given a cap of 20 requests/s, eight statements and eight workers, with some 429s to retry
    monkeypatch.setenv("STRIPE_MAX_REQUESTS_PER_SECOND", "20")
    container.reset()
    for n in range(8):
        make_tenant(f"t{n}")
        make_statement(f"t{n}", ["10", "0.333", "1.005"])
    billing.stripe.add_fault("rate_limit", method="POST", path=r"/invoiceitems$", times=3)

    # When the month is pushed
    outcomes = billing.service.push(MONTH, workers=8)

    # Then every statement was invoiced, and Stripe never saw more than the cap: the run took at least
    # as long as 20/s demands, and no two-second window held more than 40 requests (+2 for requests
    # on the window edges and thread scheduling between taking a token and reaching the socket)
    assert {o.state for o in outcomes} == {"paid"}
    times = sorted(r.at for r in billing.stripe.requests)
    assert len(times) >= 8 * 7
    assert (len(times) - 1) / (times[-1] - times[0]) <= 20
    assert max_in_window(times, 2.0) <= 2 * 20 + 2


def test_rate_limiter_spaces_requests_across_threads() -> None:
    # Given a 50/s limiter shared by 10 threads
    limiter, stamps, lock = RateLimiter(50), [], threading.Lock()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then 100 acquisitions took ~2 s and no window of one second holds more than 51 (+1: the stamp
    # is taken just after the token, by a thread that may wait for the GIL)
    assert max_in_window(stamps, 1.0) <= 52
    assert max(stamps) - min(stamps) >= 99 / 50 * 0.95


@pytest.fixture(scope="module")
def invoicing_app():
    return load_handler("invoicing")


def sqs_event(*bodies: str) -> dict:
    template = load_event("invoicing.json")["Records"][0]
    records = []
    for n, body in enumerate(bodies):
        records.append({**template, "messageId": f"msg-{n}", "body": body})
    return {"Records": records}


def test_handler_reports_only_the_failed_messages(billing: Billing, invoicing_app, lambda_context) -> None:
    # Given a good job, a malformed one, one Stripe refuses and a duplicate of the good one
    make_tenant("good")
    make_statement("good", ["19.99"])
    make_tenant("bad", customer="cus_missing")
    make_statement("bad", ["5"])
    event = sqs_event(
        json.dumps({"tenant_id": "good", "month": MONTH}),
        '{"tenant_id": "good", "month": "11-2025"}',
        json.dumps({"tenant_id": "bad", "month": MONTH}),
        json.dumps({"tenant_id": "good", "month": MONTH}),
    )

    # When the Lambda handles the batch
    response = invoicing_app.handler(event, lambda_context)

    # Then only the malformed and the refused messages go back to the queue (and on to the DLQ)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-2"}]}
    assert len(billing.stripe.invoices_for("good")) == 1
    assert billing.stripe.invoices_for("good")[0]["status"] == "paid"


def test_sample_event_is_a_valid_job() -> None:
    from billing.invoicing import parse_job

    body = load_event("invoicing.json")["Records"][0]["body"]
    assert parse_job(body).month == "2025-11"
