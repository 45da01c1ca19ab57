"""The Stripe double behaves like Stripe where the project's correctness depends on it: each test
talks to the double with the official SDK, as Stripe's own documentation describes the behaviour."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import stripe

from billing_local.stripe_double import RateLimits, StripeDouble

VERSION = "2026-10-28.endive"


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    with StripeDouble(search_delay_s=0.5) as d:
        yield d


def client(double: StripeDouble, version: str = VERSION) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_double",
        stripe_version=version,
        base_addresses={"api": double.api_base},
        max_network_retries=0,
    )


def open_invoice(sdk: stripe.StripeClient, customer: str, cents: int = 1000) -> stripe.Invoice:
    invoice = sdk.v1.invoices.create({"customer": customer, "auto_advance": False})
    sdk.v1.invoice_items.create(
        {"customer": customer, "invoice": str(invoice.id), "amount": cents, "currency": "usd"}
    )
    return sdk.v1.invoices.finalize_invoice(str(invoice.id), {"auto_advance": False})


def test_a_new_customer_has_no_payment_method_so_paying_fails(double: StripeDouble) -> None:
    # Given a customer just created
    sdk = client(double)
    customer = sdk.v1.customers.create({"email": "a@acme.example"})

    # Then it has no default payment method and an off-session charge of its invoice is refused
    assert customer.invoice_settings.default_payment_method is None
    invoice = open_invoice(sdk, customer.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.invoices.pay(str(invoice.id), {"off_session": True})
    assert refused.value.code == "invoice_no_payment_method_types"


def test_a_saved_500_is_replayed_with_should_retry_false(double: StripeDouble) -> None:
    # Given Stripe failing a request after the endpoint started: the 500 is saved under the key
    sdk = client(double)
    double.add_fault("saved_server_error", method="POST", path="^/v1/customers$")
    with pytest.raises(stripe.APIError):
        sdk.v1.customers.create({"email": "a@acme.example"}, {"idempotency_key": "k1"})

    # When the same request is retried with the same key
    with pytest.raises(stripe.APIError) as replayed:
        sdk.v1.customers.create({"email": "a@acme.example"}, {"idempotency_key": "k1"})

    # Then the same 500 comes back, saying retrying cannot help; nothing was created
    headers = {k.lower(): v for k, v in (replayed.value.headers or {}).items()}
    assert headers["stripe-should-retry"] == "false" and headers["idempotent-replayed"] == "true"
    assert double.customers == {}
    # and a new key goes through
    assert sdk.v1.customers.create({"email": "a@acme.example"}, {"idempotency_key": "k1:a1"}).id


def test_validation_400s_are_not_saved_under_the_key(double: StripeDouble) -> None:
    # Given a request refused by validation (an invalid email)
    sdk = client(double)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.customers.create({"email": "not-an-email"}, {"idempotency_key": "k2"})
    assert (refused.value.code, refused.value.param) == ("email_invalid", "email")

    # When it is sent again, fixed, under the same key
    customer = sdk.v1.customers.create({"email": "a@acme.example"}, {"idempotency_key": "k2"})

    # Then it executes (no idempotency_error): Stripe saved nothing for the refused one
    assert customer.email == "a@acme.example"


def test_search_sees_a_new_object_only_after_a_delay(double: StripeDouble) -> None:
    # Given a customer just created
    sdk = client(double)
    customer = sdk.v1.customers.create({"metadata": {"tenant_id": "acme"}})
    query = {"query": "metadata['tenant_id']:'acme'"}

    # Then search does not see it yet, retrieve and list do; later search does
    assert sdk.v1.customers.search(query).data == []
    assert sdk.v1.customers.retrieve(customer.id).id == customer.id
    assert [c.id for c in sdk.v1.customers.list().data] == [customer.id]
    time.sleep(0.6)
    assert [c.id for c in sdk.v1.customers.search(query).data] == [customer.id]


@pytest.mark.parametrize("kind", ["lock_timeout", "rate_limit"])
def test_per_endpoint_429_faults(double: StripeDouble, kind: str) -> None:
    # Given one endpoint answering 429 with a code
    sdk = client(double)
    customer = sdk.v1.customers.create({})
    double.add_fault(kind, method="POST", path="^/v1/invoices$")

    # Then that endpoint refuses once with that code; others answer
    with pytest.raises(stripe.RateLimitError) as limited:
        sdk.v1.invoices.create({"customer": customer.id})
    assert limited.value.http_status == 429 and limited.value.json_body["error"]["code"] == kind
    assert sdk.v1.customers.retrieve(customer.id).id == customer.id
    assert sdk.v1.invoices.create({"customer": customer.id}).id


def test_rate_limits_per_endpoint_and_per_account() -> None:
    # Given the double enforcing Stripe's limits (here 5/s per endpoint, 8/s for the account)
    with StripeDouble(rate_limits=RateLimits(global_per_s=8, endpoint_per_s=5, search_per_s=2)) as d:
        sdk = client(d)
        # When one endpoint gets 7 requests within a second
        statuses = []
        for _ in range(7):
            try:
                sdk.v1.customers.list()
                statuses.append(200)
            except stripe.RateLimitError as exc:
                statuses.append(exc.http_status or 0)
        # Then the 6th and 7th are refused, while another endpoint still answers until the account cap
        assert statuses == [200] * 5 + [429] * 2
        assert sdk.v1.invoices.list().object == "list"
        with pytest.raises(stripe.RateLimitError) as limited:
            for _ in range(4):
                sdk.v1.invoices.list()
        assert limited.value.json_body["error"]["code"] == "rate_limit"


def test_an_invoice_holds_at_most_250_items(double: StripeDouble) -> None:
    # Given a draft with 250 items
    sdk = client(double)
    customer = sdk.v1.customers.create({})
    invoice = sdk.v1.invoices.create({"customer": customer.id})
    for _ in range(250):
        sdk.v1.invoice_items.create(
            {"customer": customer.id, "invoice": str(invoice.id), "amount": 1, "currency": "usd"}
        )
    # Then the 251st is refused
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.invoice_items.create(
            {"customer": customer.id, "invoice": str(invoice.id), "amount": 1, "currency": "usd"}
        )
    assert refused.value.param == "invoice"


def test_webhook_payloads_use_the_endpoint_version_not_the_request_version() -> None:
    # Given a webhook endpoint pinned to an older version, and requests sent at ours
    with StripeDouble(webhook_api_version="2025-03-31.basil") as d:
        sdk = client(d, VERSION)
        sdk.v1.customers.create({})
        # Then the event is rendered at the endpoint's version
        (event,) = d.events_of("customer.created")
        assert event["api_version"] == "2025-03-31.basil"


def test_out_of_band_payment_emits_invoice_paid_only(double: StripeDouble) -> None:
    # Given an open invoice paid outside Stripe
    sdk = client(double)
    customer = sdk.v1.customers.create({})
    invoice = open_invoice(sdk, customer.id)
    sdk.v1.invoices.pay(str(invoice.id), {"paid_out_of_band": True})
    # Then Stripe says invoice.paid, and no payment succeeded
    assert [e["type"] for e in double.events_of("invoice.paid", "invoice.payment_succeeded")] == [
        "invoice.paid"
    ]


def test_a_card_needing_authentication_produces_payment_action_required(double: StripeDouble) -> None:
    # Given a customer whose saved card needs 3D Secure for an off-session charge
    sdk = client(double)
    customer = sdk.v1.customers.create({})
    double.attach_card(customer_id=customer.id)
    double.decline(
        customer_id=customer.id,
        code="authentication_required",
        decline_code="authentication_required",
        message="Your card was declined. This transaction requires authentication.",
    )
    invoice = open_invoice(sdk, customer.id)

    # When it is charged off-session
    with pytest.raises(stripe.CardError) as declined:
        sdk.v1.invoices.pay(str(invoice.id), {"off_session": True})

    # Then the charge fails and Stripe asks for the customer's action
    assert declined.value.code == "authentication_required"
    types = [e["type"] for e in double.events_of("invoice.payment_failed", "invoice.payment_action_required")]
    assert types == ["invoice.payment_failed", "invoice.payment_action_required"]


def test_a_completed_setup_session_attaches_a_card_but_does_not_make_it_the_default(
    double: StripeDouble,
) -> None:
    # Given a setup-mode Checkout Session for a customer
    sdk = client(double)
    customer = sdk.v1.customers.create({"metadata": {"tenant_id": "acme"}})
    session = sdk.v1.checkout.sessions.create(
        {
            "mode": "setup",
            "customer": customer.id,
            "currency": "usd",
            "success_url": "https://example.com/ok",
            "cancel_url": "https://example.com/no",
        }
    )
    assert session.url and session.url.startswith("https://checkout.stripe.com/")

    # When the customer completes it on the hosted page
    double.complete_checkout_session(str(session.id))

    # Then the setup intent holds a payment method of the customer, not yet the invoices' default
    intent = sdk.v1.setup_intents.retrieve(str(session.setup_intent))
    assert intent.status == "succeeded" and intent.payment_method
    assert sdk.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert [e["type"] for e in double.events_of("setup_intent.succeeded", "checkout.session.completed")] == [
        "setup_intent.succeeded",
        "checkout.session.completed",
    ]


def test_a_balance_transaction_description_over_350_characters_is_refused(double: StripeDouble) -> None:
    # Given a customer
    sdk = client(double)
    customer = sdk.v1.customers.create({})
    credit = {"amount": -500, "currency": "usd"}

    # When a balance transaction is created with a 351-character description
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.customers.balance_transactions.create(customer.id, {**credit, "description": "x" * 351})

    # Then Stripe answers 400 naming the field, and the balance is untouched; 350 characters pass
    assert (refused.value.http_status, refused.value.param) == (400, "description")
    assert double.customers[customer.id]["balance"] == 0
    txn = sdk.v1.customers.balance_transactions.create(customer.id, {**credit, "description": "x" * 350})
    assert len(txn.description or "") == 350


def test_rate_limits_fold_only_object_ids_so_each_endpoint_has_its_own_bucket() -> None:
    # Given the double enforcing 2 requests/s per endpoint
    with StripeDouble(rate_limits=RateLimits(global_per_s=100, endpoint_per_s=2, search_per_s=2)) as d:
        sdk = client(d)
        customers = [sdk.v1.customers.create({}).id for _ in range(2)]

        # When one endpoint gets its 2 requests (setup intents, ids of any kind)
        for intent in ("seti_a", "seti_b"):
            with pytest.raises(stripe.InvalidRequestError):  # 404: no such setup intent
                sdk.v1.setup_intents.retrieve(intent)

        # Then another endpoint whose path words also have underscores is not limited with it
        with pytest.raises(stripe.InvalidRequestError) as other:
            sdk.v1.payment_methods.retrieve("pm_a")
        assert other.value.http_status == 404
        # while one endpoint's requests share a bucket whatever the object id
        for customer in customers:
            sdk.v1.customers.balance_transactions.list(customer)
        with pytest.raises(stripe.RateLimitError):
            sdk.v1.customers.balance_transactions.list(customers[0])


def test_a_portal_session_needs_a_saved_configuration(double: StripeDouble) -> None:
    # Given a customer on an account whose customer portal settings were never saved
    sdk = client(double)
    customer = sdk.v1.customers.create({})
    session = {"customer": customer.id, "return_url": "https://example.com/billing"}

    # When a portal session is created without naming a configuration
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.billing_portal.sessions.create(session)

    # Then Stripe refuses it and says how to fix it
    assert refused.value.http_status == 400
    assert "No configuration provided" in str(refused.value.user_message)

    # When a configuration is created through the API, it is not the default: a session must name it
    config = sdk.v1.billing_portal.configurations.create({"features": {"invoice_history": {"enabled": True}}})
    assert config.is_default is False and config.active is True
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.billing_portal.sessions.create(session)
    named = sdk.v1.billing_portal.sessions.create({**session, "configuration": config.id})
    assert named.configuration == config.id

    # and once the settings are saved in the Dashboard, a session naming none uses that default
    default = double.save_portal_settings()
    assert sdk.v1.billing_portal.sessions.create(session).configuration == default["id"]


@pytest.mark.parametrize(("lag", "seen"), [("0", True), ("60", False)])
def test_the_search_lag_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, lag: str, seen: bool
) -> None:
    # Given the double started with STRIPE_DOUBLE_SEARCH_DELAY_S (Stripe: under a minute, an hour in outages)
    monkeypatch.setenv("STRIPE_DOUBLE_SEARCH_DELAY_S", lag)
    with StripeDouble() as d:
        sdk = client(d)
        # When a customer is created and searched for at once
        customer = sdk.v1.customers.create({"metadata": {"tenant_id": "acme"}})
        found = sdk.v1.customers.search({"query": "metadata['tenant_id']:'acme'"}).data
        # Then search sees it only when the index has no lag
        assert [c.id for c in found] == ([customer.id] if seen else [])


def _finalized(sdk: stripe.StripeClient, currency: str, amount: int) -> stripe.Invoice:
    customer = sdk.v1.customers.create({})
    invoice = sdk.v1.invoices.create({"customer": customer.id, "currency": currency, "auto_advance": False})
    sdk.v1.invoice_items.create(
        {"customer": customer.id, "invoice": str(invoice.id), "amount": amount, "currency": currency}
    )
    return sdk.v1.invoices.finalize_invoice(str(invoice.id), {"auto_advance": False})


def test_the_minimum_charge_is_stripes_published_one_for_the_currency(double: StripeDouble) -> None:
    sdk = client(double)
    # When invoices just under and at Stripe's minimum are finalized (15.00 CZK, 10 THB, 0.30 GBP)
    for currency, minimum in (("czk", 1500), ("thb", 1000), ("gbp", 30)):
        under, at = _finalized(sdk, currency, minimum - 1), _finalized(sdk, currency, minimum)
        # Then the one under it is paid uncharged (carried to the balance), the other is open to charge
        assert (under.status, under.amount_paid, at.status) == ("paid", 0, "open"), currency
        assert double.customers[str(under.customer)]["balance"] == minimum - 1


def test_a_currency_without_a_published_minimum_is_refused_unless_the_double_is_told() -> None:
    # Given a currency Stripe publishes no minimum for (it converts to the settlement currency)
    with StripeDouble() as d:
        # When an invoice in it is finalized, then the double says it cannot know (a 400, nothing changed)
        with pytest.raises(stripe.InvalidRequestError) as refused:
            _finalized(client(d), "kwd", 500)
        assert "minimum_charges" in str(refused.value.user_message)
        assert {i["status"] for i in d.invoices.values()} == {"draft"}
    # When the double is given its minimum, then that minimum applies
    with StripeDouble(minimum_charges={"kwd": 150}) as d:
        assert _finalized(client(d), "kwd", 149).status == "paid"


@pytest.mark.parametrize(
    ("after_days", "sent_on_day"), [(0, 0), (3, 3), (None, None)], ids=["at-due", "3-days", "off"]
)
def test_invoice_overdue_follows_the_accounts_invoice_automation(
    after_days: int | None, sent_on_day: int | None
) -> None:
    # Given an account whose invoice automation sends invoice.overdue N days after the due date (or never)
    with StripeDouble(overdue_after_days=after_days) as d:
        sdk = client(d)
        customer = sdk.v1.customers.create({})
        invoice = sdk.v1.invoices.create(
            {"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 14}
        )
        sdk.v1.invoice_items.create(
            {"customer": customer.id, "invoice": str(invoice.id), "amount": 1000, "currency": "usd"}
        )
        due = sdk.v1.invoices.finalize_invoice(str(invoice.id), {"auto_advance": False}).due_date
        assert due is not None

        # When the days after the due date pass, the invoice still unpaid
        sent = [day for day in range(6) if d.pass_due_dates(due + day * 86400)]

        # Then invoice.overdue is sent once, on that day, or never
        assert sent == ([] if sent_on_day is None else [sent_on_day])
        assert len(d.events_of("invoice.overdue")) == (0 if sent_on_day is None else 1)


def test_an_invoice_item_description_over_500_characters_is_refused(double: StripeDouble) -> None:
    # Given a customer
    sdk = client(double)
    customer = sdk.v1.customers.create({"email": "a@acme.example"})
    item = {"customer": customer.id, "amount": 100, "currency": "usd"}

    # When an item's description is 501 characters, Stripe refuses it naming the parameter
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.invoice_items.create({**item, "description": "x" * 501})
    assert refused.value.param == "description"

    # And 500 characters are accepted as they are
    accepted = sdk.v1.invoice_items.create({**item, "description": "x" * 500})
    assert accepted.description == "x" * 500
